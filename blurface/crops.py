"""The face crops a track keeps for deciding who it is: the best of each stretch of its life.

A track's identity comes from several crops spread over its whole life, so a turned or
blurred stretch cannot decide it alone and a switch to another face shows up as crops
that disagree (:mod:`blurface.identity`).
"""

from __future__ import annotations

import math

import numpy as np

class CropBuffer:
    """A live track's face crops spread over its whole life: the best crop of each stretch of it.

    The track's frames are cut into slots of ``min_separation`` frames; each slot keeps
    its best crop. When there would be more than ``size`` slots, each two neighbours
    are merged (the better crop kept) and the slots double in length. So a 300-frame
    track is judged from crops across all 300 frames, never from its best few in one
    place: a track that slid onto another face was once decided from 6 crops taken in
    its last 12 frames, all of the other face. Bounded: at most ``size`` crops, each a
    face plus margin, so memory does not grow with the track's length.
    """

    def __init__(self, size: int, min_separation: int = 3) -> None:
        self.size = max(1, size)
        self.slot = max(1, min_separation)
        # slot -> (quality, frame, crop, box in crop, landmarks in crop or NaN)
        self.items: dict[int, tuple[float, int, np.ndarray, np.ndarray, np.ndarray]] = {}

    @staticmethod
    def _better(a: tuple, b: tuple | None) -> bool:
        # Frame as tie-break: the same crops win whatever order they arrived in.
        return b is None or (a[0], -a[1]) > (b[0], -b[1])

    def wants(self, quality: float, frame: int) -> bool:
        return self._better((quality, frame), self.items.get(frame // self.slot))

    def add(self, quality: float, frame: int, crop: np.ndarray, box: np.ndarray, marks: np.ndarray) -> None:
        item = (quality, frame, crop, box, marks)
        if self._better(item, self.items.get(frame // self.slot)):
            self.items[frame // self.slot] = item
        while len(self.items) > self.size:
            self.slot *= 2
            merged: dict[int, tuple[float, int, np.ndarray, np.ndarray, np.ndarray]] = {}
            for it in self.items.values():
                if self._better(it, merged.get(it[1] // self.slot)):
                    merged[it[1] // self.slot] = it
            self.items = merged

    def in_order(self) -> list[tuple[float, int, np.ndarray, np.ndarray, np.ndarray]]:
        """The kept crops in frame order."""
        return sorted(self.items.values(), key=lambda it: it[1])

    @property
    def face_px(self) -> float:
        """Width of the largest face kept, in full-frame pixels (0 when none)."""
        return max((float(it[3][2] - it[3][0]) for it in self.items.values()), default=0.0)


def crop_face(image: np.ndarray, box: np.ndarray, marks: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Face plus half its size of margin (alignment looks outside the box), the box and landmarks in it.

    Landmarks are ``(5, 2)`` in the crop's pixels, NaN when the detector gave none.
    """
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = (x2 - x1) * 0.5, (y2 - y1) * 0.5
    cx1, cy1 = max(0, int(x1 - mx)), max(0, int(y1 - my))
    cx2, cy2 = min(w, int(math.ceil(x2 + mx))), min(h, int(math.ceil(y2 + my)))
    crop = np.ascontiguousarray(image[cy1:cy2, cx1:cx2])
    in_crop = (np.full((5, 2), np.nan, np.float32) if marks is None
               else (np.asarray(marks, np.float32).reshape(5, 2) - np.array([cx1, cy1], np.float32)))
    return crop, np.array([x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1], np.float32), in_crop


def frontal(landmarks: np.ndarray | None) -> float:
    """1 for a face looking at the camera, towards 0 as it turns (nose off the eyes' midline)."""
    if landmarks is None:
        return 1.0
    left, right, nose = landmarks[0], landmarks[1], landmarks[2]
    eyes = float(np.hypot(*(right - left)))
    if eyes < 1.0:
        return 0.0
    off = abs(float(nose[0] - (left[0] + right[0]) / 2)) / eyes
    return 1.0 / (1.0 + 4.0 * off)
