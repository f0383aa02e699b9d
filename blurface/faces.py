"""Face embeddings on dlib with the face_recognition models, and the engine that pairs them with a detector.

Only this module touches dlib. Models are loaded in constructors, never at import
(face_recognition loads them at import and calls ``quit()`` when they are missing).
Detection lives in :mod:`blurface.detectors`; :class:`FaceEngine` holds one detector
and one :class:`Embedder`, so the gallery, the analysis and ``verify`` share both.
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path

import cv2
import dlib
import numpy as np

from .detectors import Detector, make_detector
from .types import EMBEDDING_DIM, Faces, ProcessingError

log = logging.getLogger(__name__)

_MODEL_FILES = {
    "landmarks5": "shape_predictor_5_face_landmarks.dat",
    "resnet": "dlib_face_recognition_resnet_model_v1.dat",
}


def models_dir() -> Path:
    """Folder holding the ``face_recognition_models`` ``.dat`` files.

    The package's ``__init__`` imports ``pkg_resources``, which newer setuptools
    lacks, so the folder is located without importing it.

    Raises:
        ProcessingError: the package is not installed.
    """
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ProcessingError(
            "the face_recognition_models package is not installed: run 'pip install face_recognition_models'"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def model_paths() -> dict[str, Path]:
    """dlib's model files, by file name."""
    return {name: models_dir() / name for name in _MODEL_FILES.values()}


def _model_path(key: str) -> str:
    path = models_dir() / _MODEL_FILES[key]
    if not path.is_file():
        raise ProcessingError(f"face model {path} is missing: reinstall face_recognition_models")
    return str(path)


def to_rgb(image_bgr: np.ndarray) -> np.ndarray:
    """BGR ``(H, W, 3) uint8`` to a C-contiguous RGB copy (dlib rejects negative strides)."""
    return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)


def landmark_box(box: np.ndarray) -> np.ndarray:
    """The box dlib's 5-point landmark model expects, from a detector's face box.

    dlib's models were trained on its HOG detector's boxes: square, about the face's
    width, centred a little below the middle of CenterFace's taller box. Measured on 20
    faces in 17 photos (shared reference photos and the astronaut): HOG width 1.07x
    CenterFace's, height 0.81x, centre 0.035 of the height lower. Embeddings on boxes
    mapped this way separate people as well as on HOG's own boxes (same person: mean
    0.406 vs 0.407; different: closest 0.701 vs 0.705).
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + 0.035 * h
    half = max(1.0, 1.07 * w / 2)
    return np.array([cx - half, cy - half, cx + half, cy + half], np.float32)


def _xyxy_to_rect(box: np.ndarray) -> dlib.rectangle:
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    return dlib.rectangle(x1, y1, max(x1 + 1, x2 - 1), max(y1 + 1, y2 - 1))


class Embedder:
    """dlib 5-point alignment and the 128-d ResNet face descriptor.

    Embedding holds the GIL and costs about 80 ms of CPU per face: call it sparingly
    (the analysis embeds a few chosen crops per track, in a worker process).
    """

    def __init__(self) -> None:
        self._sp5 = dlib.shape_predictor(_model_path("landmarks5"))
        self._resnet = dlib.face_recognition_model_v1(_model_path("resnet"))
        self._lock = threading.Lock()

    def embed(self, image_bgr: np.ndarray, xyxy: np.ndarray, *, jitters: int = 0) -> np.ndarray:
        """128-d descriptors of the faces at ``xyxy`` in ``image_bgr``.

        Args:
            image_bgr: ``(H, W, 3) uint8`` BGR frame (or a crop holding the faces).
            xyxy: ``(N, 4)`` detector boxes in that image's pixels (mapped to dlib's
                box convention here, see :func:`landmark_box`).
            jitters: extra randomly jittered copies averaged in; each costs as much
                as one embedding. Worth it for reference photos, not for video.

        Returns:
            ``(N, 128)`` float32. Euclidean distance below about 0.6 means "same person".
        """
        xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        return self.embed_dlib_box(image_bgr, np.array([landmark_box(b) for b in xyxy], np.float32), jitters=jitters)

    def embed_dlib_box(self, image_bgr: np.ndarray, xyxy: np.ndarray, *, jitters: int = 0) -> np.ndarray:
        """As :meth:`embed`, for boxes already in dlib's own (HOG) convention."""
        xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        if len(xyxy) == 0:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        rgb = to_rgb(image_bgr)
        shapes = dlib.full_object_detections()
        for box in xyxy:
            shapes.append(self._sp5(rgb, _xyxy_to_rect(box)))
        with self._lock:
            descriptors = self._resnet.compute_face_descriptor(rgb, shapes, jitters)
        return np.asarray([np.asarray(d) for d in descriptors], np.float32).reshape(-1, EMBEDDING_DIM)


class FaceEngine:
    """A detector and an embedder, loaded once and shared by the gallery, the analysis and ``verify``.

    Args:
        detector: default: :class:`~blurface.detectors.CenterFace` at its default threshold.
        embedder: default: a new :class:`Embedder`.
    """

    def __init__(self, *, detector: Detector | None = None, embedder: Embedder | None = None) -> None:
        self.detector = detector if detector is not None else make_detector()
        self.embedder = embedder if embedder is not None else Embedder()

    def detect(self, image_bgr: np.ndarray, *, scale: float = 1.0) -> Faces:
        """Faces in a BGR frame, looked for at ``scale`` times its size; full-frame boxes."""
        return self.detector.detect(image_bgr, scale=scale)

    def embed(self, image_bgr: np.ndarray, xyxy: np.ndarray, *, jitters: int = 0) -> np.ndarray:
        """See :meth:`Embedder.embed`."""
        return self.embedder.embed(image_bgr, xyxy, jitters=jitters)


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
