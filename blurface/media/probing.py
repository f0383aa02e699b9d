"""Probe: what blurface needs to know about an input.

:func:`probe` reads a file's :class:`~blurface.types.VideoInfo` and refuses anything that
is not a video; :func:`looks_like_video` tells a video from other files by name or signature.
The low-level readers (open an input, find its video stream, demux) are in
:mod:`blurface.media.common`.
"""

from __future__ import annotations

import logging
import os
import re
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from .. import formats
from ..types import MediaError, StreamInfo, VideoInfo
from .common import (
    check_frame_size,
    check_readable,
    codec_name,
    first_frame,
    is_still_image,
    limit_decoder,
    open_input,
    video_stream,
)

log = logging.getLogger(__name__)


class NotVideoError(MediaError):
    """The file was read and holds no video (audio only, a still image): not a failure of the file."""


# Extensions of video files: one that cannot be read is a damaged video, not "some other file".
# Not .ts (TypeScript) nor .mod (go.mod): MPEG transport streams are known by their signature.
VIDEO_EXTENSIONS = frozenset(
    ".3g2 .3gp .asf .avi .dv .f4v .flv .h264 .h265 .hevc .m2t .m2ts .m2v .m4v .mkv .mov .mp4 .mpeg .mpg "
    ".mts .mxf .ogv .qt .rm .rmvb .vob .webm .wmv .y4m".split()
)


def looks_like_video(path: str | os.PathLike) -> bool:
    """Whether ``path`` is meant to be a video: a video extension, or a video container's signature.

    Reads the first 16 bytes only. Signatures: ISO BMFF (MP4, MOV, 3GP; not the M4A/M4B
    audio brands), Matroska/WebM (EBML), AVI (RIFF ... AVI), ASF/WMV, FLV, MXF,
    MPEG program and transport streams.
    """
    p = Path(path)
    if p.suffix.lower() in VIDEO_EXTENSIONS:
        return True
    try:
        with open(p, "rb") as f:
            head = f.read(16)
            if head[:1] == b"\x47":  # MPEG-TS: a sync byte every 188 bytes
                f.seek(188)
                return f.read(1) == b"\x47"
    except OSError:
        return False
    box = head[4:8]
    if box == b"ftyp":
        return head[8:11] not in (b"M4A", b"M4B", b"M4P")
    return (
        box in (b"moov", b"mdat", b"wide", b"free", b"skip", b"pnot")  # QuickTime without ftyp
        or head.startswith(b"\x1a\x45\xdf\xa3")  # EBML: Matroska, WebM
        or (head.startswith(b"RIFF") and head[8:12] in (b"AVI ", b"AVIX"))
        or head.startswith(b"\x30\x26\xb2\x75\x8e\x66\xcf\x11")  # ASF, WMV
        or head.startswith(b"FLV\x01")
        or head.startswith(b"\x06\x0e\x2b\x34\x02\x05\x01\x01")  # MXF header partition
        or head.startswith(b"\x00\x00\x01\xba")  # MPEG program stream
    )


def probe(path: str | os.PathLike) -> VideoInfo:
    """Describe the video at ``path``.

    Decodes the first frame, because rotation is only reliably exposed on frames
    (the display matrix) and because a file whose first frame cannot be decoded
    is not worth accepting.

    Returns:
        :class:`VideoInfo` with the *display* size (after rotation), ``rotation`` as
        the clockwise angle (0/90/180/270) to apply to decoded pictures, ``fps`` and
        ``time_base`` as exact fractions, ``start_time``/``duration`` of the video
        stream in seconds, and ``frame_count`` from the container (exact for
        MP4/MOV) or estimated from duration x fps (Matroska and others).

    Raises:
        NotVideoError: (a :class:`MediaError`) a readable file with no video stream
            (e.g. audio only), or a still image.
        MediaError: missing file, a directory, an empty file, not a media file,
            no decodable frame, or
            frames larger than :data:`~blurface.media.common.MAX_SIDE` or narrower than
            :data:`~blurface.media.common.MAX_ASPECT`.
    """
    p = check_readable(path)
    container = open_input(p)
    try:
        if is_still_image(container):
            raise NotVideoError(f"{p}: is a still image, not a video: give a video file (mp4, mov, mkv, ...)")
        stream = video_stream(container)
        if stream is None:
            kinds = sorted({s.type for s in container.streams})
            if not kinds:
                raise MediaError(f"{p}: holds no streams at all: the file is damaged or not a media file")
            raise NotVideoError(f"{p}: has no video stream (it holds {', '.join(kinds)} only): give a video file")
        check_frame_size(stream.codec_context.width, stream.codec_context.height, p)
        limit_decoder(stream)
        first = first_frame(container, stream, p)
        check_frame_size(first.width, first.height, p)  # a header without a size (0x0), or one that lied
        rotation = (-int(round(first.rotation))) % 360 if first.rotation else 0
        if rotation not in (0, 90, 180, 270):
            log.warning("%s: rotation of %d degrees is not a multiple of 90; ignoring it", p, rotation)
            rotation = 0

        time_base = Fraction(stream.time_base) if stream.time_base else Fraction(1, 90000)
        fps = _frame_rate(stream, p)
        if stream.start_time is not None:
            start = float(stream.start_time * time_base)
        elif first.pts is not None:
            start = float(first.pts * time_base)
        else:
            start = 0.0
        duration = _stream_duration(container, stream, time_base, start)
        frame_count = _frame_count(stream, duration, fps, container.format.name)

        ctx = stream.codec_context
        width, height = ctx.width, ctx.height
        if rotation in (90, 270):
            width, height = height, width
        bit_rate = ctx.bit_rate or container.bit_rate or None
        return VideoInfo(
            path=str(p),
            container=container.format.name,
            width=width,
            height=height,
            rotation=rotation,
            fps=fps,
            time_base=time_base,
            start_time=start,
            duration=duration,
            frame_count=int(frame_count),
            codec=codec_name(stream),
            pix_fmt=ctx.pix_fmt or "",
            bit_rate=int(bit_rate) if bit_rate else None,
            streams=tuple(_stream_info(s) for s in container.streams),
            field_order=_field_order(ctx, first),
        )
    finally:
        container.close()


def _field_order(ctx: av.codec.context.CodecContext, first: av.VideoFrame) -> str:
    """The stream's field order once a frame is decoded (MPEG-2 and H.264 set it then)."""
    order = formats.FIELD_ORDERS.get(int(ctx.field_order or 0), "unknown")
    if order == "unknown":
        # Not stated: an interlaced first frame without an order is taken as top field first.
        return "tt" if first.interlaced_frame else "progressive"
    return order


def _frame_rate(stream: av.VideoStream, p: Path) -> Fraction:
    # A Matroska file muxed without DefaultDuration reports its time base's rate
    # (1000, or 30000) here: a rate at or above 1/time_base is a tick, not a frame.
    tick_rate = 1 / Fraction(stream.time_base) if stream.time_base else None
    for rate in (stream.average_rate, stream.guessed_rate, stream.base_rate):
        if rate and 0 < rate <= 1000 and (tick_rate is None or rate < tick_rate):
            return Fraction(rate)
    rate = _rate_from_packets(p, stream.index)
    if rate is None:
        log.warning("%s: frame rate unknown; assuming 30 fps", p)
        return Fraction(30)
    return rate


# Rates cameras and editors use; a measured rate within 1.5% snaps to one of them.
_COMMON_RATES = tuple(
    Fraction(r) for r in ("24000/1001", "24", "25", "30000/1001", "30", "48", "50", "60000/1001", "60", "120", "240")
)


def _rate_from_packets(p: Path, index: int, n: int = 60) -> Fraction | None:
    """Median frame spacing of the first ``n`` packets of stream ``index``, as a rate."""
    with av.open(str(p), metadata_errors="replace") as container:
        stream = container.streams[index]
        if not stream.time_base:
            return None
        tb = Fraction(stream.time_base)
        pts = []
        for packet in container.demux(stream):
            if packet.pts is not None:
                pts.append(packet.pts)
            if len(pts) >= n:
                break
    deltas = np.diff(np.sort(np.asarray(pts, np.int64)))
    deltas = deltas[deltas > 0]
    if deltas.size == 0:
        return None
    rate = 1 / (Fraction(int(np.median(deltas))) * tb)
    nearest = min(_COMMON_RATES, key=lambda r: abs(r - rate))
    return nearest if abs(nearest - rate) <= rate * Fraction(15, 1000) else rate.limit_denominator(1001)


def _stream_duration(
    container: av.container.InputContainer, stream: av.VideoStream, time_base: Fraction, start: float
) -> float:
    # Matroska has no stream duration, only a per-track DURATION tag. FFmpeg writes
    # the track's end time there; mkvmerge (which also writes _STATISTICS_* tags)
    # writes last minus first timestamp. The tag comes first: for Matroska FFmpeg
    # reports the whole file's duration as the stream's, which a subtitle or audio
    # track that outlasts the video makes too long (and the count then too high).
    tags = {k.lower(): v for k, v in stream.metadata.items()}
    match = re.fullmatch(r"(\d+):(\d+):(\d+(?:\.\d+)?)", tags.get("duration", "").strip())
    if match:
        h, m, s = match.groups()
        seconds = int(h) * 3600 + int(m) * 60 + float(s)
        return seconds if "_statistics_writing_app" in tags else max(0.0, seconds - start)
    if stream.duration:
        return float(stream.duration * time_base)
    if container.duration:
        container_start = (container.start_time or 0) / av.time_base
        return max(0.0, container.duration / av.time_base + container_start - start)
    return 0.0


def _frame_count(stream: av.VideoStream, duration: float, fps: Fraction, container_format: str = "") -> int:
    """Frames a full decode yields: exact for MP4/MOV and AVI, estimated elsewhere."""
    if stream.frames > 0:
        entries = stream.index_entries
        if container_format == "avi" and entries:
            # AVI's stated length counts every video chunk, and an empty chunk stands for
            # a dropped frame (the previous picture stays on screen one more slot):
            # FFmpeg's index leaves those out, and no frame is decoded for them. A 1.5 s
            # cut that FFmpeg muxed with an empty chunk said 46 frames and decoded 45.
            return sum(1 for entry in entries if entry.size > 0)
        # The MP4 sample table also lists frames an edit list cuts away (a trim made
        # on a phone, say); FFmpeg flags those as discarded and never outputs them.
        if len(entries) == stream.frames:
            return sum(1 for entry in entries if not entry.is_discard)
        return stream.frames
    return max(1, round(duration * fps))


def _stream_info(stream: av.stream.Stream) -> StreamInfo:
    kind = stream.type if stream.type in ("video", "audio", "subtitle", "attachment") else "data"
    codec = codec_name(stream)
    language = stream.metadata.get("language")
    return StreamInfo(stream.index, kind, codec, None if language in (None, "", "und") else language)


