"""Metadata: read a file's tags and write the ones :mod:`blurface.metadata` keeps.

What to keep is decided in :mod:`blurface.metadata`; this module reads and writes it with PyAV.
"""

from __future__ import annotations

import os
from pathlib import Path

import av

from .. import metadata
from ..types import MediaError
from .common import STALE_TAGS, check_readable, is_still_image, open_input


# FFmpeg's AVDISCARD_ALL: the demuxer marks a stream that is no part of the presentation
# (a MOV/MP4 chapter text track, which it exposes as chapters instead).
_DISCARD_ALL = 48


def read_tags(path: str | os.PathLike) -> metadata.FileTags:
    """Every container, stream and chapter tag of the media file at ``path``.

    Any media file will do (audio only too): ``blurface inspect`` checks archives.

    Raises:
        MediaError: missing, empty or unreadable file, or a still image.
    """
    p = check_readable(path)
    with open_input(p) as container:
        if is_still_image(container):
            raise MediaError(
                f"{p}: is a still image: 'blurface inspect' checks video files (use an EXIF tool for pictures)"
            )
        return file_tags(container, p)


def file_tags(container: av.container.InputContainer, path: Path) -> metadata.FileTags:
    chapters = container.chapters()
    return metadata.FileTags(
        path=str(path),
        container=dict(container.metadata),
        streams=tuple(_stream_tags(s, bool(chapters)) for s in container.streams),
        chapters=tuple(dict(c.get("metadata") or {}) for c in chapters),
    )


def _stream_tags(stream: av.stream.Stream, has_chapters: bool) -> metadata.StreamTags:
    kind = stream.type if stream.type in ("video", "audio", "subtitle", "attachment") else "data"
    return metadata.StreamTags(
        index=stream.index,
        kind=kind,
        tags=dict(stream.metadata),
        cover=kind == "video" and bool(stream.disposition & av.stream.Disposition.attached_pic),
        chapter_track=has_chapters and is_chapter_track(stream),
        head=_attachment_head(stream),
    )


def _attachment_head(stream: av.stream.Stream) -> bytes:
    """An attachment's first bytes (the demuxer holds its whole content already)."""
    if stream.type != "attachment":
        return b""
    try:
        return bytes(stream.data[:8])
    except (AttributeError, TypeError):  # no content
        return b""


def is_chapter_track(stream: av.stream.Stream) -> bool:
    return stream.type == "data" and stream.discard == _DISCARD_ALL


class TagPolicy:
    """Copies the tags :func:`transcode` keeps: all of them, or the allowlist of :mod:`blurface.metadata`."""

    def __init__(self, meta: metadata.FileTags, keep_all: bool) -> None:
        self.meta = meta
        self.keep_all = keep_all
        self.streams = {s.index: s for s in meta.streams}

    def copy_container(self, source: dict[str, str], target: dict[str, str]) -> None:
        if self.keep_all:
            _copy_tags(source, target)
        # else nothing: no container tag is needed to play a file

    def movflags(self) -> str:
        """Extra MOV/MP4 muxer flags: keep reverse-DNS keys (``com.apple.quicktime.make``) when keeping all.

        The muxer writes only the tags it has a QuickTime/iTunes atom for unless told
        to write every tag as an ``mdta`` key, the way phones store them.
        """
        if self.keep_all and any("." in key for key in self.meta.container):
            return "+use_metadata_tags"
        return ""

    def copy_stream(self, source: av.stream.Stream, target: av.stream.Stream) -> None:
        if self.keep_all:
            _copy_tags(source.metadata, target.metadata)
            # QuickTime reads a track's title as "name" but writes it from "title".
            if "name" in target.metadata and "title" not in target.metadata:
                target.metadata["title"] = target.metadata.pop("name")
        else:
            target.metadata.update(metadata.kept_stream_tags(self.streams[source.index]))

    def keeps_stream(self, stream: av.stream.Stream) -> bool:
        """Data streams and non-font attachments are left out (cover pictures are, elsewhere, anyway)."""
        return self.keep_all or stream.type == "video" or metadata.keeps_stream(self.streams[stream.index])

    def chapters(self, chapters: list[dict]) -> list[dict]:
        if self.keep_all:
            return chapters
        return [{**chapter, "metadata": {}} for chapter in chapters]  # times stay, titles go

    def summary(self) -> str | None:
        """The warning naming what was dropped; ``None`` when keeping all or nothing was dropped.

        Extra video streams (cover art, other angles) are not named: :func:`plan_stream`
        warns about each already.
        """
        if self.keep_all:
            return None
        found = metadata.findings(self.meta)
        return metadata.summary([f for f in found if not (f.key is None and f.stream and f.stream.kind == "video")])


def _copy_tags(source: dict[str, str], target: dict[str, str]) -> None:
    for key, value in source.items():
        if key.lower() not in STALE_TAGS:
            target[key] = value

