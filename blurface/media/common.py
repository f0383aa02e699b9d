"""Pixels: plane views, swscale flags and the small conversions the decoder and encoders share."""

from __future__ import annotations

import functools

import av
import numpy as np

from .. import formats
from ..types import VideoInfo

# swscale flags for colour conversions whose result is encoded. The defaults pick
# fast special-case converters: BGR -> yuv420p returns flat grey 220 as (215, 218,
# 216) after a round trip; with ACCURATE_RND it comes back exact.
_Interp = av.video.reformatter.Interpolation


_ACCURATE_TO_YUV = int(_Interp.BILINEAR | _Interp.ACCURATE_RND)


_ACCURATE_TO_RGB = int(_Interp.BILINEAR | _Interp.ACCURATE_RND | _Interp.FULL_CHR_H_INT)


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


_COLOUR_PROPS = ("colorspace", "color_range", "color_primaries", "color_trc")


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


def _resized(frame: av.VideoFrame, size: tuple[int, int]) -> av.VideoFrame:
    resized = frame.reformat(width=size[0], height=size[1])
    resized.pts, resized.time_base, resized.duration = frame.pts, frame.time_base, frame.duration
    return resized

