"""The helpers the modules of :mod:`blurface.media` share. Internal to that package.

Names here are public so that the media modules (and the tests) import them without
reaching into each other's private names; nothing outside ``blurface/media`` except
the tests should use them, and :mod:`blurface.media` does not re-export them.

* Pixels: plane views, swscale flags and the small conversions the decoder and
  encoders share (:func:`pix_info`, :func:`plane_samples`, :data:`ACCURATE_TO_YUV`, ...).
* Reading: the one way an input is opened (:func:`open_input`, :func:`video_input`),
  its video stream found and its packets demuxed, with FFmpeg's errors turned into
  :class:`~blurface.types.MediaError`; the frame size limits (:data:`MAX_SIDE`).
* Writing: the hidden temporary file next to an output (:func:`temp_path`,
  :func:`remove_quietly`) and the muxer options every writer uses.
* Tags that describe the old encode and are never copied (:data:`STALE_TAGS`).
"""

from __future__ import annotations

import errno
import functools
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import av
import av.error
import numpy as np

from .. import formats
from ..types import MediaError, VideoInfo

log = logging.getLogger(__name__)

# swscale flags for colour conversions whose result is encoded. The defaults pick
# fast special-case converters: BGR -> yuv420p returns flat grey 220 as (215, 218,
# 216) after a round trip; with ACCURATE_RND it comes back exact.
_Interp = av.video.reformatter.Interpolation


ACCURATE_TO_YUV = int(_Interp.BILINEAR | _Interp.ACCURATE_RND)


ACCURATE_TO_RGB = int(_Interp.BILINEAR | _Interp.ACCURATE_RND | _Interp.FULL_CHR_H_INT)


def even_display_size(info: VideoInfo) -> tuple[int, int]:
    return info.width + (info.width & 1), info.height + (info.height & 1)


def plane_view(plane: av.video.plane.VideoPlane) -> np.ndarray:
    """Writable ``(height, width)`` uint8 view of one plane (row padding cut off)."""
    return np.frombuffer(plane, np.uint8).reshape(plane.height, plane.line_size)[:, : plane.width]


def changed_box(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int] | None:
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


def bgr_to_yuv(image: np.ndarray, colorspace: int) -> av.VideoFrame:
    """``(H, W, 3) uint8`` BGR (even sides) to a limited-range yuv420p frame using ``colorspace``'s matrix."""
    frame = av.VideoFrame.from_ndarray(image, format="bgr24")
    frame.colorspace = colorspace
    frame.color_range = 1
    return frame.reformat(format="yuv420p", interpolation=ACCURATE_TO_YUV)


@functools.lru_cache(maxsize=None)
def pix_info(name: str) -> formats.PixelFormat:
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


COLOUR_PROPS = ("colorspace", "color_range", "color_primaries", "color_trc")


def plane_samples(plane: av.video.plane.VideoPlane, depth: int) -> np.ndarray:
    """Writable ``(height, width)`` view of one plane: uint8, or uint16 above 8 bits (row padding cut off)."""
    if depth <= 8:
        return plane_view(plane)
    return np.frombuffer(plane, np.uint16).reshape(plane.height, plane.line_size // 2)[:, : plane.width]


def new_frame_like(frame: av.VideoFrame, width: int, height: int, fmt: str | None = None) -> av.VideoFrame:
    new = av.VideoFrame(width, height, fmt or frame.format.name)
    for name in COLOUR_PROPS:
        setattr(new, name, getattr(frame, name))
    return new


def resized_frame(frame: av.VideoFrame, size: tuple[int, int]) -> av.VideoFrame:
    resized = frame.reformat(width=size[0], height=size[1])
    resized.pts, resized.time_base, resized.duration = frame.pts, frame.time_base, frame.duration
    return resized


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


def limit_decoder(stream: av.VideoStream) -> None:
    """Make FFmpeg itself refuse frames over the limit, should a stream's pictures outgrow its header."""
    stream.codec_context.options = {**stream.codec_context.options, **_DECODER_LIMIT}


def check_readable(path: str | os.PathLike) -> Path:
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


def open_input(p: Path) -> av.container.InputContainer:
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


def is_still_image(container: av.container.InputContainer) -> bool:
    name = container.format.name
    return name in _IMAGE_DEMUXERS or name.endswith("_pipe")


def video_stream(container: av.container.InputContainer) -> av.VideoStream | None:
    """First real video stream: cover art (``attached_pic``) is a picture, not the video."""
    for stream in container.streams.video:
        if not stream.disposition & av.stream.Disposition.attached_pic:
            return stream
    return None


@contextmanager
def video_input(p: Path) -> Iterator[tuple[av.container.InputContainer, av.VideoStream]]:
    """``p`` opened, with its first real video stream; closed on leaving. The one place
    a reader refuses a file without video, for the decoders, previews and format probes."""
    container = open_input(p)
    try:
        stream = video_stream(container)
        if stream is None:
            raise MediaError(f"{p}: has no video stream")
        check_frame_size(stream.codec_context.width, stream.codec_context.height, p)
        limit_decoder(stream)
        yield container, stream
    finally:
        container.close()


def first_frame(container: av.container.InputContainer, stream: av.VideoStream, p: Path) -> av.VideoFrame:
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


def demux(container: av.container.InputContainer, streams: list[av.stream.Stream], p: Path) -> Iterator[av.Packet]:
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


def codec_name(stream: av.stream.Stream) -> str:
    try:
        return stream.codec.canonical_name
    except Exception:  # data/attachment streams may have no codec
        return stream.metadata.get("mimetype") or "unknown"


def count_video_packets(path: Path) -> int:
    with av.open(str(path), metadata_errors="replace") as container:
        stream = video_stream(container)
        if stream is None:
            return 0
        return sum(1 for packet in container.demux(stream) if packet.size)


# FFmpeg's default for Matroska shifts *every* stream so the first packet is at 0,
# e.g. by 21 ms for AAC priming (-1024 samples) remuxed from MP4: the video start
# moves. Matroska stores small negative block times fine, so keep them.
EXTRA_MUX_OPTIONS: dict[str, dict[str, str]] = {"matroska": {"avoid_negative_ts": "disabled"}}


def temp_path(dst: Path) -> Path:
    return dst.with_name(f".{dst.name}.blurface-tmp-{os.getpid()}{dst.suffix}")


def remove_quietly(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as e:
        log.warning("could not remove temporary file %s: %s", path, e)


# Tags that describe the old file and would be wrong on the new one.
STALE_TAGS = frozenset(
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
