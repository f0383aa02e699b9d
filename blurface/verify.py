"""Re-check a finished video for the target, independently of how it was made.

``verify`` shares no tracking or sampling with the analysis pass on purpose: it
looks at every frame, with a more sensitive HOG setting, the CNN detector on
sampled frames, and an embedding for every face it finds. It is slower than
blurface itself, and is meant to be run once before publishing.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from . import media
from .faces import FaceEngine
from .files import write_atomically
from .gallery import Gallery
from .plan import DEFAULT_UNSURE_MARGIN
from .types import Faces, InputError

log = logging.getLogger(__name__)

# HOG score threshold of verify's detector: lower than analysis (-0.2) finds more faces.
# Chosen on the hamilton clip (Lin's turned face, frames 116-119; see _detect below).
SENSITIVE_HOG_THRESHOLD = -0.5


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


def _sensitive_hog(engine: FaceEngine, image: np.ndarray) -> Faces:
    # Finds faces down to ~25 px on small videos and ~1/14 of the height on large ones.
    # The threshold is passed on every call, not taken from the engine: the caller's
    # engine (the CLI's, the analysis pass's) may be tuned for fewer false positives,
    # and verify must stay more sensitive than the pass it checks. At -0.2 HOG misses
    # Lin's turned face in hamilton frames 116-119, which -0.5 finds (distance 0.57-0.59).
    rgb = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    upsample = 1 if image.shape[0] <= 540 else 0
    return engine.detect_array(rgb, upsample=upsample, threshold=SENSITIVE_HOG_THRESHOLD)


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
    tolerance: float = 0.6,
    cnn_every: int = 10,
    threads: int = 2,
    progress: Callable[[str, int], None] | None = None,
) -> VerifyReport:
    """Report every frame of ``video`` where a face is within ``tolerance`` of a gallery person.

    Faces a little further (within the analysis' unsure margin) are listed apart as
    ``near``: they do not fail the check, but a person should look at them.

    Args:
        cnn_every: run the CNN detector on every n-th frame too (0 = never); it finds
            turned and dim faces HOG misses, at about 1.4 s per 360p frame.

    Raises:
        MediaError: the video cannot be read completely.
    """
    if len(gallery) == 0:
        raise InputError("verify needs at least one target photo")
    engine = engine or FaceEngine(threshold=SENSITIVE_HOG_THRESHOLD, load_cnn=cnn_every > 0)
    info = media.probe(video)
    report = VerifyReport(video=str(video), frames=0, faces_checked=0, tolerance=tolerance)
    cnn_scale = min(1.0, 640 / max(info.width, info.height))

    def examine(index: int, time: float, image: np.ndarray) -> tuple[list[VerifyHit], int]:
        found = [(_sensitive_hog(engine, image), "hog")]
        if cnn_every > 0 and index % cnn_every == 0:
            small = image if cnn_scale == 1.0 else cv2.resize(image, None, fx=cnn_scale, fy=cnn_scale)
            cnn = engine.detect_cnn(small, upsample=0 if cnn_scale == 1.0 else 1)
            cnn.xyxy /= np.float32(cnn_scale)
            found.append((cnn, "cnn"))
        hits = []
        checked = 0
        for faces, detector in found:
            if len(faces) == 0:
                continue
            emb = engine.embed(image, faces.xyxy)
            checked += len(faces)
            dist = gallery.distances(emb)
            for row in range(len(faces)):
                j = int(np.argmin(dist[row]))
                if dist[row, j] <= tolerance + report.near_margin:
                    hits.append(
                        VerifyHit(index, round(time, 6), gallery.names[j], round(float(dist[row, j]), 4),
                                  [round(float(v), 1) for v in faces.xyxy[row]], detector)
                    )
        return hits, checked

    with ThreadPoolExecutor(max_workers=max(1, threads), thread_name_prefix="blurface-verify") as pool:
        pending = []
        for frame in media.iter_frames(info):
            pending.append(pool.submit(examine, frame.index, frame.time, frame.image))
            report.frames += 1
            while pending and (len(pending) > 2 * threads or pending[0].done()):
                _collect(report, pending.pop(0).result())
            if progress:
                progress("verify", 1)
        for future in pending:
            _collect(report, future.result())
    report.matches.sort(key=lambda h: (h.frame, h.distance))
    report.near.sort(key=lambda h: (h.frame, h.distance))
    log.info("verify %s: %d frames, %d faces, %d matches", video, report.frames, report.faces_checked, len(report.matches))
    return report
