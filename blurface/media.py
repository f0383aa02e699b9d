"""Probe, decode and re-encode video files with PyAV.

This is the only module that imports :mod:`av`. It offers:

* :func:`probe` reads what the rest of blurface needs to know about an input
  (:class:`~blurface.types.VideoInfo`) and refuses anything that is not a video.
* :func:`iter_frames` decodes the first video stream into BGR (or RGB) arrays in
  display orientation, optionally downscaled by swscale for analysis.
* :func:`transcode` decodes again, lets a callback change each frame, encodes
  H.264 and copies every other stream bit-exactly, keeping every timestamp.
  :func:`check_output`, :func:`default_output_path` and
  :func:`cleanup_stale_temps` go with it. By default it keeps only the metadata
  :mod:`blurface.metadata` allows; :func:`read_tags` reads a file's metadata for it.

Timing rule, everywhere: timestamps are copied, never regenerated. Video frames
keep their source pts in the source stream's time base (so variable frame rates
and a video start offset, e.g. an MP4 edit list, survive); copied packets keep
their pts/dts, rescaled by the muxer to the output stream's time base.
"""

from __future__ import annotations

import collections
import errno
import functools
import io
import itertools
import logging
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Protocol

import av
import av.error
import cv2
import numpy as np

from . import formats, metadata
from .types import DecodedFrame, MediaError, OutputError, ProcessingError, StreamInfo, VideoInfo

log = logging.getLogger(__name__)

# Output extension -> FFmpeg muxer. WebM is left out on purpose: it cannot hold H.264.
OUTPUT_FORMATS: dict[str, str] = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}

# Demuxers that read one picture file; FFmpeg presents each as a one-frame "video".
_IMAGE_DEMUXERS = ("image2", "image2pipe")

# Tags that describe the old file and would be wrong on the new one.
_STALE_TAGS = frozenset(
    {
        "major_brand",
        "minor_version",
        "compatible_brands",
        "encoder",
        "rotate",
        "duration",
        "bps",
        "number_of_frames",
        "number_of_bytes",
        "_statistics_tags",
        "_statistics_writing_app",
        "_statistics_writing_date_utc",
        "vendor_id",
    }
)

# FFmpeg's default for Matroska shifts *every* stream so the first packet is at 0,
# e.g. by 21 ms for AAC priming (-1024 samples) remuxed from MP4: the video start
# moves. Matroska stores small negative block times fine, so keep them.
_EXTRA_MUX_OPTIONS: dict[str, dict[str, str]] = {"matroska": {"avoid_negative_ts": "disabled"}}

# FFmpeg's default channel layout per channel count (av_channel_layout_default).
_DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}

# swscale flags for colour conversions whose result is encoded. The defaults pick
# fast special-case converters: BGR -> yuv420p returns flat grey 220 as (215, 218,
# 216) after a round trip; with ACCURATE_RND it comes back exact.
_Interp = av.video.reformatter.Interpolation
_ACCURATE_TO_YUV = int(_Interp.BILINEAR | _Interp.ACCURATE_RND)
_ACCURATE_TO_RGB = int(_Interp.BILINEAR | _Interp.ACCURATE_RND | _Interp.FULL_CHR_H_INT)

# What follows ".{dst.name}.blurface-tmp-" in a temporary file's name: pid, then dst's suffix.
_TEMP_RE = re.compile(r"(\d+)(\.\w+|)")


# --------------------------------------------------------------------------- probe


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
        MediaError: missing file, a directory, an empty file, not a media file,
            no video stream (e.g. audio only), a still image, or no decodable frame.
    """
    p = _check_readable(path)
    container = _open_input(p)
    try:
        if _is_still_image(container):
            raise MediaError(f"{p}: is a still image, not a video: give a video file (mp4, mov, mkv, ...)")
        stream = _video_stream(container)
        if stream is None:
            kinds = sorted({s.type for s in container.streams})
            if not kinds:
                raise MediaError(f"{p}: holds no streams at all: the file is damaged or not a media file")
            raise MediaError(f"{p}: has no video stream (it holds {', '.join(kinds)} only): give a video file")
        first = _first_frame(container, stream, p)
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
        frame_count = _frame_count(stream, duration, fps)

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
        return av.open(str(p), "r", metadata_errors="replace")
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


def _first_frame(container: av.container.InputContainer, stream: av.VideoStream, p: Path) -> av.VideoFrame:
    try:
        for frame in container.decode(stream):
            return frame
    except av.error.FFmpegError as e:
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


def _frame_count(stream: av.VideoStream, duration: float, fps: Fraction) -> int:
    """Frames a full decode yields: exact for MP4/MOV, estimated elsewhere."""
    if stream.frames > 0:
        # The MP4 sample table also lists frames an edit list cuts away (a trim made
        # on a phone, say); FFmpeg flags those as discarded and never outputs them.
        entries = stream.index_entries
        if len(entries) == stream.frames:
            return sum(1 for entry in entries if not entry.is_discard)
        return stream.frames
    return max(1, round(duration * fps))


def _stream_info(stream: av.stream.Stream) -> StreamInfo:
    kind = stream.type if stream.type in ("video", "audio", "subtitle", "attachment") else "data"
    codec = _codec_name(stream)
    language = stream.metadata.get("language")
    return StreamInfo(stream.index, kind, codec, None if language in (None, "", "und") else language)


# --------------------------------------------------------------------------- decode


class _FrameDecoder:
    """Decodes packets of one video stream, numbering and timing the frames.

    Shared by :func:`iter_frames` and :func:`transcode` so both see the same
    frames, the same damaged-packet handling and the same truncation check.
    """

    def __init__(self, info: VideoInfo, stream: av.VideoStream) -> None:
        self.info = info
        self.stream = stream
        self.time_base = Fraction(stream.time_base) if stream.time_base else info.time_base
        # stream.frames comes from the MP4/MOV sample table: frame_count is exact.
        self.exact_count = stream.frames > 0
        self.count = 0
        self.errors = 0
        self.first_error: str | None = None  # where the first damaged packet was, for the message
        self.concealed = 0  # frames FFmpeg decoded from damaged data and patched up
        self.first_concealed: int | None = None
        self.last_end: float | None = None
        # Frame and slice threads: single-threaded H.264 decoding would cost as much as x264 veryfast.
        stream.thread_type = "AUTO"

    def decode(self, packet: av.Packet) -> list[tuple[int, float, av.VideoFrame]]:
        """``(index, time in s, frame)`` for each frame ``packet`` releases, in presentation order.

        A packet FFmpeg rejects is skipped (and counted) rather than ending the decode.
        """
        try:
            frames = packet.decode()
        except av.error.FFmpegError as e:
            # FFmpeg conceals most damage itself; what still raises is one bad packet.
            # Skipping it loses at most that frame, and finish() still refuses a
            # file that came up short. Details go to the debug log; finish() reports
            # once, so a damaged file gives one line, not one per packet.
            self.errors += 1
            if self.first_error is None:
                where = f"{float(packet.pts * self.time_base):.3f} s" if packet.pts is not None else "an unknown time"
                self.first_error = where
            log.debug("%s: skipped a damaged video packet at pts %s: %s", self.info.path, packet.pts, e)
            return []
        out = []
        for frame in frames:
            index = self.count
            self.count += 1
            if getattr(frame, "is_corrupt", False):
                self.concealed += 1
                if self.first_concealed is None:
                    self.first_concealed = index
            if frame.pts is None:
                t = self.info.start_time + index / float(self.info.fps)
            else:
                t = float(frame.pts * self.time_base)
            self.last_end = t + float(1 / self.info.fps)
            out.append((index, t, frame))
        return out

    def finish(self) -> None:
        """Raise :class:`MediaError` when the stream ended early (truncated or damaged file).

        Damage that cost no frame (FFmpeg concealed it) is logged as one warning.
        """
        expected = self.info.frame_count
        if self.exact_count or self.errors:
            # MP4/MOV counts are exact; and once packets were lost, no excuse is taken.
            if self.count >= expected:
                self._warn_damage()
                return
        else:
            # Estimated as duration x average rate, which rounding moves by a frame and
            # VFR by more: accept 2% short, or a last frame that reaches the stated end.
            end = self.info.start_time + self.info.duration
            if self.count >= expected - max(1, math.ceil(0.02 * expected)) or (
                self.last_end is not None and self.last_end >= end - 1.5 / float(self.info.fps)
            ):
                self._warn_damage()
                return
        skipped = ""
        if self.errors:
            plural = "s were" if self.errors > 1 else " was"
            skipped = f" ({self.errors} damaged video packet{plural} skipped, the first at {self.first_error})"
        raise MediaError(
            f"{self.info.path}: decoded only {self.count} of {expected} frames: the file is truncated or damaged{skipped}"
        )

    def _warn_damage(self) -> None:
        if self.errors:
            plural = "s were" if self.errors > 1 else " was"
            log.warning(
                "%s: %d damaged video packet%s skipped (the first at %s); the video may stutter there",
                self.info.path, self.errors, plural, self.first_error,
            )
        if self.concealed:
            plural = "s were" if self.concealed > 1 else " was"
            log.warning(
                "%s: %d video frame%s damaged and patched up by the decoder (the first is frame %d); "
                "check the output there",
                self.info.path, self.concealed, plural, self.first_concealed,
            )


def _rotate(image: np.ndarray, rotation: int) -> np.ndarray:
    """Turn a stored-orientation picture ``rotation`` degrees clockwise (a new C-contiguous array)."""
    if rotation == 90:
        return cv2.rotate(image, cv2.ROTATE_90_CLOCKWISE)
    if rotation == 180:
        return cv2.rotate(image, cv2.ROTATE_180)
    if rotation == 270:
        return cv2.rotate(image, cv2.ROTATE_90_COUNTERCLOCKWISE)
    # to_ndarray may return a view with row padding when the line size is aligned.
    return np.ascontiguousarray(image)


def _to_display(
    frame: av.VideoFrame,
    rotation: int,
    fmt: str = "bgr24",
    size: tuple[int, int] | None = None,
    interpolation: int | None = None,
) -> np.ndarray:
    """``(H, W, 3) uint8`` in ``fmt`` colour order and display orientation.

    ``size`` is ``(width, height)`` in display orientation; swscale does the
    scaling and the colour conversion in one pass. ``interpolation``: swscale
    flags, e.g. :data:`_ACCURATE_TO_RGB`.
    """
    if size is None:
        return _rotate(frame.to_ndarray(format=fmt, interpolation=interpolation), rotation)
    w, h = size
    if rotation in (90, 270):
        w, h = h, w
    return _rotate(frame.to_ndarray(width=w, height=h, format=fmt, interpolation=interpolation), rotation)


# Pixel formats whose first plane is 8-bit luma: the analysis reads it without swscale.
_LUMA_FIRST = frozenset({"yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p", "nv12", "nv21", "gray"})


def _luma(frame: av.VideoFrame, rotation: int, size: tuple[int, int] | None) -> np.ndarray:
    """``(H, W) uint8`` luma in display orientation, scaled to ``size`` (display orientation).

    Reads the Y plane and resizes it with OpenCV: about 0.3 ms for 720p to 800x450,
    where swscale's scaled RGB conversion took 6 ms, and the HOG detector runs
    about 25% faster on grey than on colour with the same detections.
    """
    # Scale in the stored orientation, then rotate.
    if size is None:
        w, h = frame.width, frame.height
    else:
        w, h = size if rotation not in (90, 270) else (size[1], size[0])
    if frame.format.name in _LUMA_FIRST:
        plane = frame.planes[0]
        y = _plane(plane)
        if (w, h) == (frame.width, frame.height):
            image = y
        else:
            shrink = w < frame.width / 2
            image = cv2.resize(y, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    else:
        image = frame.to_ndarray(width=w, height=h, format="gray")
    return _rotate(image, rotation)


_THUMB_WIDTH = 64


def _thumbnail(frame: av.VideoFrame, rotation: int) -> np.ndarray:
    """A ~64 px wide BGR picture in display orientation, from the YUV planes when possible."""
    w = _THUMB_WIDTH
    h = max(2, round(w * frame.height / max(1, frame.width)))
    if frame.format.name in ("yuv420p", "yuvj420p", "yuv422p", "yuvj422p", "yuv444p", "yuvj444p"):
        planes = []
        for plane in frame.planes[:3]:
            planes.append(cv2.resize(_plane(plane), (w, h), interpolation=cv2.INTER_AREA))
        thumb = cv2.cvtColor(cv2.merge(planes), cv2.COLOR_YUV2BGR)
    else:
        thumb = frame.to_ndarray(width=w, height=h, format="bgr24")
    return _rotate(thumb, rotation)


def iter_frames(
    info: VideoInfo,
    *,
    size: tuple[int, int] | None = None,
    fmt: str = "bgr24",
    start: float | None = None,
    end: float | None = None,
    times: np.ndarray | None = None,
    deinterlace: bool = False,
) -> Iterator[DecodedFrame]:
    """Decode the first video stream of ``info.path`` in presentation order.

    Args:
        info: from :func:`probe`.
        size: ``(width, height)`` in display orientation to scale to (swscale,
            bilinear). ``None`` keeps the full size. Smaller is faster to analyse.
        fmt: ``"bgr24"`` or ``"rgb24"``: colour order of ``DecodedFrame.image``;
            ``"gray"``: ``image`` is ``(H, W) uint8`` luma (the cheapest to analyse).
        start, end: only frames whose presentation time (seconds, as in
            ``DecodedFrame.time``) is in ``[start, end)``. Decoding seeks to the
            keyframe before ``start``; indices stay those of a full decode.
        times: ``(frame_count,)`` presentation time of every frame (``Plan.times``),
            used to number the frames of a range; found by :func:`frame_times` if not given.
        deinterlace: pass every frame through bwdif (one picture per frame, the first
            field's moment), so an interlaced picture shows one face, not two combed
            half-faces. Whole decodes only (not ``start``/``end``).

    Yields:
        :class:`DecodedFrame` with ``image`` ``(H, W, 3) uint8`` C-contiguous in
        display orientation, ``time`` the presentation time in seconds (start
        offset included). When ``size`` is given or ``fmt`` is RGB, ``full()``
        returns the full-size **BGR** frame, converted on first call and valid
        only until the iterator moves on; otherwise ``full`` is ``None``.

    Raises:
        MediaError: the file cannot be opened, or fewer frames than promised were
            decoded (truncated or damaged file; raised after the last frame).
        ValueError: ``fmt`` is not ``bgr24``/``rgb24``.
    """
    if fmt not in ("bgr24", "rgb24", "gray"):
        raise ValueError(f"fmt must be 'bgr24', 'rgb24' or 'gray', not {fmt!r}")
    if size is not None and (size[0] <= 0 or size[1] <= 0):
        raise ValueError(f"size must be positive (width, height), not {size!r}")
    if start is not None or end is not None:
        yield from _iter_range(info, size, fmt, start, end, times)
        return
    p = Path(info.path)
    container = _open_input(p)
    try:
        stream = _video_stream(container)
        if stream is None:
            raise MediaError(f"{p}: has no video stream")
        decoder = _FrameDecoder(info, stream)
        rotation = info.rotation
        scaled = size is not None and tuple(size) != (info.width, info.height)
        deinterlacer = _Deinterlacer(info.field_order) if deinterlace else None

        def decoded() -> Iterator[tuple[int, float, av.VideoFrame]]:
            for packet in _demux(container, [stream], p):
                items = decoder.decode(packet)
                yield from (deinterlacer.push(items) if deinterlacer is not None else items)
            if deinterlacer is not None:
                yield from deinterlacer.flush()

        for index, time, frame in decoded():
            thumb = None
            if fmt == "gray":
                image = _luma(frame, rotation, size if scaled else None)
                full = _lazy_full(frame, rotation)
                thumb = _thumbnail(frame, rotation)
            elif not scaled:
                image = _to_display(frame, rotation, fmt)
                full = None if fmt == "bgr24" else _lazy_full(frame, rotation)
            else:
                image = _to_display(frame, rotation, fmt, size)
                full = _lazy_full(frame, rotation)
            yield DecodedFrame(index, time, image, full, thumb)
        decoder.finish()
    finally:
        container.close()


def _lazy_full(frame: av.VideoFrame, rotation: int) -> Callable[[], np.ndarray]:
    cache: list[np.ndarray] = []

    def full() -> np.ndarray:
        if not cache:
            cache.append(_to_display(frame, rotation))
        return cache[0]

    return full


def _display_image(frame: av.VideoFrame, info: VideoInfo, size: tuple[int, int] | None, fmt: str) -> DecodedFrame:
    """One decoded frame as :func:`iter_frames` yields it (index and time filled in by the caller)."""
    rotation = info.rotation
    scaled = size is not None and tuple(size) != (info.width, info.height)
    if fmt == "gray":
        return DecodedFrame(-1, 0.0, _luma(frame, rotation, size if scaled else None), _lazy_full(frame, rotation),
                            _thumbnail(frame, rotation))
    if not scaled:
        return DecodedFrame(-1, 0.0, _to_display(frame, rotation, fmt),
                            None if fmt == "bgr24" else _lazy_full(frame, rotation))
    return DecodedFrame(-1, 0.0, _to_display(frame, rotation, fmt, size), _lazy_full(frame, rotation))


def frame_times(info: VideoInfo) -> np.ndarray:
    """``(n,)`` float64 presentation time (s) of every frame a full decode yields, in order.

    Read from packet timestamps without decoding (about 1% of a decode's cost), so a
    range can be numbered like a full decode. Packets an edit list discards are skipped.

    Raises:
        MediaError: the file cannot be read, or a packet has no timestamp (then only a
            full decode can number the frames).
    """
    p = Path(info.path)
    container = _open_input(p)
    try:
        stream = _video_stream(container)
        if stream is None:
            raise MediaError(f"{p}: has no video stream")
        tb = Fraction(stream.time_base) if stream.time_base else info.time_base
        pts = []
        for packet in _demux(container, [stream], p):
            if packet.size == 0 or getattr(packet, "is_discard", False):
                continue
            if packet.pts is None:
                raise MediaError(f"{p}: a video packet has no timestamp: frames cannot be numbered without decoding all")
            pts.append(packet.pts)
    finally:
        container.close()
    return np.sort(np.asarray(pts, np.int64)).astype(np.float64) * float(tb)


def _iter_range(
    info: VideoInfo,
    size: tuple[int, int] | None,
    fmt: str,
    start: float | None,
    end: float | None,
    times: np.ndarray | None,
) -> Iterator[DecodedFrame]:
    """:func:`iter_frames` for the frames with time in ``[start, end)``, numbered as in a full decode."""
    p = Path(info.path)
    times = frame_times(info) if times is None else np.asarray(times, np.float64)
    if len(times) == 0:
        return
    lo = -math.inf if start is None else start
    hi = math.inf if end is None else end
    wanted = np.flatnonzero((times >= lo - 1e-6) & (times < hi - 1e-6))
    if len(wanted) == 0:
        return
    first, last = int(wanted[0]), int(wanted[-1])
    # A frame's time matches a planned time within half the shortest frame interval.
    gaps = np.diff(times)
    tolerance = 0.5 * float(gaps[gaps > 0].min()) if np.any(gaps > 0) else 0.5 / float(info.fps or 30)
    container = _open_input(p)
    try:
        stream = _video_stream(container)
        if stream is None:
            raise MediaError(f"{p}: has no video stream")
        tb = Fraction(stream.time_base) if stream.time_base else info.time_base
        decoder = _FrameDecoder(info, stream)
        # Seek to the keyframe before the first wanted frame. If the demuxer lands after
        # it (no index, a broken one), step back further; at worst decode from the start.
        for back in (0.0, 2.0, 10.0, None):
            if back is None or times[first] - back <= times[0]:
                container.seek(0, stream=stream, backward=True)
            else:
                container.seek(int((times[first] - back) / tb), stream=stream, backward=True)
            decoder.count = 0
            frames = _range_frames(container, stream, decoder, p)
            head = next(frames, None)
            if head is None or back is None or head[1] <= times[first] + tolerance:
                break
        if head is None:
            return
        expected = first
        for _, t, frame in itertools.chain([head], frames):
            index = int(np.searchsorted(times, t - tolerance))
            if index >= len(times) or abs(times[index] - t) > tolerance or index < first:
                continue  # before the range, or a frame the plan does not know
            if index > last:
                break
            if index != expected:
                log.warning("%s: frames %d to %d were not decoded; check the range", p, expected, index - 1)
            expected = index + 1
            decoded = _display_image(frame, info, size, fmt)
            yield DecodedFrame(index, float(t), decoded.image, decoded.full, decoded.thumb)
        if expected <= last:
            raise MediaError(f"{p}: decoded frames up to {expected - 1} of {first}..{last}: the file is truncated or damaged")
    finally:
        container.close()


def _range_frames(
    container: av.container.InputContainer, stream: av.VideoStream, decoder: _FrameDecoder, p: Path
) -> Iterator[tuple[int, float, av.VideoFrame]]:
    for packet in _demux(container, [stream], p):
        yield from decoder.decode(packet)


def frame_at(info: VideoInfo, index: int, *, times: np.ndarray | None = None) -> np.ndarray:
    """Frame ``index`` (numbered as in a full decode) as ``(H, W, 3) uint8`` BGR, display orientation.

    Seeks to the keyframe before it and decodes forward: cheap anywhere in a long file.

    Raises:
        MediaError: the file cannot be read, or has no frame ``index``.
    """
    times = frame_times(info) if times is None else np.asarray(times, np.float64)
    if not 0 <= index < len(times):
        raise MediaError(f"{info.path}: has no frame {index} (it has {len(times)})")
    t = float(times[index])
    for frame in iter_frames(info, start=t, end=t + 1e-3, times=times):
        if frame.index == index:
            return frame.image
    raise MediaError(f"{info.path}: frame {index} could not be decoded")


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


# --------------------------------------------------------------------------- encode


@dataclass(frozen=True)
class EncodeSettings:
    """How :func:`transcode` encodes the video stream, and which metadata it keeps.

    Attributes:
        crf: constant rate factor (``None``: the encoder's default, see
            :mod:`blurface.formats`); lower is better quality and bigger files. For x264:
            The input is already lossy, so the aim is a second generation no one
            can tell from the first: at 18 (x264's "visually lossless" point) the
            unmasked picture of hamilton_clip.mp4 keeps 47.6 dB PSNR against the
            decoded source, at 1.65x its bitrate; 23 matches the source bitrate
            at 44.6 dB. Raise it for smaller files.
        preset: x264 speed against file size at equal quality. "veryfast" encodes
            720p at about 75 fps on two cores; "superfast" is ~40% faster but the
            files nearly double; slower presets save little on re-encodes.
        codec: ``"auto"`` keeps the input's codec family, depth, chroma, colour and
            field order (:func:`blurface.formats.choose`); or h264, hevc, av1, prores, ffv1.
        lossless: FFV1 (or x264 at QP 0 where the container cannot hold FFV1).
        deinterlace: write interlaced input as progressive (bwdif, one picture per frame).
        keep_metadata: keep every tag, data stream, attachment and chapter title of
            the input. Off (the default), the output keeps only what players need
            (see :mod:`blurface.metadata`): an anonymised file must not say where,
            when and with what it was filmed.
        threads: x264 frame threads. Fixed, not "one per core", because x264's bytes
            depend on its thread count (each frame thread limits the motion search of
            the next): with "auto" the same plan gave different files on one core
            (``taskset -c 0``: 158 of 275 packets differed) and on two. A fixed count
            gives the same file on any machine. 3 is what "auto" (1.5 per core) picks on
            two cores, so files and measurements made on such a machine stay the same byte
            for byte (a borderline leak of the naive baseline, verified in test_verify,
            moved from distance 0.589 to 0.644 with 4). 0 = auto: faster on many cores,
            not reproducible across machines.
    """

    crf: int | None = None
    preset: str | None = None
    codec: str = "auto"
    keep_metadata: bool = False
    threads: int = 3
    lossless: bool = False
    deinterlace: bool = False

    def request(self) -> formats.Request:
        codec = "h264" if self.codec == "libx264" else self.codec
        return formats.Request(codec=codec, crf=self.crf, preset=self.preset, lossless=self.lossless,
                               deinterlace=self.deinterlace)


def default_output_path(src: str | os.PathLike) -> Path:
    """``dir/video.mp4`` -> ``dir/video.blurred.mp4``.

    MP4, MOV and MKV keep their extension; any other container becomes ``.mp4``.
    """
    p = Path(src)
    suffix = p.suffix.lower() if p.suffix.lower() in OUTPUT_FORMATS else ".mp4"
    return p.with_name(f"{p.stem}.blurred{suffix}")


def _temp_path(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.blurface-tmp-{os.getpid()}{dst.suffix}")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's
        return True
    return True


def cleanup_stale_temps(dst: str | os.PathLike) -> list[str]:
    """Delete temporary files left next to ``dst`` by runs that were killed (SIGKILL, power loss).

    A temporary file is stale when the process id in its name is no longer
    running. Files of live processes (a run in progress) are left alone.

    Returns:
        Paths of the files removed.
    """
    dst = Path(dst)
    prefix = f".{dst.name}.blurface-tmp-"
    removed: list[str] = []
    try:
        candidates = [p for p in dst.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for p in candidates:
        match = _TEMP_RE.fullmatch(p.name[len(prefix) :])
        if not match or match.group(2) != dst.suffix or _pid_alive(int(match.group(1))):
            continue
        try:
            p.unlink()
        except OSError as e:
            log.warning("could not remove stale temporary file %s: %s", p, e)
            continue
        log.info("removed stale temporary file %s", p)
        removed.append(str(p))
    return removed


def check_output(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Refuse an unusable output path before any work is done.

    :func:`transcode` runs the same check; call this first to fail before a long analysis.

    Raises:
        OutputError: ``dst`` has an extension other than .mp4/.mov/.mkv, is ``src``
            itself, is a directory, exists (unless ``overwrite``), or its folder is
            missing or not writable.
    """
    _check_output(Path(src), Path(dst), overwrite)


def _check_output(src: Path, dst: Path, overwrite: bool) -> str:
    """:func:`check_output`, returning the muxer name for ``dst``."""
    if dst.is_dir():
        raise OutputError(f"{dst}: is a directory: give a file path such as {dst / 'video.blurred.mp4'}")
    fmt = OUTPUT_FORMATS.get(dst.suffix.lower())
    if fmt is None:
        shown = dst.suffix or "(none)"
        raise OutputError(f"{dst}: output extension {shown} is not supported: use one of {', '.join(OUTPUT_FORMATS)}")
    if dst.exists():
        try:
            same = os.path.samefile(src, dst)
        except OSError:
            same = os.path.realpath(src) == os.path.realpath(dst)
        if same:
            raise OutputError(f"{dst}: is the input file itself: choose another output path")
        if not overwrite:
            raise OutputError(f"{dst} exists: use --overwrite to replace it")
    parent = dst.parent
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"{parent}: is a file, not a folder: the output {dst.name} cannot be written inside it")
    if not parent.is_dir():
        raise OutputError(f"{parent}: output folder does not exist: create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{parent}: output folder is not writable: choose another folder")
    return fmt


# --------------------------------------------------------------------------- metadata
# What to keep is decided in blurface.metadata; this section reads and writes it with PyAV.

# FFmpeg's AVDISCARD_ALL: the demuxer marks a stream that is no part of the presentation
# (a MOV/MP4 chapter text track, which it exposes as chapters instead).
_DISCARD_ALL = 48


def read_tags(path: str | os.PathLike) -> metadata.FileTags:
    """Every container, stream and chapter tag of the media file at ``path``.

    Any media file will do (audio only too): ``blurface inspect`` checks archives.

    Raises:
        MediaError: missing, empty or unreadable file, or a still image.
    """
    p = _check_readable(path)
    with _open_input(p) as container:
        if _is_still_image(container):
            raise MediaError(
                f"{p}: is a still image: 'blurface inspect' checks video files (use an EXIF tool for pictures)"
            )
        return _file_tags(container, p)


def _file_tags(container: av.container.InputContainer, path: Path) -> metadata.FileTags:
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
        chapter_track=has_chapters and _is_chapter_track(stream),
    )


def _is_chapter_track(stream: av.stream.Stream) -> bool:
    return stream.type == "data" and stream.discard == _DISCARD_ALL


class _TagPolicy:
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

        Extra video streams (cover art, other angles) are not named: :func:`_plan_stream`
        warns about each already.
        """
        if self.keep_all:
            return None
        found = metadata.findings(self.meta)
        return metadata.summary([f for f in found if not (f.key is None and f.stream and f.stream.kind == "video")])


def _copy_tags(source: dict[str, str], target: dict[str, str]) -> None:
    for key, value in source.items():
        if key.lower() not in _STALE_TAGS:
            target[key] = value


# --------------------------------------------------------------------------- encode: other streams


def _muxer_rejects(fmt: str, template: av.stream.Stream, sample: av.Packet | None = None) -> str | None:
    """Why ``fmt`` cannot hold a copy of ``template``, or ``None`` if it can.

    Asks the muxer itself by writing a small file into memory: the codec-tag
    tables (``avformat_query_codec``) do not cover data streams, and a refusal
    while writing the real file would sink the whole output. ``sample``, a packet
    of ``template``, is written too: some streams pass the header and fail at
    the trailer (a QuickTime timecode track copied as data does).
    """
    try:
        with av.open(io.BytesIO(), "w", format=fmt) as scratch:
            target = scratch.add_stream_from_template(template)
            scratch.start_encoding()
            if sample is not None:
                sample.stream = target
                scratch.mux(sample)
    except (ValueError, TypeError, av.error.FFmpegError) as e:
        return str(e) or type(e).__name__
    return None


def _first_packet(path: str, index: int, limit: int = 500) -> av.Packet | None:
    """First non-empty packet of stream ``index`` among the file's first ``limit`` packets.

    Bounded because a stream may start late (a subtitle at minute 40) and the
    answer is only a sample for :func:`_muxer_rejects`.
    """
    with av.open(path, metadata_errors="replace") as container:
        for n, packet in enumerate(container.demux()):
            if n >= limit:
                break
            if packet.stream.index == index and packet.size:
                return packet
    return None


def _codec_name(stream: av.stream.Stream) -> str:
    try:
        return stream.codec.canonical_name
    except Exception:  # data/attachment streams may have no codec
        return stream.metadata.get("mimetype") or "unknown"


def _describe(stream: av.stream.Stream) -> str:
    details = [_codec_name(stream)]
    keys = ("language", "filename", "title") + (("handler_name",) if stream.type == "data" else ())
    for key in keys:
        value = stream.metadata.get(key)
        if value and value != "und":
            details.append(value)
    return f"{stream.type} stream #{stream.index} ({', '.join(details)})"


class _Route:
    """What happens to the packets of one input stream.

    Damage is counted rather than logged packet by packet: :meth:`flush` reports
    it in one warning line per stream (the details are in the debug log).
    """

    def __init__(self, source: av.stream.Stream, target: av.stream.Stream, path: str) -> None:
        self.source, self.target, self.path = source, target, path
        self.dropped = 0  # packets left out: undecodable, or timestamps the muxer refuses

    def feed(self, packet: av.Packet, out: av.container.OutputContainer) -> None:
        raise NotImplementedError

    def flush(self, out: av.container.OutputContainer) -> None:
        """Drain encoders (x264 and AAC hold frames back: lookahead, priming) and report damage."""
        if self.dropped:
            log.warning(
                "%s: %d damaged or out-of-order packet(s) of %s were left out; it may have gaps there",
                self.path, self.dropped, _describe(self.source),
            )

    def _mux(self, out: av.container.OutputContainer, packets: av.Packet | list[av.Packet]) -> None:
        for packet in packets if isinstance(packets, list) else [packets]:
            try:
                out.mux(packet)
            except av.error.ArgumentError as e:
                # The muxer refuses a packet of a damaged file (typically a dts going
                # backwards) before writing anything: leave that packet out, keep the rest.
                self.dropped += 1
                log.debug("%s: %s: left out a packet at dts %s: %s", self.path, _describe(self.source), packet.dts, e)


class _CopyRoute(_Route):
    """Bit-exact remux: payload untouched, pts/dts rescaled by the muxer."""

    def feed(self, packet: av.Packet, out: av.container.OutputContainer) -> None:
        # demux() ends each stream with an empty packet meant to flush decoders.
        if packet.pts is None and packet.dts is None and packet.size == 0:
            return
        packet.stream = self.target
        self._mux(out, packet)


class _AudioEncodeRoute(_Route):
    """Decode and re-encode audio the container cannot hold as is (PCM into MP4)."""

    def feed(self, packet: av.Packet, out: av.container.OutputContainer) -> None:
        try:
            frames = packet.decode()
            # Keep the source's timing: PyAV rescales pts from the frame's time base.
            encoded = [p for frame in frames for p in self.target.encode(frame)]
        except av.error.FFmpegError as e:
            self.dropped += 1
            log.debug("%s: skipped a damaged audio packet at pts %s: %s", self.path, packet.pts, e)
            return
        self._mux(out, encoded)

    def flush(self, out: av.container.OutputContainer) -> None:
        self._mux(out, self.target.encode(None))
        super().flush(out)


class _SubtitleConvertRoute(_Route):
    """Text subtitles re-encoded for the container (SRT/ASS -> mov_text, mov_text -> SRT)."""

    def feed(self, packet: av.Packet, out: av.container.OutputContainer) -> None:
        if packet.size == 0:
            return
        try:
            subtitle = self.source.codec_context.decode2(packet)
            if subtitle is None:
                return
            encoded = self.target.codec_context.encode_subtitle(subtitle)
        except av.error.FFmpegError as e:
            self.dropped += 1
            log.debug("%s: skipped a subtitle at pts %s that could not be converted: %s", self.path, packet.pts, e)
            return
        # Timing from the source packet, in its own time base: the subtitle's own
        # fields are relative display times, not positions in the file.
        encoded.time_base = packet.time_base
        encoded.pts = encoded.dts = packet.pts
        encoded.duration = packet.duration
        encoded.stream = self.target
        self._mux(out, encoded)


_TEXT_SUBTITLES = frozenset({"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"})


def _plan_stream(
    stream: av.stream.Stream,
    fmt: str,
    out: av.container.OutputContainer,
    path: str,
    warnings: list[str],
    tags: _TagPolicy,
) -> _Route | None:
    """Add an output stream for ``stream`` and say how to feed it; ``None`` drops it (with a warning)."""

    def warn(message: str) -> None:
        warnings.append(message)
        log.warning("%s", message)

    codec = _codec_name(stream)
    what = _describe(stream)
    if stream.type == "video":
        # A second picture stream (another angle, cover art) is not masked: copying
        # it would leak the faces this tool is asked to hide.
        warn(f"{what} was left out: only the first video stream is masked, and copying others would leak faces")
        return None

    # PCM is legal in MP4 (ISO 23003-5) but most players cannot play it there.
    pcm_in_mp4 = stream.type == "audio" and fmt == "mp4" and codec.startswith("pcm_")
    # Data streams (timecode, camera metadata) are the ones muxers accept in the
    # header and refuse later; a real packet settles it. So does it for a damaged
    # audio stream (AAC without its decoder config: Matroska refuses it at the
    # first packet, which would sink the whole output).
    sample = _first_packet(path, stream.index) if stream.type != "attachment" else None
    reason = "MP4 players rarely support PCM audio" if pcm_in_mp4 else _muxer_rejects(fmt, stream, sample)
    if reason is None:
        target = out.add_stream_from_template(stream)
        tags.copy_stream(stream, target)
        target.disposition = stream.disposition
        return _CopyRoute(stream, target, path)

    fits = [
        ext
        for ext, other in OUTPUT_FORMATS.items()
        if other != fmt
        and _muxer_rejects(other, stream, None if sample is None else _first_packet(path, stream.index)) is None
    ]
    kind_fix = f"a {' or '.join(fits)} output" if fits else "another tool"
    if not pcm_in_mp4:
        reason = f"the {fmt.upper() if fmt != 'matroska' else 'MKV'} muxer refuses {codec} {stream.type} streams"
    if stream.type == "audio":
        ctx = stream.codec_context
        if ctx is None:
            # FFmpeg has no decoder for it (or the header is damaged): nothing to re-encode from.
            warn(f"{what} was left out ({reason}, and it cannot be decoded to re-encode it); use {kind_fix} to keep it")
            return None
        layout = ctx.layout.name
        if "channels" in layout:
            # An unordered layout ("2 channels", typical of PCM in MOV): AAC needs a named one.
            layout = _DEFAULT_LAYOUTS.get(ctx.channels, layout)
        try:
            target = out.add_stream("aac", rate=ctx.sample_rate, layout=layout)
        except (ValueError, TypeError, av.error.FFmpegError) as e:
            warn(f"{what} was left out ({reason}, and AAC cannot encode it: {e}); use {kind_fix} to keep it")
            return None
        # 96 kb/s per channel: transparent AAC for speech and music, as PCM sources deserve.
        target.bit_rate = 96_000 * max(1, ctx.channels)
        tags.copy_stream(stream, target)
        target.disposition = stream.disposition
        warn(f"{what} was re-encoded as AAC ({reason}); use {kind_fix} to keep it bit-exact")
        return _AudioEncodeRoute(stream, target, path)

    if stream.type == "subtitle" and codec in _TEXT_SUBTITLES:
        new_codec = "subrip" if fmt == "matroska" else "mov_text"
        try:
            stream.codec_context.open(strict=False)  # the decoder makes the ASS header the encoder needs
            target = out.add_stream(new_codec)
            target.codec_context.subtitle_header = stream.codec_context.subtitle_header
            target.time_base = stream.time_base
            target.codec_context.time_base = stream.time_base
            tags.copy_stream(stream, target)
            target.disposition = stream.disposition
        except (ValueError, av.error.FFmpegError) as e:
            warn(f"{what} was left out ({reason}, and converting it failed: {e}); use {kind_fix} to keep it")
            return None
        warn(
            f"{what} was converted to {new_codec} ({reason}); styling may be simplified: "
            f"use {kind_fix} to keep it as is"
        )
        return _SubtitleConvertRoute(stream, target, path)

    timecode = stream.metadata.get("timecode")
    if stream.type == "data" and timecode:
        # A QuickTime timecode track: the muxer writes a new one from the video's tag.
        video = out.streams.video[0]
        video.metadata.setdefault("timecode", timecode)
        warn(f"{what} was not copied ({reason}); its timecode {timecode} is kept as a tag of the video stream")
        return None
    warn(f"{what} was left out ({reason}); use {kind_fix} to keep it")
    return None


def _even_display_size(info: VideoInfo) -> tuple[int, int]:
    return info.width + (info.width & 1), info.height + (info.height & 1)


def _plane(plane: av.video.plane.VideoPlane) -> np.ndarray:
    """Writable ``(height, width)`` uint8 view of one plane (row padding cut off)."""
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]


def _changed_box(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int] | None:
    """Even-aligned ``(y0, y1, x0, x1)`` around every pixel that differs, or ``None``.

    Costs about 0.3 ms at 720p; converting a whole frame back to YUV costs ten times that.
    """
    differs = before != after
    rows = np.flatnonzero(differs.any(axis=(1, 2)))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(differs[rows[0] : rows[-1] + 1].any(axis=(0, 2)))
    h, w = after.shape[:2]
    # Even edges: a 4:2:0 chroma sample covers 2x2 pixels and must come wholly from one side.
    y0, x0 = int(rows[0]) & ~1, int(cols[0]) & ~1
    y1, x1 = min(h, (int(rows[-1]) + 2) & ~1), min(w, (int(cols[-1]) + 2) & ~1)
    return y0, y1, x0, x1


def _even_box(box: np.ndarray, w: int, h: int) -> tuple[int, int, int, int] | None:
    """``(y0, y1, x0, x1)`` even-aligned and clipped around an xyxy box, or ``None`` if empty."""
    x0, y0 = max(0, int(np.floor(box[0]))) & ~1, max(0, int(np.floor(box[1]))) & ~1
    x1, y1 = min(w, (int(np.ceil(box[2])) + 1) & ~1), min(h, (int(np.ceil(box[3])) + 1) & ~1)
    if x1 <= x0 or y1 <= y0:
        return None
    return y0, y1, x0, x1


def _bgr_to_yuv(image: np.ndarray, colorspace: int) -> av.VideoFrame:
    """``(H, W, 3) uint8`` BGR (even sides) to a limited-range yuv420p frame using ``colorspace``'s matrix."""
    frame = av.VideoFrame.from_ndarray(image, format="bgr24")
    frame.colorspace = colorspace
    frame.color_range = 1
    return frame.reformat(format="yuv420p", interpolation=_ACCURATE_TO_YUV)


# --------------------------------------------------------------------------- encode: the input's own format


class FrameMasks(Protocol):
    """What :func:`transcode` masks: boxes per frame, and a masker that can draw them
    in BGR pictures and in YUV/RGB planes (:class:`blurface.mask.Masker` does both)."""

    def boxes(self, index: int) -> np.ndarray:
        """``(n, 4)`` float32 xyxy display boxes to mask on frame ``index`` (called once per frame, in order)."""
        ...

    def apply(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray: ...

    def regions(self, boxes: np.ndarray) -> np.ndarray: ...

    def apply_planes(
        self, planes: list[np.ndarray], boxes: np.ndarray, *, shifts: list[tuple[int, int]], fills: list[int]
    ) -> None: ...

    def plane_fills(self, *, depth: int, colorspace: int, full_range: bool, rgb: bool) -> list[int]: ...


@functools.lru_cache(maxsize=None)
def _pix_info(name: str) -> formats.PixelFormat:
    """Depth and chroma subsampling of an FFmpeg pixel format."""
    fmt = av.VideoFormat(name, 64, 64)
    comps = fmt.components
    chroma = [c for c in comps if c.is_chroma]
    shift_w = (64 // max(1, chroma[0].width)).bit_length() - 1 if chroma else 0
    shift_h = (64 // max(1, chroma[0].height)).bit_length() - 1 if chroma else 0
    rgb = bool(fmt.is_rgb)
    return formats.PixelFormat(
        name=name,
        depth=max(c.bits for c in comps),
        shift_w=shift_w,
        shift_h=shift_h,
        rgb=rgb,
        alpha=any(c.is_alpha for c in comps),
        gray=not chroma and not rgb,
    )


@functools.lru_cache(maxsize=None)
def _encoder_formats(name: str) -> frozenset[str] | None:
    """Pixel formats the bundled FFmpeg's encoder ``name`` takes; ``None`` if it has no such encoder."""
    if name not in av.codecs_available:
        return None
    try:
        codec = av.codec.Codec(name, "w")
    except (ValueError, av.error.FFmpegError):
        return None
    return frozenset(f.name for f in codec.video_formats or ())


def source_format(info: VideoInfo) -> formats.SourceFormat:
    """The input's video format as :func:`blurface.formats.choose` sees it.

    Reads the first frame for what only frames carry: HDR mastering display and content
    light level (HEVC and AV1 store them in the bitstream), and colour tags a stream leaves unset.

    Raises:
        MediaError: the file cannot be read.
    """
    p = Path(info.path)
    container = _open_input(p)
    try:
        stream = _video_stream(container)
        if stream is None:
            raise MediaError(f"{p}: has no video stream")
        ctx = stream.codec_context
        first = _first_frame(container, stream, p)
        side = first.side_data
        display = side.get(av.sidedata.sidedata.Type.MASTERING_DISPLAY_METADATA)
        light = side.get(av.sidedata.sidedata.Type.CONTENT_LIGHT_LEVEL)
        pix = ctx.pix_fmt or first.format.name

        def tag(value: int | None, fallback: int | None, unset: int) -> int:
            for v in (value, fallback):
                if v is not None and int(v) != unset:
                    return int(v)
            return unset

        return formats.SourceFormat(
            codec=_codec_name(stream),
            profile=ctx.profile,
            pix=_pix_info(pix),
            color_range=tag(ctx.color_range, first.color_range, 0) or (2 if pix.startswith("yuvj") else 0),
            color_primaries=tag(ctx.color_primaries, first.color_primaries, 2),
            color_trc=tag(ctx.color_trc, first.color_trc, 2),
            colorspace=tag(ctx.colorspace, first.colorspace, 2),
            field_order=info.field_order,
            mastering=formats.parse_mastering(
                bytes(display) if display is not None else None, bytes(light) if light is not None else None
            ),
            bit_rate=ctx.bit_rate or None,
        )
    finally:
        container.close()


def output_format(info: VideoInfo, settings: EncodeSettings = EncodeSettings(), dst: str | os.PathLike | None = None) -> formats.OutputFormat:
    """What :func:`transcode` will write for ``info`` (to ``dst``'s container, if given).

    Raises:
        OutputError: the requested codec cannot be written (to that container).
    """
    fmt = OUTPUT_FORMATS.get(Path(dst).suffix.lower()) if dst is not None else None
    try:
        return formats.choose(source_format(info), settings.request(), _encoder_formats, _pix_info, fmt)
    except ValueError as e:
        raise OutputError(f"{dst or info.path}: {e}") from e


_COLOUR_PROPS = ("colorspace", "color_range", "color_primaries", "color_trc")


class _Deinterlacer:
    """bwdif through PyAV's filter graph, one picture per frame (``mode=send_frame``).

    Each picture shows the first field's moment, with the other field's lines
    interpolated (bwdif: motion-adaptive, Bob Weaver with w3fdif's filters). It holds one
    frame back (it needs the next one), so :meth:`push` may return nothing and
    :meth:`flush` returns the last. Frames come back with their own index, time, pts
    and duration (bwdif's output time base is a field's).
    """

    def __init__(self, field_order: str) -> None:
        self.parity = "bff" if field_order in ("bb", "bt") else "tff"
        self.graph: av.filter.Graph | None = None
        # (index, time, pts, time base, duration, colour) of each frame pushed and not yet pulled
        self.pending: collections.deque[tuple[int, float, int | None, Fraction | None, int | None, tuple]] = (
            collections.deque()
        )
        self.count = 0

    def _setup(self, frame: av.VideoFrame) -> av.filter.Graph:
        graph = av.filter.Graph()
        source = graph.add_buffer(width=frame.width, height=frame.height, format=frame.format.name,
                                  time_base=Fraction(1, 1000))
        bwdif = graph.add("bwdif", f"mode=send_frame:parity={self.parity}:deint=all")
        sink = graph.add("buffersink")
        source.link_to(bwdif)
        bwdif.link_to(sink)
        graph.configure()
        return graph

    def push(self, items: list[tuple[int, float, av.VideoFrame]]) -> list[tuple[int, float, av.VideoFrame]]:
        out = []
        for index, time, frame in items:
            if self.graph is None:
                self.graph = self._setup(frame)
            colour = tuple(getattr(frame, name) for name in _COLOUR_PROPS)
            self.pending.append((index, time, frame.pts, frame.time_base, frame.duration, colour))
            # The graph wants steadily rising pts in its own time base; the real ones come back in _pull.
            frame.pts, frame.time_base = self.count, Fraction(1, 1000)
            self.count += 1
            self.graph.push(frame)
            out.extend(self._pull())
        return out

    def flush(self) -> list[tuple[int, float, av.VideoFrame]]:
        if self.graph is None:
            return []
        self.graph.push(None)
        return self._pull()

    def _pull(self) -> list[tuple[int, float, av.VideoFrame]]:
        assert self.graph is not None
        out = []
        while self.pending:
            try:
                picture = self.graph.pull()
            except (av.error.BlockingIOError, av.error.EOFError):
                break
            index, time, pts, time_base, duration, colour = self.pending.popleft()
            picture.pts, picture.time_base, picture.duration = pts, time_base, duration
            for name, value in zip(_COLOUR_PROPS, colour, strict=True):
                setattr(picture, name, value)
            out.append((index, time, picture))
        return out


def _samples(plane: av.video.plane.VideoPlane, depth: int) -> np.ndarray:
    """Writable ``(height, width)`` view of one plane: uint8, or uint16 above 8 bits (row padding cut off)."""
    if depth <= 8:
        return _plane(plane)
    return np.frombuffer(plane, np.uint16).reshape(plane.height, plane.line_size // 2)[:, : plane.width]


def _new_frame_like(frame: av.VideoFrame, width: int, height: int, fmt: str | None = None) -> av.VideoFrame:
    new = av.VideoFrame(width, height, fmt or frame.format.name)
    for name in _COLOUR_PROPS:
        setattr(new, name, getattr(frame, name))
    return new


class _NativeFrames:
    """Builds each frame to encode in the output's own pixel format and depth.

    The decoded frame goes to the encoder as it is (turned upright, padded to even sides
    and converted to the output's pixel format only where needed), so interlacing flags,
    HDR side data and every unmasked pixel are kept. Masks are drawn into its planes in
    their own depth: a 10-bit source is blurred in 10 bits, with no 8-bit step.

    With ``masks`` nothing else is converted: a whole-frame YUV -> BGR -> YUV round trip
    costs about as much as the x264 encode at 720p (accurate swscale, ~3 ms each way) and
    shifts colours. The ``process`` callback of the older API needs a BGR picture: it gets
    one (8-bit), and only the boxes it changed are converted back into the planes.
    """

    def __init__(
        self,
        info: VideoInfo,
        target: formats.OutputFormat,
        size: tuple[int, int],
        masks: FrameMasks | None,
        process: Callable[[DecodedFrame], object] | None,
        reports_changes: bool,
    ) -> None:
        self.info, self.target, self.size = info, target, size
        self.masks, self.process, self.reports_changes = masks, process, reports_changes
        self.pix = _pix_info(target.pix_fmt)
        self.depth = self.pix.depth
        colour_planes = 1 if self.pix.gray else 3
        self.shifts = [(0, 0)] + [(self.pix.shift_w, self.pix.shift_h)] * (colour_planes - 1)
        if self.pix.rgb:
            self.shifts = [(0, 0)] * colour_planes
        self.align = 1 << max(self.pix.shift_w, self.pix.shift_h, 1)
        self.fills: list[int] | None = None

    def frame(self, frame: av.VideoFrame, index: int, time: float) -> av.VideoFrame:
        work = self._upright(frame)
        if self.masks is not None:
            boxes = self.masks.boxes(index)
            if len(boxes):
                work = self._writable(work, frame)
                if self.fills is None:
                    self.fills = self.masks.plane_fills(
                        depth=self.depth, colorspace=self.target.colorspace,
                        full_range=self.target.color_range == 2, rgb=self.pix.rgb,
                    )
                planes = [_samples(p, self.depth) for p in work.planes[: len(self.shifts)]]
                self.masks.apply_planes(planes, boxes, shifts=self.shifts, fills=self.fills)
        else:
            assert self.process is not None
            work = self._processed(work, frame, index, time)
        work.pict_type = 0  # let the encoder choose frame types, not copy the source's
        work.colorspace = self.target.colorspace
        work.color_range = self.target.color_range
        work.color_primaries = self.target.color_primaries
        work.color_trc = self.target.color_trc
        return work

    def _upright(self, frame: av.VideoFrame) -> av.VideoFrame:
        """Upright, even-sided, in the output's pixel format; ``frame`` itself when it already is."""
        rotation = self.info.rotation
        if rotation:
            pix = _pix_info(frame.format.name)
            if pix.shift_w != pix.shift_h and rotation in (90, 270):
                frame = frame.reformat(format=re.sub(r"4\d\dp", "444p", frame.format.name))
            w, h = (frame.height, frame.width) if rotation in (90, 270) else (frame.width, frame.height)
            turned = _new_frame_like(frame, w, h)
            depth = _pix_info(frame.format.name).depth
            k = -rotation // 90  # np.rot90 turns counter-clockwise
            for src, dst in zip(frame.planes, turned.planes, strict=True):
                _samples(dst, depth)[...] = np.rot90(_samples(src, depth), k)
            frame = turned
        if frame.format.name != self.target.pix_fmt:
            converted = frame.reformat(
                format=self.target.pix_fmt, interpolation=_ACCURATE_TO_YUV,
                src_color_range=frame.color_range or None, dst_color_range=self.target.color_range or None,
            )
            for name in ("colorspace", "color_primaries", "color_trc"):
                setattr(converted, name, getattr(frame, name))
            frame = converted
        if (frame.width, frame.height) != self.size:
            padded = _new_frame_like(frame, *self.size)
            for src, dst in zip(frame.planes, padded.planes, strict=True):
                a, b = _samples(src, self.depth), _samples(dst, self.depth)
                # 4:2:0 chroma covers 2x2 pixel blocks, so x264 needs even sides. Repeating the
                # last row/column keeps every source pixel and box coordinate unchanged (scaling
                # would blur and shift them) and, unlike black, adds no border or chroma bleed.
                b[...] = np.pad(a, ((0, b.shape[0] - a.shape[0]), (0, b.shape[1] - a.shape[1])), mode="edge")
            frame = padded
        return frame

    @staticmethod
    def _writable(work: av.VideoFrame, decoded: av.VideoFrame) -> av.VideoFrame:
        # A decoded frame's buffers are shared with the decoder's reference pictures:
        # drawing into them would corrupt the frames decoded after it.
        if work is decoded:
            work.make_writable()
        return work

    def _processed(self, work: av.VideoFrame, decoded: av.VideoFrame, index: int, time: float) -> av.VideoFrame:
        h, w = self.info.height, self.info.width
        image = np.ascontiguousarray(
            work.to_ndarray(format="bgr24", interpolation=_ACCURATE_TO_RGB)[:h, :w]
        )
        before = None if self.reports_changes else image.copy()
        result = self.process(DecodedFrame(index, time, image))
        changed = None
        if self.reports_changes:
            result, changed = result  # type: ignore[misc]
            changed = np.asarray(changed, np.float32).reshape(-1, 4)
        after = _check_processed(result, image.shape, index)
        if changed is not None:
            boxes = [_even_box(b, w, h) for b in changed]
        else:
            assert before is not None
            boxes = [_changed_box(before, after)]
        boxes = [b for b in boxes if b is not None]
        if not boxes:
            return work
        work = self._writable(work, decoded)
        planes = [_samples(p, self.depth) for p in work.planes[: len(self.shifts)]]
        a = self.align
        for y0, y1, x0, x1 in boxes:
            y0, x0 = y0 - y0 % a, x0 - x0 % a
            y1, x1 = min(self.size[1], -(-y1 // a) * a), min(self.size[0], -(-x1 // a) * a)
            bgr = after[y0:min(y1, h), x0:min(x1, w)]
            if bgr.shape[:2] != (y1 - y0, x1 - x0):
                bgr = cv2.copyMakeBorder(bgr, 0, y1 - y0 - bgr.shape[0], 0, x1 - x0 - bgr.shape[1], cv2.BORDER_REPLICATE)
            patch = av.VideoFrame.from_ndarray(np.ascontiguousarray(bgr), format="bgr24")
            patch.colorspace = self.target.colorspace
            patch.color_range = 2
            patch = patch.reformat(
                format=self.target.pix_fmt, interpolation=_ACCURATE_TO_YUV,
                dst_colorspace=self.target.colorspace or None, dst_color_range=self.target.color_range or None,
            )
            for plane, src, (sx, sy) in zip(planes, patch.planes, self.shifts, strict=False):
                plane[y0 >> sy : y1 >> sy, x0 >> sx : x1 >> sx] = _samples(src, self.depth)
        return work


def transcode(
    info: VideoInfo,
    dst: str | os.PathLike,
    process: Callable[[DecodedFrame], np.ndarray] | None = None,
    *,
    settings: EncodeSettings = EncodeSettings(),
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    reports_changes: bool = False,
    masks: FrameMasks | None = None,
) -> list[str]:
    """Re-encode ``info.path`` to ``dst`` with every frame passed through ``process``.

    ``process`` gets each frame as a :class:`DecodedFrame` whose ``image`` is the
    full-size ``(H, W, 3) uint8`` BGR picture in display orientation, and returns
    the picture to encode: same shape, uint8, BGR (it may change ``image`` in
    place and return it).

    ``masks`` (instead of ``process``): where to mask each frame and the masker that
    does it. Then masks are drawn into the decoded planes in their own pixel format and
    bit depth (a 10-bit source is masked in 10 bits), frames without masks go to the
    encoder as decoded, and ``process`` is not needed.

    The video keeps the input's format where an encoder exists (see
    :func:`blurface.formats.choose` and ``settings.codec``): codec family and profile,
    depth, chroma, colour tags, HDR mastering metadata and field order; otherwise it is
    H.264 at the closest depth and chroma, with one warning saying so. Odd sides are
    padded by one repeated row/column. Frames are encoded upright and the output carries **no rotation
    metadata**: players must not rotate it again. Each output frame keeps its
    source pts, so frame rate (variable included) and the video's start offset
    are unchanged. Audio, subtitle, data and attachment streams are copied
    packet for packet where the container accepts them; otherwise audio becomes
    AAC, text subtitles are converted (SRT/ASS <-> mov_text), and anything else is
    left out. Every such change is returned as a sentence (and logged).

    Metadata: by default only what players need is kept (stream languages, font
    attachments, chapter times; see :mod:`blurface.metadata`), and one sentence
    names the keys that were dropped (never their values). With
    ``settings.keep_metadata`` every container and stream tag, data stream,
    attachment and chapter title is kept. Either way only tags change: copied
    packets stay bit-exact.

    The output is written to a hidden temporary file next to ``dst``, checked
    (frame count, duration and start time against the input), then renamed onto
    ``dst``: ``dst`` is never left half-written.

    Args:
        info: from :func:`probe`.
        dst: output path; ``.mp4``, ``.mov`` or ``.mkv``.
        process: frame callback, see above.
        settings: x264 quality and speed; whether to keep metadata.
        overwrite: replace an existing ``dst``.
        progress: called after each frame with the number of frames written so far.
        reports_changes: ``process`` returns ``(image, boxes)``, where ``(n, 4)`` xyxy
            ``boxes`` hold every pixel it changed. Only those regions are converted
            back to YUV, and no before/after comparison is needed (it cost ~3 ms per
            720p frame, as much as the rest of the render).

    Returns:
        Warnings: one human sentence per stream that was converted or left out.

    Raises:
        OutputError: before any work, when ``dst`` has an unsupported extension,
            is the input, exists (without ``overwrite``), or its folder is missing
            or not writable.
        MediaError: the input cannot be read, or is truncated (fewer frames than promised).
        ProcessingError: ``process`` returned a wrong array, the disk filled up,
            encoding failed, or the result failed its check.
        Any exception raised by ``process`` (and ``KeyboardInterrupt``) propagates
        unchanged after the temporary file is removed.
    """
    src = Path(info.path)
    dst = Path(dst)
    fmt = _check_output(src, dst, overwrite)
    cleanup_stale_temps(dst)
    tmp = _temp_path(dst)
    try:
        try:
            warnings, written, exact_input = _encode(
                info, tmp, fmt, process, settings, progress, reports_changes, masks
            )
            _verify(info, tmp, written, exact_input)
            os.replace(tmp, dst)
        except (OSError, av.error.FFmpegError) as e:
            if getattr(e, "errno", None) == errno.ENOSPC:
                raise ProcessingError(f"{dst.parent}: no space left on the disk: free some space and run again") from e
            if isinstance(e, av.error.FFmpegError):
                # Input read errors were already turned into MediaError; what is left
                # is the encoder or muxer refusing something.
                raise ProcessingError(f"{dst}: encoding failed: {e}") from e
            raise
    except BaseException:
        _remove_quietly(tmp)
        raise
    return warnings


def _remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("could not remove temporary file %s: %s", path, e)


def _encode(
    info: VideoInfo,
    tmp: Path,
    fmt: str,
    process: Callable[[DecodedFrame], np.ndarray] | None,
    settings: EncodeSettings,
    progress: Callable[[int], None] | None,
    reports_changes: bool = False,
    masks: FrameMasks | None = None,
) -> tuple[list[str], _Written, bool]:
    """Write ``tmp``; return (warnings, what was written, whether the input's frame count was exact)."""
    src = Path(info.path)
    warnings: list[str] = []
    inp = _open_input(src)
    out: av.container.OutputContainer | None = None
    try:
        in_video = _video_stream(inp)
        if in_video is None:
            raise MediaError(f"{src}: has no video stream")
        # faststart moves the index to the front so playback can begin before download ends.
        # (container_options: PyAV would also hand plain options to every encoder.)
        tags = _TagPolicy(_file_tags(inp, src), settings.keep_metadata)
        options = {"movflags": "+faststart" + tags.movflags()} if fmt in ("mp4", "mov") else {}
        options.update(_EXTRA_MUX_OPTIONS.get(fmt, {}))
        # Matroska otherwise writes random segment and track UIDs: same plan, different bytes.
        options["fflags"] = "+bitexact"
        try:
            out = av.open(str(tmp), "w", format=fmt, container_options=options)
        except av.error.FFmpegError as e:
            raise OutputError(f"{tmp.parent}: cannot create the output file: {e}") from e
        tags.copy_container(inp.metadata, out.metadata)

        decoder = _FrameDecoder(info, in_video)
        in_tb = decoder.time_base
        out_size = _even_display_size(info)
        in_ctx = in_video.codec_context
        try:
            target = formats.choose(source_format(info), settings.request(), _encoder_formats, _pix_info, fmt)
        except ValueError as e:
            raise OutputError(f"{tmp.name.split('.blurface-tmp-')[0].lstrip('.')}: {e}") from e
        if target.fallback:
            warnings.append(target.fallback)
            log.warning("%s", target.fallback)
        if target.encoder == "libsvtav1":
            # SVT-AV1 prints its whole configuration to stderr unless told otherwise, and
            # only an environment variable tells it (1 = errors only).
            os.environ.setdefault("SVT_LOG", "1")
        out_video = out.add_stream(target.encoder, rate=info.fps)
        out_video.width, out_video.height = out_size
        out_video.pix_fmt = target.pix_fmt
        # Source time base in and out: pts are copied verbatim, no rounding.
        out_video.time_base = in_tb
        ctx = out_video.codec_context
        # MPEG-2 only knows its standard frame rates as a time base; PyAV rescales each
        # frame's pts to it, and the stream keeps the source's.
        ctx.time_base = 1 / Fraction(info.fps) if target.encoder == "mpeg2video" else in_tb
        # Slice threads (PyAV's default) cost x264 compression; frame threads are its own default.
        ctx.thread_type = "FRAME"
        ctx.thread_count = settings.threads
        ctx.color_primaries = target.color_primaries
        ctx.color_trc = target.color_trc
        ctx.colorspace = target.colorspace
        ctx.color_range = target.color_range
        ctx.field_order = formats.FIELD_ORDER_CODES[target.field_order]
        if in_video.sample_aspect_ratio and in_video.sample_aspect_ratio != 1:
            sar = Fraction(in_video.sample_aspect_ratio)
            ctx.sample_aspect_ratio = 1 / sar if info.rotation in (90, 270) else sar
        options = dict(target.options)
        if target.flags:
            options["flags"] = options.get("flags", "") + "".join(f"+{flag}" for flag in target.flags)
        out_video.options = options
        tags.copy_stream(in_video, out_video)

        chapters = inp.chapters()
        routes: dict[int, _Route] = {}
        for stream in inp.streams:
            if stream is in_video or (chapters and _is_chapter_track(stream)):
                continue  # the chapter track is written again from ``chapters`` below
            if not tags.keeps_stream(stream):
                continue  # named in the metadata warning at the end
            route = _plan_stream(stream, fmt, out, str(src), warnings, tags)
            if route is not None:
                routes[stream.index] = route
        if chapters:
            try:
                out.set_chapters(tags.chapters(chapters))
            except (ValueError, TypeError, av.error.FFmpegError) as e:
                message = f"chapters were left out: {e}"
                warnings.append(message)
                log.warning("%s", message)

        if process is None and masks is None:
            raise ValueError("transcode needs process or masks")
        # Every format, 8-bit 4:2:0 H.264 included, is built in its own pixel format and
        # depth: masks are drawn into the decoded planes (chroma at its own size) and
        # unmasked frames go to the encoder as decoded, with no conversion at all.
        native = _NativeFrames(info, target, out_size, masks, process, reports_changes)
        deinterlacer = _Deinterlacer(info.field_order) if target.deinterlace else None
        stored_size = (in_ctx.width, in_ctx.height)
        written = _Written()
        last_pts: int | None = None
        fixed_pts = 0

        def emit(index: int, time: float, frame: av.VideoFrame) -> None:
            nonlocal last_pts, fixed_pts
            if (frame.width, frame.height) != stored_size:
                # A mid-stream size change (adaptive streams): the encoder's size is fixed.
                frame = _resized(frame, stored_size)
            encoded = native.frame(frame, index, time)
            pts = frame.pts
            if pts is None:
                pts = round((Fraction(info.start_time) + index / info.fps) / in_tb)
            if last_pts is not None and pts <= last_pts:
                # x264 refuses non-increasing pts; nudge by one tick rather than fail.
                pts = last_pts + 1
                fixed_pts += 1
            last_pts = pts
            encoded.pts = pts
            encoded.time_base = in_tb
            encoded.duration = frame.duration
            out.mux(out_video.encode(encoded))
            written.frames += 1
            if written.first is None:
                written.first = float(pts * in_tb)
            step = frame.duration if frame.duration else round(1 / (info.fps * in_tb))
            written.end = float((pts + step) * in_tb)
            if progress is not None:
                progress(written.frames)

        wanted = [in_video] + [s for s in inp.streams if s.index in routes]
        for packet in _demux(inp, wanted, src):
            if packet.stream is not in_video:
                routes[packet.stream.index].feed(packet, out)
                continue
            items = decoder.decode(packet)
            for index, time, frame in deinterlacer.push(items) if deinterlacer is not None else items:
                emit(index, time, frame)
        if deinterlacer is not None:
            for index, time, frame in deinterlacer.flush():
                emit(index, time, frame)
        decoder.finish()
        if fixed_pts:
            log.warning("%s: %d video frames had repeated or missing timestamps; shifted by one tick", src, fixed_pts)
        out.mux(out_video.encode(None))  # drain x264's lookahead and B-frame queue
        for route in routes.values():
            route.flush(out)
        out.close()  # writes the trailer (and moves the index up front for faststart)
        out = None
        dropped = tags.summary()
        if dropped:
            warnings.append(dropped)
            log.warning("%s", dropped)
        return warnings, written, decoder.exact_count
    finally:
        if out is not None:
            try:
                out.close()
            except Exception as e:  # already failing: keep the first error
                log.debug("closing the unfinished output failed: %s", e)
        inp.close()


def _resized(frame: av.VideoFrame, size: tuple[int, int]) -> av.VideoFrame:
    resized = frame.reformat(width=size[0], height=size[1])
    resized.pts, resized.time_base, resized.duration = frame.pts, frame.time_base, frame.duration
    return resized


def _check_processed(image: object, shape: tuple[int, ...], index: int) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.shape != shape:
        got = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ProcessingError(f"frame {index}: process() must return a uint8 array of shape {shape}, got {got}")
    return np.ascontiguousarray(image)


@dataclass
class _Written:
    """What :func:`_encode` put in the video stream."""

    frames: int = 0
    first: float | None = None  # first frame's presentation time, s
    end: float | None = None  # last frame's presentation time plus its duration, s


def _verify(info: VideoInfo, tmp: Path, written: _Written, exact_input: bool) -> None:
    """Re-read the finished file; raise :class:`ProcessingError` unless it holds what was written.

    ``exact_input``: the input's duration comes from an MP4/MOV sample table and
    is compared too (Matroska and other inputs may only state a container
    duration that includes the audio's tail).
    """
    try:
        result = probe(tmp)
    except MediaError as e:
        raise ProcessingError(f"the encoded output cannot be read back: {e}") from e
    count = result.frame_count
    if OUTPUT_FORMATS.get(tmp.suffix.lower()) not in ("mp4", "mov"):
        count = _count_video_packets(tmp)  # Matroska states no frame count
    # A frame plus a millisecond: Matroska rounds timestamps to milliseconds.
    slack = 1 / float(info.fps) + 0.001
    problems = []
    if count != written.frames:
        problems.append(f"{count} frames instead of {written.frames}")
    if written.first is not None and abs(result.start_time - written.first) > slack:
        problems.append(f"video starts at {result.start_time:.3f} s instead of {written.first:.3f} s")
    expected = [written.end - written.first] if written.first is not None and written.end is not None else []
    if exact_input and info.duration > 0:
        expected.append(info.duration)
    for duration in expected:
        if abs(result.duration - duration) > slack:
            problems.append(f"video lasts {result.duration:.3f} s instead of {duration:.3f} s")
            break
    if problems:
        raise ProcessingError(f"the encoded output failed its check: {'; '.join(problems)}")


def _count_video_packets(path: Path) -> int:
    with av.open(str(path), metadata_errors="replace") as container:
        stream = _video_stream(container)
        if stream is None:
            return 0
        return sum(1 for packet in container.demux(stream) if packet.size)


# --------------------------------------------------------------------------- encode: new clips (previews, excerpts, mattes)
#
# transcode() above re-encodes a whole input and copies its other streams. The helpers
# below write a *new* video from pictures the caller makes (a masked range, a scaled
# proxy, a black-and-white matte), with the first audio track of a time range.


@dataclass(frozen=True)
class ClipCodec:
    """Encoder of a :class:`ClipWriter`: FFmpeg codec, pixel format and private options."""

    codec: str
    pix_fmt: str
    options: tuple[tuple[str, str], ...] = ()
    threads: int = EncodeSettings.threads  # fixed, for reproducible bytes (see there)

    @classmethod
    def x264(cls, settings: EncodeSettings) -> ClipCodec:
        crf = settings.crf if settings.crf is not None else formats.DEFAULT_CRF["libx264"]
        preset = settings.preset or formats.DEFAULT_PRESET
        return cls("libx264", "yuv420p", (("crf", str(crf)), ("preset", preset)), settings.threads)


# A matte must open in editing software: ProRes 422 HQ in QuickTime is imported by
# Premiere, Resolve and Final Cut alike, and PyAV ships FFmpeg's prores_ks encoder. Its
# luma is full resolution (only chroma is 4:2:2), 10-bit, and flat black and white come
# back exact. FFV1 (lossless, Matroska) suits FFmpeg-based tools and archives.
MATTE_CODECS: dict[str, ClipCodec] = {
    ".mov": ClipCodec("prores_ks", "yuv422p10le", (("profile", "3"), ("vendor", "apl0"))),
    ".mkv": ClipCodec("ffv1", "gray", (("level", "3"),)),
}


class _AudioRange:
    """The first audio track of ``src`` between ``start`` and ``end`` s, re-encoded as AAC
    and moved ``offset`` s earlier. Cut at sample precision (copying packets would cut
    at ~21 ms AAC frames and keep the encoder delay of the source's first packet)."""

    def __init__(self, src: Path, out: av.container.OutputContainer, start: float, end: float, offset: float) -> None:
        self.inp = _open_input(src)
        self.src, self.start, self.end, self.offset = src, start, end, offset
        streams = [s for s in self.inp.streams.audio]
        self.stream = streams[0] if streams else None
        self.target = None
        self._frames: Iterator[av.AudioFrame] = iter(())
        self._next: av.AudioFrame | None = None
        if self.stream is None or self.stream.codec_context is None:
            self.stream = None
            return
        ctx = self.stream.codec_context
        self.rate = ctx.sample_rate
        layout = ctx.layout.name
        if "channels" in layout:
            layout = _DEFAULT_LAYOUTS.get(ctx.channels, "stereo")
        self.layout = layout
        self.target = out.add_stream("aac", rate=self.rate, layout=layout)
        self.target.bit_rate = 96_000 * max(1, ctx.channels)
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=self.rate)
        tb = Fraction(self.stream.time_base)
        # Half a second early: the decoder needs a frame or two before its output is clean.
        self.inp.seek(max(0, int((start - 0.5) / tb)), stream=self.stream, backward=True)
        self._frames = self._trimmed()

    def _trimmed(self) -> Iterator[av.AudioFrame]:
        assert self.stream is not None
        written = None  # output sample position of the next sample
        for packet in _demux(self.inp, [self.stream], self.src):
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as e:
                log.debug("%s: skipped a damaged audio packet: %s", self.src, e)
                continue
            for frame in decoded:
                if frame.pts is None:
                    continue
                t0 = float(frame.pts * frame.time_base)
                for part in self.resampler.resample(frame):
                    samples = part.to_ndarray()  # (channels, n) float32
                    n = samples.shape[1]
                    times = t0 + np.arange(n) / self.rate
                    keep = (times >= self.start) & (times < self.end)
                    t0 += n / self.rate
                    if not keep.any():
                        if times[0] >= self.end:
                            return
                        continue
                    chunk = np.ascontiguousarray(samples[:, keep])
                    out = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self.layout)
                    out.sample_rate = self.rate
                    if written is None:
                        written = max(0, round((float(times[keep][0]) - self.offset) * self.rate))
                    out.pts = written
                    out.time_base = Fraction(1, self.rate)
                    written += chunk.shape[1]
                    yield out

    def pump(self, out: av.container.OutputContainer, until: float | None) -> None:
        """Encode and mux the audio up to output time ``until`` (all of it when ``None``)."""
        if self.target is None:
            return
        while True:
            if self._next is None:
                self._next = next(self._frames, None)
                if self._next is None:
                    return
            if until is not None and float(self._next.pts / self.rate) > until:
                return
            out.mux(self.target.encode(self._next))
            self._next = None

    def close(self, out: av.container.OutputContainer | None) -> None:
        try:
            if out is not None and self.target is not None:
                self.pump(out, None)
                out.mux(self.target.encode(None))
        finally:
            self.inp.close()


class ClipWriter:
    """Write a new video file from pictures, whole or not at all.

    Used as a context manager: the file is written to a hidden temporary file beside
    ``dst`` and renamed onto it when the block ends without an error, after its video
    frame count is checked; on an error (or Ctrl-C) the temporary file is removed.

    Args:
        dst: ``.mp4``, ``.mov`` or ``.mkv``.
        size: ``(width, height)`` of the pictures; H.264 and ProRes need even sides.
        time_base: of the ``pts`` given to :meth:`write`.
        rate: nominal frame rate (for the container's header; the pts decide timing).
        codec: the encoder (:meth:`ClipCodec.x264`, :data:`MATTE_CODECS`).
        audio: ``(src, start, end, offset)``: add ``src``'s first audio track between
            ``start`` and ``end`` s, moved ``offset`` s earlier (``offset`` = the source time
            of output time 0). ``None``: no audio.
        src: the input, which ``dst`` must not be.
        overwrite: replace an existing ``dst``.

    Raises:
        OutputError: ``dst`` is unusable (see :func:`check_output`), before anything is written.
        ProcessingError: encoding failed or the file failed its check.
    """

    def __init__(
        self,
        dst: str | os.PathLike,
        *,
        size: tuple[int, int],
        time_base: Fraction,
        rate: Fraction,
        codec: ClipCodec,
        audio: tuple[str | os.PathLike, float, float, float] | None = None,
        src: str | os.PathLike | None = None,
        overwrite: bool = False,
    ) -> None:
        self.dst = Path(dst)
        self.fmt = _check_output(Path(src) if src is not None else Path("/nonexistent"), self.dst, overwrite)
        cleanup_stale_temps(self.dst)
        self.tmp = _temp_path(self.dst)
        self.size, self.time_base, self.codec = size, Fraction(time_base), codec
        self.frames = 0
        self.last_pts: int | None = None
        options = {"movflags": "+faststart"} if self.fmt in ("mp4", "mov") else {}
        options.update(_EXTRA_MUX_OPTIONS.get(self.fmt, {}))
        # bitexact: no random Matroska UIDs and no library version tag, so the same
        # pictures give the same bytes (see EncodeSettings.threads).
        options["fflags"] = "+bitexact"
        try:
            self.out = av.open(str(self.tmp), "w", format=self.fmt, container_options=options)
        except av.error.FFmpegError as e:
            raise OutputError(f"{self.tmp.parent}: cannot create the output file: {e}") from e
        try:
            self.stream = self.out.add_stream(codec.codec, rate=rate)
            self.stream.width, self.stream.height = size
            self.stream.pix_fmt = codec.pix_fmt
            self.stream.time_base = self.time_base
            ctx = self.stream.codec_context
            ctx.time_base = self.time_base
            ctx.thread_type = "FRAME"
            ctx.thread_count = codec.threads
            ctx.color_range = 1
            self.stream.options = dict(codec.options)
            self.audio = None
            if audio is not None:
                a_src, a_start, a_end, a_offset = audio
                self.audio = _AudioRange(Path(a_src), self.out, a_start, a_end, a_offset)
        except BaseException:
            self.out.close()
            _remove_quietly(self.tmp)
            raise

    def write(self, image: np.ndarray, pts: int) -> None:
        """Encode one picture: ``(H, W, 3) uint8`` BGR or ``(H, W) uint8`` grey, at ``pts`` (``time_base`` units)."""
        if image.shape[:2] != (self.size[1], self.size[0]):
            raise ProcessingError(f"{self.dst}: picture of {image.shape[1]}x{image.shape[0]} for a {self.size[0]}x{self.size[1]} clip")
        if self.last_pts is not None and pts <= self.last_pts:
            pts = self.last_pts + 1
        self.last_pts = pts
        if image.ndim == 2:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="gray")
            frame.color_range = 2  # grey pictures are full range: 255 is white
            frame = frame.reformat(format=self.codec.pix_fmt, dst_color_range=1, interpolation=_ACCURATE_TO_YUV)
        else:
            frame = _bgr_to_yuv(np.ascontiguousarray(image), 0) if self.codec.pix_fmt == "yuv420p" else (
                av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24").reformat(
                    format=self.codec.pix_fmt, interpolation=_ACCURATE_TO_YUV))
        frame.pts = pts
        frame.time_base = self.time_base
        self.out.mux(self.stream.encode(frame))
        self.frames += 1
        if self.audio is not None:
            self.audio.pump(self.out, float(pts * self.time_base))

    def __enter__(self) -> ClipWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        try:
            if kind is None:
                try:
                    self.out.mux(self.stream.encode(None))
                    if self.audio is not None:
                        self.audio.close(self.out)
                        self.audio = None
                    self.out.close()
                    count = _count_video_packets(self.tmp)
                    if count != self.frames:
                        raise ProcessingError(f"{self.dst}: holds {count} frames instead of {self.frames}")
                    os.replace(self.tmp, self.dst)
                except (OSError, av.error.FFmpegError) as e:
                    if getattr(e, "errno", None) == errno.ENOSPC:
                        raise ProcessingError(f"{self.dst.parent}: no space left on the disk: free some space") from e
                    raise ProcessingError(f"{self.dst}: encoding failed: {e}") from e
        finally:
            if self.audio is not None:
                self.audio.close(None)
            try:
                self.out.close()
            except Exception:  # already closed, or failing: the first error counts
                pass
            _remove_quietly(self.tmp)


def copy_video_range(info: VideoInfo, dst: str | os.PathLike, start: float, end: float) -> None:
    """Copy the video packets from the keyframe before ``start`` to ``end`` s into ``dst`` (``.mkv``).

    No re-encoding: the copy decodes to the very pictures of the source (from that
    keyframe on), with the source's timestamps, so it can be analysed in its place.
    """
    src = Path(info.path)
    inp = _open_input(src)
    try:
        stream = _video_stream(inp)
        if stream is None:
            raise MediaError(f"{src}: has no video stream")
        tb = Fraction(stream.time_base)
        with av.open(str(dst), "w", format="matroska", container_options={"avoid_negative_ts": "disabled"}) as out:
            target = out.add_stream_from_template(stream)
            inp.seek(max(0, int(start / tb)), stream=stream, backward=True)
            for packet in _demux(inp, [stream], src):
                if packet.size == 0:
                    continue
                if packet.dts is not None and packet.dts * tb > end + 1.0:
                    break  # a second past the end: every frame shown before ``end`` is in
                packet.stream = target
                out.mux(packet)
    finally:
        inp.close()
