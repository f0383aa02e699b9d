"""Text made safe for a terminal: file names and messages that may carry control characters.

A file name may hold anything but ``/`` and NUL: ``\\x1b[2J`` clears the screen of whoever
reads the output, ``\\x1b]0;...\\x07`` retitles their terminal, a newline forges a line of
its own, and a bidi override (U+202E) shows the name reversed. Everything printed that
carries a file name (or an error that quotes one) goes through :func:`printable` or
:func:`one_line`; the library keeps the raw text (manifest, reports), which are data.
Imports nothing of blurface, so any module (the CLI, batch, the servers) can use it.
"""

from __future__ import annotations

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def printable(text: str) -> str:
    """``text`` with every character that is not plainly shown written as an escape.

    Controls (C0, DEL, C1), format characters (bidi overrides, zero-width joiners),
    line and paragraph separators and other non-printing characters become ``\\n``,
    ``\\x1b``, ``\\u202e``, ...; letters of every script, and spaces, stay as they are.
    """
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else _escape(ch) for ch in text)


def one_line(message: str) -> str:
    """A message as one line with nothing a terminal acts on: its line breaks shown as ``\\n``.

    Escaped, not joined with spaces: the break may be inside a file name, which must be
    shown as it is, and never pass for a line of its own.
    """
    return printable(message.strip())


def _escape(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"
