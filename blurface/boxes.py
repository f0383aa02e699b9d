"""Box maths shared by every stage: IoU, clipping, non-maximum suppression, crops.

Boxes are float32 pixel ``[x1, y1, x2, y2]`` (see :mod:`blurface.types`). This is the
one place these are written, so the detector, the tracker, the gallery and the
schedule agree on what "overlapping" means.
"""

from __future__ import annotations

import math

import numpy as np


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` ``(n, 4)`` against every box in ``b`` ``(m, 4)``; ``(n, m)`` float64."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix1 = np.maximum(a[:, None, 0], b[None, :, 0])
    iy1 = np.maximum(a[:, None, 1], b[None, :, 1])
    ix2 = np.minimum(a[:, None, 2], b[None, :, 2])
    iy2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(ix2 - ix1, 0, None) * np.clip(iy2 - iy1, 0, None)
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def overlap_of_smaller(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over the smaller box's area, ``(n, m)`` float64: 1 when one box holds the other."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ix = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    iy = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    smaller = np.minimum(area(a)[:, None], area(b)[None, :])
    return np.where(smaller > 0, ix * iy / np.where(smaller > 0, smaller, 1.0), 0.0)


def area(xyxy: np.ndarray) -> np.ndarray:
    """``(n,)`` float64 areas of ``(n, 4)`` boxes; 0 for empty or inverted boxes."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    return np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)


def side(xyxy: np.ndarray) -> np.ndarray:
    """Geometric-mean side ``sqrt(w * h)`` of ``(n, 4)`` boxes; ``(n,)`` float64, at least 1 px."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    w = np.clip(b[:, 2] - b[:, 0], 1.0, None)
    h = np.clip(b[:, 3] - b[:, 1], 1.0, None)
    return np.sqrt(w * h)


def clip(xyxy: np.ndarray, width: int, height: int) -> np.ndarray:
    """Boxes clipped to a ``width`` x ``height`` frame: a new ``(n, 4)`` float32 array."""
    out = np.array(xyxy, np.float32, copy=True).reshape(-1, 4)
    out[:, [0, 2]] = out[:, [0, 2]].clip(0, width)
    out[:, [1, 3]] = out[:, [1, 3]].clip(0, height)
    return out


def nms(xyxy: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Indices of the boxes kept by greedy non-maximum suppression, best score first.

    Ties are broken by index (a stable sort), so the same input always keeps the same boxes.
    """
    boxes = np.asarray(xyxy, np.float64).reshape(-1, 4)
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    keep: list[int] = []
    while len(order):
        i = int(order[0])
        keep.append(i)
        if len(order) == 1:
            break
        ious = iou_matrix(boxes[i : i + 1], boxes[order[1:]])[0]
        order = order[1:][ious < iou_threshold]
    return np.asarray(keep, np.int64)


def window(box: np.ndarray, context: float, width: int, height: int) -> tuple[int, int, int, int]:
    """Integer region around ``box``: its centre, ``context`` times its larger side, inside the frame.

    Square where the frame allows, so a detector sees the face with the same margin on
    every side. Returns ``(x1, y1, x2, y2)`` with ``x2 > x1`` and ``y2 > y1``.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    half = max(x2 - x1, y2 - y1, 2.0) * context / 2
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    # A box predicted (partly) outside the frame still gives a region inside it.
    wx1 = min(max(0, int(math.floor(cx - half))), width - 1)
    wy1 = min(max(0, int(math.floor(cy - half))), height - 1)
    wx2, wy2 = min(width, int(math.ceil(cx + half))), min(height, int(math.ceil(cy + half)))
    return wx1, wy1, max(wx1 + 1, wx2), max(wy1 + 1, wy2)


def halfway_boxes(current: np.ndarray, following: np.ndarray) -> np.ndarray:
    """For each ``(N, 4)`` xyxy box of ``current``, the box halfway to the nearest box (by
    centre) of ``following``: where a face is at the second field of an interlaced frame.

    A box with no box in ``following`` within twice its own size is returned unchanged (the
    face left, or a cut): halfway to an unrelated face would mask the wrong place.
    """
    current = np.asarray(current, np.float32).reshape(-1, 4)
    following = np.asarray(following, np.float32).reshape(-1, 4)
    if len(current) == 0 or len(following) == 0:
        return current.copy()
    centres_a = (current[:, :2] + current[:, 2:]) / 2
    centres_b = (following[:, :2] + following[:, 2:]) / 2
    distance = np.linalg.norm(centres_a[:, None, :] - centres_b[None, :, :], axis=2)
    nearest = distance.argmin(axis=1)
    size = np.maximum(current[:, 2] - current[:, 0], current[:, 3] - current[:, 1])
    near = distance[np.arange(len(current)), nearest] <= 2 * size
    out = current.copy()
    out[near] = (current[near] + following[nearest[near]]) / 2
    return out


# A detector box of a whole face is about 0.77 as wide as tall (CenterFace: 5th-95th
# percentile 0.59-1.02 on the shared clip, 0.71-0.80 on the synthetic one). Far narrower
# or wider boxes are faces cut by an occluder or a frame edge, where the detector boxes
# only the part it sees; the rest of the face comes into view before it finds it whole.
_FACE_ASPECT = 0.77
_NARROW, _WIDE = 0.6, 1.35


def whole_face_boxes(boxes: np.ndarray) -> np.ndarray:
    """Widen (or heighten) ``(N, 4)`` xyxy boxes far from a face's proportions, about their centre.

    Applied to detections, before tracking: a track's extension sweeps a box along its
    path, and such a swept box must not be reshaped. Measured on the held-out occluder case: a face coming out from behind a wall was
    boxed 27 px wide and 82 tall (its visible sliver) while 40 px more of it showed:
    2 leaked frames. Widening it to a face's proportions covers it.
    """
    out = np.asarray(boxes, np.float32).reshape(-1, 4).copy()
    w = out[:, 2] - out[:, 0]
    h = out[:, 3] - out[:, 1]
    narrow = w < _NARROW * h
    grow_w = np.where(narrow, (_FACE_ASPECT * h - w) / 2, 0.0)
    wide = w > _WIDE * h
    grow_h = np.where(wide, (w / _FACE_ASPECT - h) / 2, 0.0)
    out[:, 0] -= grow_w
    out[:, 2] += grow_w
    out[:, 1] -= grow_h
    out[:, 3] += grow_h
    return out
