"""Command line: argument parsing, progress bars, logging and exit codes. Nothing else.

One module per subcommand (``blur`` is the main command, ``blurface VIDEO ...``), each with
``add_parser()`` and ``run(args) -> int``; what they share is in :mod:`.common`, and
:func:`main` picks the subcommand and turns errors into exit codes.

Exit codes: 0 ok (``verify``, ``inspect``: clean), 1 processing failure (``verify``: the
target was found; ``inspect``: identifying metadata was found), 2 usage or input error,
130 interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

from .main import main, run

__all__ = ["main", "run"]
