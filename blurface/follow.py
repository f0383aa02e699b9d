"""A face the detector missed, added by hand: follow the reviewer's box through its shot.

The box is followed forwards and backwards from the frame it was drawn on, within
its shot (scene cuts from the plan), by OpenCV's ``TrackerMIL``, a visual tracker
seeded by the box, not by the face detector (which did not find this face). MIL is
the one tracker in headless OpenCV 5 that needs no model file; CSRT and KCF need
``opencv-contrib``, a second OpenCV build that would replace this one.
"""

from __future__ import annotations

import logging
import os

import cv2
import numpy as np

from . import media
from .plan import Plan
from .types import SOURCE_DETECTED, SOURCE_INTERPOLATED, InputError, Track

log = logging.getLogger(__name__)

# Seconds followed on each side of the drawn frame. The frames behind it are held in
# memory to be tracked in reverse, so this bounds memory (at 640x360, 6 s at 30 fps is
# 120 MB); a face seen longer gets another box further on.
MAX_SECONDS = 6.0
# Tracking happens on frames at most this high: MIL's cost grows with pixels.
TRACK_HEIGHT = 360


def shot_of(plan: Plan, frame: int) -> tuple[int, int]:
    """First and last frame of the shot holding ``frame`` (the shots' cuts: :attr:`Plan.cuts`)."""
    cuts = [c for c in plan.cuts if 0 < c < plan.frame_count]
    bounds = [0, *cuts, plan.frame_count]
    k = int(np.searchsorted(bounds, frame, side="right")) - 1
    return bounds[k], bounds[k + 1] - 1


def _tracker(image: np.ndarray, box: np.ndarray) -> cv2.Tracker:
    x1, y1, x2, y2 = box
    tracker = cv2.TrackerMIL.create()
    tracker.init(image, (int(round(x1)), int(round(y1)), max(2, int(round(x2 - x1))), max(2, int(round(y2 - y1)))))
    return tracker


def _follow(tracker: cv2.Tracker, images: list[tuple[int, np.ndarray]], w: int, h: int) -> list[tuple[int, np.ndarray]]:
    out = []
    for index, image in images:
        ok, (x, y, bw, bh) = tracker.update(image)
        # MIL reports failure rarely; a box pushed half out of the picture is the face leaving.
        inside = max(0, min(x + bw, w) - max(x, 0)) * max(0, min(y + bh, h) - max(y, 0))
        if not ok or inside < 0.5 * bw * bh:
            break
        out.append((index, np.array([x, y, x + bw, y + bh], np.float32)))
    return out


def follow_box(
    plan: Plan,
    frame: int,
    box: list[float] | np.ndarray,
    *,
    src: str | os.PathLike | None = None,
    max_seconds: float = MAX_SECONDS,
) -> tuple[np.ndarray, np.ndarray]:
    """Follow ``box`` (xyxy, full-frame pixels, drawn on ``frame``) through its shot.

    Returns:
        ``(frames (n,) int64, boxes (n, 4) float32)``, ascending, ``frame`` included.

    Raises:
        InputError: ``frame`` outside the video, or a box smaller than 4 px or outside the picture.
    """
    if not 0 <= frame < plan.frame_count:
        raise InputError(f"frame {frame} is outside the video (0..{plan.frame_count - 1})")
    w, h = plan.video.width, plan.video.height
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, y1, x2, y2 = max(0.0, x1), max(0.0, y1), min(float(w), x2), min(float(h), y2)
    if x2 - x1 < 4 or y2 - y1 < 4:
        raise InputError(f"box {list(box)} is smaller than 4 px or outside the {w}x{h} picture: draw it around the face")
    lo, hi = shot_of(plan, frame)
    fps = float(plan.video.fps) if plan.video.fps else 30.0
    reach = max(1, round(max_seconds * fps))
    lo, hi = max(lo, frame - reach), min(hi, frame + reach)
    scale = min(1.0, TRACK_HEIGHT / h)
    sw, sh = max(2, round(w * scale)), max(2, round(h * scale))
    seed = np.array([x1, y1, x2, y2], np.float32) * scale
    info = media.probe(src if src is not None else plan.video.path)
    before: list[tuple[int, np.ndarray]] = []
    after: list[tuple[int, np.ndarray]] = []
    forward = None
    for decoded in media.iter_frames(info, start=float(plan.times[lo]), end=float(plan.times[hi]) + 1e-3,
                                     times=plan.times):
        i = decoded.index
        image = decoded.image if scale == 1.0 else cv2.resize(decoded.image, (sw, sh), interpolation=cv2.INTER_AREA)
        if i < frame:
            before.append((i, image))
        elif i == frame:
            seed_image = image
            forward = _tracker(image, seed)
        elif forward is not None:
            # Followed as frames arrive: only the frames before the seed are held.
            step = _follow(forward, [(i, image)], sw, sh)
            if not step:
                forward = None
            after += step
    if "seed_image" not in locals():
        raise InputError(f"frame {frame} could not be decoded")
    back = _follow(_tracker(seed_image, seed), list(reversed(before)), sw, sh)
    rows = [*reversed(back), (frame, seed), *after]
    frames = np.array([i for i, _ in rows], np.int64)
    boxes = np.stack([b for _, b in rows]).astype(np.float32) / scale
    log.info("hand box on frame %d followed over frames %d-%d (shot %d-%d)", frame, frames[0], frames[-1], lo, hi)
    return frames, boxes


def add_manual_track(plan: Plan, frame: int, box: list[float], *, reason: str = "",
                     src: str | os.PathLike | None = None) -> Track:
    """Follow a hand-drawn box (:func:`follow_box`) and add it to ``plan`` as a masked track, logged."""
    frames, boxes = follow_box(plan, frame, box, src=src)
    source = np.full(len(frames), SOURCE_INTERPOLATED, np.uint8)  # followed, not detected...
    source[frames == frame] = SOURCE_DETECTED  # ...but for the reviewer's own box
    why = "reviewer override: face added by hand, followed by a visual tracker" + (f" ({reason})" if reason else "")
    track = plan.add_track(frames, boxes, source, decision="manual", masked=True, reason=why)
    plan.log_review("add", track.id, reason, frame=frame, box=[round(float(v), 1) for v in box],
                    frames=[track.first, track.last])
    return track
