"""Which metadata an anonymised file keeps, and which metadata identifies where, when and with what it was filmed.

A masked face is no use if the file still says where it was filmed: phones write
GPS positions (``location``, ``com.apple.quicktime.location.ISO6709``), the make,
model and software of the camera, creation dates, and editors add authors,
titles and comments. Privacy tools (mat2, ObscuraCam) strip them; so does blurface.

The rule is an **allowlist**: the output keeps what a player needs and nothing
else. Everything a player needs that is not a tag (rotation, which blurface
applies to the pixels; frame rate and timestamps; colour properties;
dispositions) lives in stream parameters that :mod:`blurface.media` copies
anyway. Of the tags, only these are kept:

* ``language`` of each stream (players pick audio and subtitle tracks by it);
* ``filename`` and ``mimetype`` of font attachments (subtitles are drawn with them).
  A font is told by its content (the font magic number), never by its label: an
  attachment named ``gps.ttf`` and labelled as a font that holds text is dropped.

Dropped: every other container and stream tag, data streams (camera telemetry
such as GoPro GPMF holds GPS tracks; QuickTime timecode tracks hold the time of
day), attachments that are not fonts (cover pictures, notes), and chapter
titles (chapter times stay). FFmpeg does not export XMP by default, so XMP and
QuickTime user data FFmpeg does not parse are never copied at all.

This module only decides; it imports no media library. :mod:`blurface.media`
reads files into :class:`FileTags`, applies :func:`kept_stream_tags` and
:func:`keeps_stream` while writing, and :func:`findings` is what ``blurface
inspect`` reports. Findings name keys, never values: a report or a plan that
repeated a GPS position would leak it again.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

# Tags an anonymised output keeps, compared in lower case.
KEPT_STREAM_TAGS = frozenset({"language"})
KEPT_FONT_TAGS = frozenset({"filename", "mimetype"})

# The first four bytes of the font files subtitles use: TrueType (00 01 00 00, and
# Apple's "true"), PostScript in sfnt ("typ1"), OpenType with CFF ("OTTO"), font
# collections ("ttcf"), WOFF and WOFF2. A label or a file name says nothing.
FONT_MAGIC = frozenset({b"\x00\x01\x00\x00", b"true", b"typ1", b"OTTO", b"ttcf", b"wOFF", b"wOF2"})

# Tags that describe the file's structure, not its origin: every muxer writes them.
_STRUCTURAL_TAGS = frozenset(
    {"major_brand", "minor_version", "compatible_brands", "duration", "bps", "number_of_frames",
     "number_of_bytes", "_statistics_tags"}
)

# Values FFmpeg writes itself (blurface's own outputs carry them); they say which
# library wrote the file, nothing about the camera or the person filming.
_FFMPEG_HANDLERS = frozenset(
    {"VideoHandler", "SoundHandler", "SubtitleHandler", "DataHandler", "TimeCodeHandler", "HintHandler"}
)
_FFMPEG_VENDORS = frozenset({"[0][0][0][0]", "FFMP"})
_FFMPEG_ENCODER = re.compile(r"Lav[fc](\d|$)")  # "Lavf" alone with +bitexact


@dataclass(frozen=True)
class StreamTags:
    """The metadata of one stream of a file.

    Attributes:
        index: stream index in the file.
        kind: ``video``, ``audio``, ``subtitle``, ``attachment`` or ``data``.
        tags: the stream's tags as the demuxer reports them (any case).
        cover: a picture attached as cover art, not part of the video.
        chapter_track: a MOV/MP4 text track that only holds the chapter titles
            (FFmpeg reads it as chapters, and writes a new one from them).
        head: an attachment's first bytes (at least 4 where it has them): what it is.
    """

    index: int
    kind: str
    tags: Mapping[str, str] = field(default_factory=dict)
    cover: bool = False
    chapter_track: bool = False
    head: bytes = b""

    @property
    def is_font(self) -> bool:
        """A font attachment (subtitles need it), told by its content's magic number, not its label."""
        return self.kind == "attachment" and self.head[:4] in FONT_MAGIC


@dataclass(frozen=True)
class FileTags:
    """All metadata of one file: container tags, each stream's, each chapter's."""

    path: str
    container: Mapping[str, str] = field(default_factory=dict)
    streams: tuple[StreamTags, ...] = ()
    chapters: tuple[Mapping[str, str], ...] = ()


@dataclass(frozen=True)
class Finding:
    """One piece of identifying metadata: where it is and its key (never its value).

    ``stream`` is ``None`` for container tags; ``chapter`` is the 1-based chapter
    number for chapter tags; ``key`` is ``None`` when the whole stream is the
    finding (a data stream, an attachment, a cover picture).
    """

    key: str | None
    stream: StreamTags | None = None
    chapter: int | None = None

    def __str__(self) -> str:
        if self.chapter is not None:
            return f"chapter {self.chapter} {self.key}"
        if self.stream is None:
            return str(self.key)
        if self.key is None:
            return _whole_stream(self.stream)
        return f"stream #{self.stream.index} {self.key}"


def kept_stream_tags(stream: StreamTags) -> dict[str, str]:
    """The tags of ``stream`` an anonymised output keeps (see the module docstring)."""
    allowed = KEPT_STREAM_TAGS | (KEPT_FONT_TAGS if stream.is_font else frozenset())
    return {k: v for k, v in stream.tags.items() if k.lower() in allowed}


def keeps_stream(stream: StreamTags) -> bool:
    """Whether an anonymised output may hold ``stream`` at all.

    Data streams and attachments other than fonts are metadata, not media.
    Cover pictures are left out by :mod:`blurface.media` in any case (they are
    pictures that are not masked).
    """
    if stream.kind == "data":
        return False
    if stream.kind == "attachment":
        return stream.is_font
    return not stream.cover


def findings(meta: FileTags) -> list[Finding]:
    """Identifying metadata in ``meta``: what an anonymised output must not hold.

    Every tag outside the allowlist counts, except structural ones (brands,
    Matroska durations) and the values FFmpeg writes itself (``Lavf`` encoder
    strings, its default handler names), so blurface's own output comes out clean.
    Whole streams count when :func:`keeps_stream` refuses them (their tags go
    with them, so are not listed); a chapter track does not, since its titles
    are reported per chapter.
    """
    found = [Finding(key) for key, value in meta.container.items() if _identifying(key, value, None)]
    for stream in meta.streams:
        if not keeps_stream(stream) and not stream.chapter_track:
            found.append(Finding(None, stream))
            continue
        found.extend(Finding(k, stream) for k, v in stream.tags.items() if _identifying(k, v, stream))
    for number, tags in enumerate(meta.chapters, 1):
        found.extend(Finding(k, chapter=number) for k, v in tags.items() if v)
    return found


def summary(found: list[Finding]) -> str | None:
    """The one line that says what an anonymised output left out, by key; ``None`` when nothing.

    Tags are named once each however many streams carry them, e.g.
    ``dropped 4 metadata tags: creation_time, location, make, model; 2 chapter
    titles; data stream #2; --keep-metadata keeps them``.
    """
    keys: dict[str, str] = {}
    chapters: set[int] = set()
    streams: list[str] = []
    for f in found:
        if f.chapter is not None:
            chapters.add(f.chapter)
        elif f.key is None and f.stream is not None:
            streams.append(_whole_stream(f.stream))
        elif f.key is not None:
            keys.setdefault(f.key.lower(), f.key)
    parts = []
    if keys:
        names = [keys[k] for k in sorted(keys)]
        parts.append(f"{len(names)} metadata tag{'s' if len(names) != 1 else ''}: {', '.join(names)}")
    if chapters:
        parts.append(f"{len(chapters)} chapter title{'s' if len(chapters) != 1 else ''}")
    parts.extend(streams)
    if not parts:
        return None
    return f"dropped {'; '.join(parts)}; --keep-metadata keeps them"


def _identifying(key: str, value: str, stream: StreamTags | None) -> bool:
    k = key.lower()
    if k in _STRUCTURAL_TAGS:
        return False
    if stream is not None and (k in KEPT_STREAM_TAGS or (k in KEPT_FONT_TAGS and stream.is_font)):
        return False
    if k == "encoder":
        return not _FFMPEG_ENCODER.match(value)
    if k == "handler_name":
        return value not in _FFMPEG_HANDLERS
    if k == "vendor_id":
        return value not in _FFMPEG_VENDORS
    return bool(value)


def _whole_stream(stream: StreamTags) -> str:
    if stream.cover:
        return f"cover picture stream #{stream.index}"
    return f"{stream.kind} stream #{stream.index}"
