"""Where to look for faces on each frame: the whole frame, or around the faces already followed.

A whole-frame pass at the scale the smallest wanted face needs is the expensive part
of the analysis (1280x720: about 80 ms on 2 cores). It runs every ``full_every``
frames, on the first frame and after each cut. Between passes, each followed face is
looked for in a small region around where it should be, seen at a size where the
face is large (a 128 px square: about 3 ms). A face that appears between two passes
is found by the next one, and then followed *backwards* through the frames kept in a
bounded buffer, so it is masked from the frame it appeared on.

Two tiers of whole-frame passes: most are at a *coarse* scale (half the fine one, a
quarter of its pixels) that finds faces of twice the smallest wanted size; every
``fine_every``-th one is at the fine scale, for the smallest faces. A coarse pass also
searches the regions of the followed faces, so a small face already followed is looked
for as on any other frame. A small face that appears is found by the next fine pass and
followed backwards like any other new face (the buffer covers the longer interval).

Everything here is a pure function of the frame index, the cuts and the tracker's
boxes, never of timing: the same video and settings give the same schedule, so the
same plan.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from . import boxes
from .types import Faces

if TYPE_CHECKING:
    from .detectors import Detector


@dataclass(frozen=True)
class Step:
    """What to run on one frame.

    Attributes:
        full: run the detector on the whole frame.
        regions: ``(x1, y1, x2, y2)`` integer regions to look in (with ``full``: only
            with ``coarse``, the regions of the followed faces).
        coarse: the whole-frame pass is at the coarse scale (faces of twice the smallest
            size and more); regions, if any, are searched too.
    """

    full: bool
    regions: list[tuple[int, int, int, int]] = field(default_factory=list)
    coarse: bool = False

    @property
    def runs(self) -> bool:
        return self.full or bool(self.regions)


class DetectionSchedule:
    """Chooses a :class:`Step` per frame.

    Args:
        width, height: frame size (display orientation).
        full_every: frames between whole-frame passes. Lower finds a newly appearing
            face sooner (fewer frames to recover by following it backwards) at about
            ``80 ms / full_every`` per frame at 720p.
        follow_every: frames between region passes on followed faces; the frames in
            between are interpolated. 1 follows every frame (tightest masks).
        context: region side as a multiple of the face's larger side. Larger keeps
            fast faces inside the region; smaller shows the detector a bigger face.
        region_px: side, in detector pixels, each region is seen at.
        full_pixels: detector pixels of one (fine) whole-frame pass. When the regions of
            a frame would cost more than half of that (a crowd), the whole frame is
            searched instead, which also finds new faces.
        fine_every: every this many whole-frame passes, one is at the fine scale; the
            others are coarse. 1: every pass is fine.
    """

    def __init__(
        self,
        width: int,
        height: int,
        *,
        full_every: int,
        follow_every: int = 1,
        context: float = 2.5,
        region_px: int = 128,
        full_pixels: float,
        fine_every: int = 1,
    ) -> None:
        if full_every < 1:
            raise ValueError(f"full_every must be >= 1 frame, got {full_every!r}")
        if follow_every < 1:
            raise ValueError(f"follow_every must be >= 1 frame, got {follow_every!r}")
        if fine_every < 1:
            raise ValueError(f"fine_every must be >= 1 pass, got {fine_every!r}")
        self.width, self.height = int(width), int(height)
        self.full_every = int(full_every)
        self.follow_every = int(follow_every)
        self.context = float(context)
        self.region_px = int(region_px)
        self.full_pixels = float(full_pixels)
        self.fine_every = int(fine_every)
        self._last_full = -(10**9)
        self._last_fine = -(10**9)
        self._last_follow = -(10**9)

    def step(self, index: int, *, cut: bool, predicted: np.ndarray) -> Step:
        """The step for frame ``index``.

        Args:
            index: frame index, increasing across calls.
            cut: a shot starts on this frame.
            predicted: ``(n, 4)`` boxes where the live tracks should be on this frame.
                Every one is looked for every ``follow_every`` frames, a track missed at
                its last look too: looking for it on every frame instead cost, while one
                face hid another, an embedding of the face in front on every frame (720p
                speed clip: 77 -> 54 embeddings, 20.6 -> 17.6 s, the same accuracy on the
                shared clip and on held-out and tuning cases).
        """
        predicted = np.asarray(predicted, np.float32).reshape(-1, 4)
        whole = cut or index - self._last_full >= self.full_every
        if whole and (cut or index - self._last_fine >= self.full_every * self.fine_every):
            return self._full(index)
        if not whole and index - self._last_follow < self.follow_every:
            return Step(full=False)
        # A face predicted to have left the frame is not looked for (its track expires).
        p = predicted
        chosen = p[(p[:, 2] > 0) & (p[:, 0] < self.width) & (p[:, 3] > 0) & (p[:, 1] < self.height)]
        regions = [boxes.window(b, self.context, self.width, self.height) for b in chosen]
        if len(regions) * self.region_px**2 > 0.5 * self.full_pixels:
            return self._full(index)
        if whole:
            self._last_full = self._last_follow = index
            return Step(full=True, regions=regions, coarse=True)
        if not regions:
            return Step(full=False)
        self._last_follow = index
        return Step(full=False, regions=regions)

    def _full(self, index: int) -> Step:
        self._last_full = self._last_follow = self._last_fine = index
        return Step(full=True)


def continues(box: np.ndarray, found: np.ndarray) -> int | None:
    """Row of ``found`` ``(m, 4)`` that continues ``box`` on the next or previous frame, or ``None``.

    The tracker's own gate: the boxes overlap (IoU 0.15), or the centre is within one
    face size and the size within a factor of two (a small fast face); the cheapest by
    ``(1 - IoU) + centre distance / size`` wins.
    """
    found = np.asarray(found, np.float32).reshape(-1, 4)
    if len(found) == 0:
        return None
    box = np.asarray(box, np.float32).reshape(4)
    iou = boxes.iou_matrix(box[None], found)[0]
    size = boxes.side(box[None])[0]
    centre = (box[:2] + box[2:]) / 2
    dist = np.linalg.norm((found[:, :2] + found[:, 2:]) / 2 - centre, axis=1) / size
    sizes = boxes.side(found) / size
    ok = (iou >= 0.15) | ((dist <= 1.0) & (sizes <= 2.0) & (sizes >= 0.5))
    if not ok.any():
        return None
    return int(np.argmin(np.where(ok, (1.0 - iou) + dist, np.inf)))


def follow_back(
    detector: Detector,
    frames: Sequence[tuple[int, np.ndarray]],
    born: np.ndarray,
    *,
    context: float,
    region_px: int,
    max_misses: int = 2,
    known: Callable[[int, np.ndarray], bool] | None = None,
) -> list[list[tuple[int, Faces]]]:
    """Follow faces found on a frame back through the frames before it, while the detector finds them.

    A face found by a whole-frame pass was often there several frames earlier (it
    appeared between two passes, or was too small, dim or turned for the last one).
    Each is looked for in a region around where it was last found, frame by frame.

    Args:
        detector: searches the regions (its ``detect_regions``).
        frames: ``(index, (H, W, 3) uint8 BGR image)`` of the frames before, newest first,
            all of the same shot.
        born: ``(n, 4)`` boxes of the faces to follow, on the frame after ``frames[0]``.
        context, region_px: region side as a multiple of the face's side, and the size
            it is seen at (see :class:`DetectionSchedule`).
        max_misses: a face not found on this many frames in a row is no longer followed.
        known: ``known(index, box)``: the face at ``box`` was already found on frame
            ``index`` (by the caller's own passes); it is not followed further back.

    Returns:
        For each row of ``born``: ``(index, one-row Faces)`` for each frame it was found
        on, newest first. Deterministic: rows are matched in order, a found face to one row.
    """
    active = {k: (np.asarray(b, np.float32).copy(), 0) for k, b in enumerate(np.asarray(born).reshape(-1, 4))}
    found: list[list[tuple[int, Faces]]] = [[] for _ in active]
    for index, image in frames:
        if known is not None:
            for k in [k for k, (box, _) in active.items() if known(index, box)]:
                del active[k]
        if not active:
            break
        order = sorted(active)
        h, w = image.shape[:2]
        regions = [boxes.window(active[k][0], context, w, h) for k in order]
        seen = detector.detect_regions(image, regions, size=region_px)
        taken: set[int] = set()
        for k in order:
            box, misses = active[k]
            free = [r for r in range(len(seen)) if r not in taken]
            pick = continues(box, seen.xyxy[free])
            if pick is not None:
                row = free[pick]
                taken.add(row)
                found[k].append((index, seen[row]))
                active[k] = (seen.xyxy[row].copy(), 0)
            elif misses + 1 >= max_misses:
                del active[k]
            else:
                active[k] = (box, misses + 1)
    return found
