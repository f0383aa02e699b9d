"""Encode in the input's own format: which format that is, and frames built in it.

:func:`source_format` and :func:`output_format` ask :func:`blurface.formats.choose`;
:class:`NativeFrames` draws the masks straight into the decoded planes, in their own
depth and chroma size.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import av
import av.error
import cv2
import numpy as np

from .. import formats
from ..types import DecodedFrame, OutputError, ProcessingError, VideoInfo
from .common import (
    ACCURATE_TO_RGB,
    ACCURATE_TO_YUV,
    changed_box,
    codec_name,
    first_frame,
    new_frame_like,
    pix_info,
    plane_samples,
    video_input,
)
from .outputs import OUTPUT_FORMATS, EncodeSettings


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
def encoder_formats(name: str) -> frozenset[str] | None:
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
    with video_input(p) as (container, stream):
        ctx = stream.codec_context
        first = first_frame(container, stream, p)
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
            codec=codec_name(stream),
            profile=ctx.profile,
            pix=pix_info(pix),
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


def output_format(info: VideoInfo, settings: EncodeSettings = EncodeSettings(), dst: str | os.PathLike | None = None) -> formats.OutputFormat:
    """What :func:`transcode` will write for ``info`` (to ``dst``'s container, if given).

    Raises:
        OutputError: the requested codec cannot be written (to that container).
    """
    fmt = OUTPUT_FORMATS.get(Path(dst).suffix.lower()) if dst is not None else None
    try:
        return formats.choose(source_format(info), settings.request(), encoder_formats, pix_info, fmt)
    except ValueError as e:
        raise OutputError(f"{dst or info.path}: {e}") from e


class NativeFrames:
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
    ) -> None:
        self.info, self.target, self.size = info, target, size
        self.masks, self.process = masks, process
        self.pix = pix_info(target.pix_fmt)
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
                planes = [plane_samples(p, self.depth) for p in work.planes[: len(self.shifts)]]
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
            pix = pix_info(frame.format.name)
            if pix.shift_w != pix.shift_h and rotation in (90, 270):
                frame = frame.reformat(format=re.sub(r"4\d\dp", "444p", frame.format.name))
            w, h = (frame.height, frame.width) if rotation in (90, 270) else (frame.width, frame.height)
            turned = new_frame_like(frame, w, h)
            depth = pix_info(frame.format.name).depth
            k = -rotation // 90  # np.rot90 turns counter-clockwise
            for src, dst in zip(frame.planes, turned.planes, strict=True):
                plane_samples(dst, depth)[...] = np.rot90(plane_samples(src, depth), k)
            frame = turned
        if frame.format.name != self.target.pix_fmt:
            converted = frame.reformat(
                format=self.target.pix_fmt, interpolation=ACCURATE_TO_YUV,
                src_color_range=frame.color_range or None, dst_color_range=self.target.color_range or None,
            )
            for name in ("colorspace", "color_primaries", "color_trc"):
                setattr(converted, name, getattr(frame, name))
            frame = converted
        if (frame.width, frame.height) != self.size:
            padded = new_frame_like(frame, *self.size)
            for src, dst in zip(frame.planes, padded.planes, strict=True):
                a, b = plane_samples(src, self.depth), plane_samples(dst, self.depth)
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
            work.to_ndarray(format="bgr24", interpolation=ACCURATE_TO_RGB)[:h, :w]
        )
        before = image.copy()
        result = self.process(DecodedFrame(index, time, image))
        after = _check_processed(result, image.shape, index)
        boxes = [b for b in [changed_box(before, after)] if b is not None]
        if not boxes:
            return work
        work = self._writable(work, decoded)
        planes = [plane_samples(p, self.depth) for p in work.planes[: len(self.shifts)]]
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
                format=self.target.pix_fmt, interpolation=ACCURATE_TO_YUV,
                dst_colorspace=self.target.colorspace or None, dst_color_range=self.target.color_range or None,
            )
            for plane, src, (sx, sy) in zip(planes, patch.planes, self.shifts, strict=False):
                plane[y0 >> sy : y1 >> sy, x0 >> sx : x1 >> sx] = plane_samples(src, self.depth)
        return work


def _check_processed(image: object, shape: tuple[int, ...], index: int) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.shape != shape:
        got = f"{image.dtype} array of shape {image.shape}" if isinstance(image, np.ndarray) else type(image).__name__
        raise ProcessingError(f"frame {index}: process() must return a uint8 array of shape {shape}, got {got}")
    return np.ascontiguousarray(image)

