"""Probe: what blurface needs to know about an input, and the low-level readers.

:func:`probe` reads a file's :class:`~blurface.types.VideoInfo` and refuses anything that
is not a video; the helpers open inputs, find the video stream and demux packets for the
other modules of :mod:`blurface.media`.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from .. import formats
from ..types import MediaError, StreamInfo, VideoInfo

log = logging.getLogger(__name__)


# Demuxers that read one picture file; FFmpeg presents each as a one-frame "video".
_IMAGE_DEMUXERS = ("image2", "image2pipe")

# The largest frames blurface accepts, checked from the stream header before any frame is
# decoded: a file of a few KB can declare a 32768x2 or 16000x16000 picture, and each step
# after the decoder (conversion, the detector's scaled copy, the encoder) allocates
# its own frame-sized buffers. 8192 px a side holds DCI 8K (8192x4320), UHD 8K
# (7680x4320) and 8K stereo 360 (8192x8192), in either orientation; 8:1 between the
# sides holds vertical phone video (9:16), 32:9 and 360 panoramas (2:1).
MAX_SIDE = 8192
MAX_ASPECT = 8


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
            frames larger than :data:`MAX_SIDE` or narrower than :data:`MAX_ASPECT`.
    """
    p = _check_readable(path)
    container = _open_input(p)
    try:
        if _is_still_image(container):
            raise NotVideoError(f"{p}: is a still image, not a video: give a video file (mp4, mov, mkv, ...)")
        stream = _video_stream(container)
        if stream is None:
            kinds = sorted({s.type for s in container.streams})
            if not kinds:
                raise MediaError(f"{p}: holds no streams at all: the file is damaged or not a media file")
            raise NotVideoError(f"{p}: has no video stream (it holds {', '.join(kinds)} only): give a video file")
        check_frame_size(stream.codec_context.width, stream.codec_context.height, p)
        _limit_decoder(stream)
        first = _first_frame(container, stream, p)
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
            codec=_codec_name(stream),
            pix_fmt=ctx.pix_fmt or "",
            bit_rate=int(bit_rate) if bit_rate else None,
            streams=tuple(_stream_info(s) for s in container.streams),
            field_order=_field_order(ctx, first),
        )
    finally:
        container.close()


def check_frame_size(width: int, height: int, p: str | os.PathLike) -> None:
    """Refuse a frame size beyond :data:`MAX_SIDE` or :data:`MAX_ASPECT` (0 means not known yet: passes).

    Raises:
        MediaError: naming the size and the limits.
    """
    if width <= 0 or height <= 0:
        return
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise MediaError(
            f"{p}: frames of {width}x{height} px are too narrow for a video (at most {MAX_ASPECT}:1 between the "
            "sides): the file is damaged or not footage"
        )
    if max(width, height) > MAX_SIDE:
        raise MediaError(
            f"{p}: frames of {width}x{height} px are larger than blurface handles "
            f"(at most {MAX_SIDE} px a side): scale the video down first"
        )


# FFmpeg's own cap on the pixels of a decoded picture (its default is 2^31).
_DECODER_LIMIT = {"max_pixels": str(MAX_SIDE * MAX_SIDE)}


def _limit_decoder(stream: av.VideoStream) -> None:
    """Make FFmpeg itself refuse frames over the limit, should a stream's pictures outgrow its header."""
    stream.codec_context.options = {**stream.codec_context.options, **_DECODER_LIMIT}


def _field_order(ctx: av.codec.context.CodecContext, first: av.VideoFrame) -> str:
    """The stream's field order once a frame is decoded (MPEG-2 and H.264 set it then)."""
    order = formats.FIELD_ORDERS.get(int(ctx.field_order or 0), "unknown")
    if order == "unknown":
        # Not stated: an interlaced first frame without an order is taken as top field first.
        return "tt" if first.interlaced_frame else "progressive"
    return order


def _check_readable(path: str | os.PathLike) -> Path:
    p = Path(path)
    if not p.exists():
        raise MediaError(f"{p}: no such file: check the path")
    if p.is_dir():
        raise MediaError(f"{p}: is a directory, not a video file")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise MediaError(f"{p}: cannot be read ({e.strerror})") from e
    if size == 0:
        raise MediaError(f"{p}: is empty (0 bytes): the copy or download probably failed")
    return p


def _open_input(p: Path) -> av.container.InputContainer:
    try:
        # Tags are not always UTF-8 (or are damaged): replace bad bytes rather than fail.
        # ``options`` also go to the decoders FFmpeg opens to find the streams' parameters,
        # which decode a first frame: capped, a 16000x16000 PNG stream costs nothing there.
        return av.open(str(p), "r", metadata_errors="replace", options=_DECODER_LIMIT)
    except av.error.FFmpegError as e:
        if isinstance(e, av.error.EOFError):
            raise MediaError(f"{p}: ends too early (FFmpeg: end of file): the file is truncated or damaged") from e
        if isinstance(e, av.error.InvalidDataError):
            raise MediaError(
                f"{p}: is not a readable video (FFmpeg: invalid data): the file is damaged, "
                "incomplete, or not a media file"
            ) from e
        raise MediaError(f"{p}: cannot be opened (FFmpeg: {getattr(e, 'strerror', None) or e})") from e
    except OSError as e:
        raise MediaError(f"{p}: cannot be opened: {e.strerror or e}") from e


def _is_still_image(container: av.container.InputContainer) -> bool:
    name = container.format.name
    return name in _IMAGE_DEMUXERS or name.endswith("_pipe")


def _video_stream(container: av.container.InputContainer) -> av.VideoStream | None:
    """First real video stream: cover art (``attached_pic``) is a picture, not the video."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


@contextmanager
def _video_input(p: Path) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """``p`` opened, with its first real video stream; closed on leaving. The one place
    a reader refuses a file without video, for the decoders, previews and format probes."""
    container = _open_input(p)
    try:
        stream = _video_stream(container)
        if stream is None:
            raise MediaError(f"{p}: has no video stream")
        check_frame_size(stream.codec_context.width, stream.codec_context.height, p)
        _limit_decoder(stream)
        yield container, stream
    finally:
        container.close()


def _first_frame(container: av.container.InputContainer, stream: av.VideoStream, p: Path) -> av.VideoFrame:
    # FFmpeg forgets a header size over ``max_pixels`` (it sets 0x0), then refuses the frame.
    size_known = stream.codec_context.width > 0 and stream.codec_context.height > 0
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as e:
        if not size_known and e.errno == errno.EINVAL:
            raise MediaError(
                f"{p}: its first video frame cannot be decoded within blurface's limit of {MAX_SIDE}x{MAX_SIDE} px: "
                "the frames are too large, or the file is damaged"
            ) from e
        raise MediaError(f"{p}: its first video frame cannot be decoded ({e}): the file is damaged") from e
    raise MediaError(f"{p}: its video stream holds no decodable frame: the file is damaged or truncated")


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
    codec = _codec_name(stream)
    language = stream.metadata.get("language")
    return StreamInfo(stream.index, kind, codec, None if language in (None, "", "und") else language)


def _demux(container: av.container.InputContainer, streams: list[av.stream.Stream], p: Path) -> Iterator[av.Packet]:
    """``container.demux(streams)`` with read errors turned into :class:`MediaError`."""
    packets = container.demux(streams)
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except av.error.FFmpegError as e:
            raise MediaError(f"{p}: reading failed ({e}): the file is truncated or damaged") from e
        yield packet


def _codec_name(stream: av.stream.Stream) -> str:
    try:
        return stream.codec.canonical_name
    except Exception:  # data/attachment streams may have no codec
        return stream.metadata.get("mimetype") or "unknown"


def _count_video_packets(path: Path) -> int:
    with av.open(str(path), metadata_errors="replace") as container:
        stream = _video_stream(container)
        if stream is None:
            return 0
        return sum(1 for packet in container.demux(stream) if packet.size)

