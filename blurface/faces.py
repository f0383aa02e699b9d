"""The engine that pairs a face detector with an embedder, and small helpers on face crops.

Detection lives in :mod:`blurface.detectors`, embedding in :mod:`blurface.embedders`;
:class:`FaceEngine` holds one of each, so the gallery, the analysis and ``verify``
share both (``people`` needs only an embedder). Models are loaded in constructors, never at import.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np

from . import detectors, embedders
from .detectors import Detector, make_detector
from .embedders import DEFAULT_EMBEDDER, Embedder, make_embedder
from .types import Faces

log = logging.getLogger(__name__)


def model_files() -> list[tuple[str, Path]]:
    """``(role, path)`` of every model file blurface may load: the audit report hashes each."""
    return detectors.model_files() + embedders.model_files()


class FaceEngine:
    """A detector and an embedder, loaded once and shared by the gallery, the analysis and ``verify``.

    Args:
        detector: default: :class:`~blurface.detectors.CenterFace` at its default threshold.
        embedder: default: a new :data:`~blurface.embedders.DEFAULT_EMBEDDER` (SFace).
    """

    def __init__(self, *, detector: Detector | None = None, embedder: Embedder | None = None) -> None:
        self.detector = detector if detector is not None else make_detector()
        self.embedder = embedder if embedder is not None else make_embedder(DEFAULT_EMBEDDER)

    def detect(self, image_bgr: np.ndarray, *, scale: float = 1.0) -> Faces:
        """Faces in a BGR frame, looked for at ``scale`` times its size; full-frame boxes."""
        return self.detector.detect(image_bgr, scale=scale)

    def embed(
        self, image_bgr: np.ndarray, xyxy: np.ndarray, *, landmarks: np.ndarray | None = None, jitters: int = 0
    ) -> np.ndarray:
        """See :meth:`blurface.embedders.Embedder.embed`."""
        return self.embedder.embed(image_bgr, xyxy, landmarks=landmarks, jitters=jitters)


def sharpness(image: np.ndarray, box: np.ndarray) -> float:
    """Variance of the Laplacian inside ``box`` of a BGR or grey image: higher is sharper. 0 when empty."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    x1, y1, x2, y2 = max(0, x1), max(0, y1), min(w, x2), min(h, y2)
    if x2 - x1 < 3 or y2 - y1 < 3:
        return 0.0
    region = image[y1:y2, x1:x2]
    gray = region if region.ndim == 2 else cv2.cvtColor(region, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_32F).var())
