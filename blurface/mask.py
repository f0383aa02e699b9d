"""Mask shapes and effects, applied in place to BGR frames.

Each effect is a small configured object with ``apply(image, boxes)``, after
supervision's ``BlurAnnotator`` and ``PixelateAnnotator``. Effects change
``image`` in place and return it.
"""

from __future__ import annotations

from typing import Literal, Protocol

import cv2
import numpy as np

Shape = Literal["ellipse", "box"]

# Detector boxes run from the brows to the lips. Growing each side by 40% of the box size
# covers forehead, hair line, ears and chin, and keeps the box corners inside the ellipse
# (an ellipse reaches the corners of its box's inner rectangle once each side grows by
# more than (sqrt(2) - 1) / 2 = 21%).
DEFAULT_PAD = 0.4


def padded_boxes(boxes: np.ndarray, pad: float) -> np.ndarray:
    """Grow ``(N, 4)`` xyxy boxes by ``pad`` times their width/height on every side.

    The extra is taken more towards the top (hair) than the bottom (chin). Returns
    float32 boxes, not clipped to the frame (clipping happens per region).
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    out = boxes.copy()
    out[:, 0] -= pad * w
    out[:, 2] += pad * w
    out[:, 1] -= pad * h * 1.25
    out[:, 3] += pad * h * 0.85
    return out


def _shrink(region: np.ndarray, cells: int) -> np.ndarray:
    """``region`` averaged down to ``cells`` samples across (keeping its aspect): the lossy step."""
    h, w = region.shape[:2]
    return cv2.resize(region, (cells, max(2, round(cells * h / max(w, 1)))), interpolation=cv2.INTER_AREA)


class Effect(Protocol):
    """Something that hides the pixels of a region. ``region`` is a BGR view, changed in place."""

    def hide(self, region: np.ndarray) -> np.ndarray: ...


class Blur:
    """Heavy blur whose strength follows the face size.

    The region is first shrunk to ``cells`` samples across, which throws the detail
    away for good (a deblurring filter cannot bring back what the shrink discarded),
    then smoothed back up so it reads as a blur rather than blocks.

    Args:
        cells: samples kept across the face; lower hides more.
    """

    def __init__(self, *, cells: int = 6) -> None:
        if cells < 2:
            raise ValueError(f"Blur cells must be >= 2, got {cells}")
        self.cells = cells

    def hide(self, region: np.ndarray) -> np.ndarray:
        h, w = region.shape[:2]
        small = _shrink(region, self.cells)
        # Smoothing at a tenth of the size costs ~0.1 ms where a full-size Gaussian
        # with a face-sized kernel cost ~8 ms per 300 px face.
        mid_w, mid_h = max(4, w // 10), max(4, h // 10)
        mid = cv2.GaussianBlur(cv2.resize(small, (mid_w, mid_h), interpolation=cv2.INTER_CUBIC), (5, 5), 0)
        return cv2.resize(mid, (w, h), interpolation=cv2.INTER_LINEAR)


class Pixelate:
    """Blocks: the region becomes ``cells`` squares across. Lower hides more."""

    def __init__(self, *, cells: int = 8) -> None:
        if cells < 2:
            raise ValueError(f"Pixelate cells must be >= 2, got {cells}")
        self.cells = cells

    def hide(self, region: np.ndarray) -> np.ndarray:
        h, w = region.shape[:2]
        return cv2.resize(_shrink(region, self.cells), (w, h), interpolation=cv2.INTER_NEAREST)


class Solid:
    """A flat colour (BGR), the only effect that keeps nothing of the face at all."""

    def __init__(self, *, color: tuple[int, int, int] = (0, 0, 0)) -> None:
        self.color = tuple(int(c) for c in color)

    def hide(self, region: np.ndarray) -> np.ndarray:
        out = np.empty_like(region)
        out[:] = self.color
        return out


EFFECTS: dict[str, type] = {"blur": Blur, "pixelate": Pixelate, "solid": Solid}


class Masker:
    """Hides faces: pads each box, cuts out the region and applies ``effect`` in its shape.

    Args:
        effect: a :class:`Blur`, :class:`Pixelate` or :class:`Solid` (anything with ``hide``).
        shape: ``ellipse`` (follows the head) or ``box`` (covers more).
        pad: growth of each box side as a fraction of its size; higher covers more hair and chin.
    """

    def __init__(self, effect: Effect, *, shape: Shape = "ellipse", pad: float = DEFAULT_PAD) -> None:
        if shape not in ("ellipse", "box"):
            raise ValueError(f"unknown mask shape {shape!r}: use 'ellipse' or 'box'")
        if not 0 <= pad <= 3:
            raise ValueError(f"pad {pad} is out of range: use a value from 0 to 3")
        self.effect = effect
        self.shape = shape
        self.pad = float(pad)

    def regions(self, boxes: np.ndarray) -> np.ndarray:
        """``(N, 4)`` float32 xyxy regions :meth:`apply` may change for ``boxes`` (unclipped)."""
        return padded_boxes(boxes, self.pad)

    def apply(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        """Mask every box of ``(N, 4)`` xyxy ``boxes`` in the ``(H, W, 3) uint8`` BGR ``image``, in place."""
        height, width = image.shape[:2]
        for x1, y1, x2, y2 in padded_boxes(boxes, self.pad):
            ix1, iy1 = max(0, int(np.floor(x1))), max(0, int(np.floor(y1)))
            ix2, iy2 = min(width, int(np.ceil(x2))), min(height, int(np.ceil(y2)))
            if ix2 - ix1 < 1 or iy2 - iy1 < 1:
                continue
            region = image[iy1:iy2, ix1:ix2]
            hidden = self.effect.hide(region)
            if self.shape == "box":
                region[:] = hidden
                continue
            # The ellipse is drawn in the unclipped box's coordinates, so a face half out of
            # frame keeps its true curve instead of a squeezed one.
            inside = np.zeros(region.shape[:2], np.uint8)
            center = ((x1 + x2) / 2 - ix1, (y1 + y2) / 2 - iy1)
            axes = ((x2 - x1) / 2, (y2 - y1) / 2)
            cv2.ellipse(inside, (center, (axes[0] * 2, axes[1] * 2), 0), 255, -1)
            cv2.copyTo(hidden, inside, region)
        return image
