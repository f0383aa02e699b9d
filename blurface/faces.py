"""Face detection, landmarks and embeddings on dlib with the face_recognition models.

Only this module touches dlib. Models are loaded in :class:`FaceEngine`'s
constructor, never at import (face_recognition loads them at import and calls
``quit()`` when they are missing).
"""

from __future__ import annotations

import importlib.util
import logging
import threading
from pathlib import Path

import cv2
import dlib
import numpy as np

from .types import EMBEDDING_DIM, Faces, ProcessingError

log = logging.getLogger(__name__)

_MODEL_FILES = {
    "landmarks5": "shape_predictor_5_face_landmarks.dat",
    "resnet": "dlib_face_recognition_resnet_model_v1.dat",
    "cnn": "mmod_human_face_detector.dat",
}

# Below about this many pixels dlib's HOG detector (80x80 window, upsample 0)
# stops finding faces; callers scale frames so the smallest wanted face is this big.
HOG_MIN_FACE_PX = 50


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


def _model_path(key: str) -> str:
    path = models_dir() / _MODEL_FILES[key]
    if not path.is_file():
        raise ProcessingError(f"face model {path} is missing: reinstall face_recognition_models")
    return str(path)


def to_rgb(image_bgr: np.ndarray) -> np.ndarray:
    """BGR ``(H, W, 3) uint8`` to a C-contiguous RGB copy (dlib rejects negative strides)."""
    return cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)


def _rects_to_xyxy(rects: list, scale: float) -> np.ndarray:
    xyxy = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], np.float32).reshape(-1, 4)
    return xyxy / np.float32(scale)


def _xyxy_to_rect(box: np.ndarray) -> dlib.rectangle:
    x1, y1, x2, y2 = (int(round(float(v))) for v in box)
    return dlib.rectangle(x1, y1, max(x1 + 1, x2 - 1), max(y1 + 1, y2 - 1))


class FaceEngine:
    """dlib HOG/CNN detection, 5-point alignment and 128-d ResNet embeddings.

    The HOG detector releases the GIL, so :meth:`detect` may be called from several
    threads at once (each thread gets its own detector object). Embedding holds the GIL
    and costs about 80 ms of CPU per face: call it sparingly.

    Args:
        threshold: HOG score threshold added to dlib's default. Lower finds more faces
            (profiles, blur) at the price of more false positives, which for a privacy
            tool are cheaper than misses.
        load_cnn: also load the (slow, 1.3 s per 360p frame on CPU) CNN detector.
    """

    def __init__(self, *, threshold: float = -0.2, load_cnn: bool = False) -> None:
        self.threshold = float(threshold)
        self._local = threading.local()
        self._sp5 = dlib.shape_predictor(_model_path("landmarks5"))
        self._resnet = dlib.face_recognition_model_v1(_model_path("resnet"))
        self._cnn = dlib.cnn_face_detection_model_v1(_model_path("cnn")) if load_cnn else None
        self._embed_lock = threading.Lock()

    def _hog(self) -> dlib.fhog_object_detector:
        detector = getattr(self._local, "hog", None)
        if detector is None:
            detector = self._local.hog = dlib.get_frontal_face_detector()
        return detector

    def detect_array(
        self, rgb: np.ndarray, *, scale: float = 1.0, upsample: int = 0, threshold: float | None = None
    ) -> Faces:
        """HOG-detect faces in an image that is ``scale`` times the full frame's size.

        Args:
            rgb: ``(h, w, 3) uint8`` RGB or ``(h, w) uint8`` grey (about 25% faster,
                same detections), C-contiguous.
            scale: size of ``rgb`` relative to the full frame; boxes are divided by it,
                so they come back in full-frame pixels.
            upsample: dlib pyramid upsampling; each step finds faces half as large at
                about 4x the cost.
            threshold: overrides the engine's threshold for this call.
        """
        adjust = self.threshold if threshold is None else threshold
        rects, scores, _ = self._hog().run(np.ascontiguousarray(rgb), upsample, adjust)
        return Faces(_rects_to_xyxy(rects, scale), np.asarray(scores, np.float32))

    def detect(self, image_bgr: np.ndarray, *, upsample: int = 0) -> Faces:
        """HOG-detect faces in a full-size BGR frame."""
        return self.detect_array(to_rgb(image_bgr), upsample=upsample)

    def detect_cnn(self, image_bgr: np.ndarray, *, upsample: int = 1) -> Faces:
        """CNN (MMOD) detection: finds profiles and small faces HOG misses, about 60x slower."""
        if self._cnn is None:
            self._cnn = dlib.cnn_face_detection_model_v1(_model_path("cnn"))
        found = self._cnn(to_rgb(image_bgr), upsample)
        rects = [d.rect for d in found]
        return Faces(_rects_to_xyxy(rects, 1.0), np.array([d.confidence for d in found], np.float32))

    def embed(self, image_bgr: np.ndarray, xyxy: np.ndarray, *, jitters: int = 0) -> np.ndarray:
        """128-d descriptors of the faces at ``xyxy`` in ``image_bgr``.

        Args:
            image_bgr: ``(H, W, 3) uint8`` BGR frame (or a crop holding the faces).
            xyxy: ``(N, 4)`` boxes in that image's pixels.
            jitters: extra randomly jittered copies averaged in; each costs as much
                as one embedding. Worth it for reference photos, not for video.

        Returns:
            ``(N, 128)`` float32. Euclidean distance below about 0.6 means "same person".
        """
        xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        if len(xyxy) == 0:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        rgb = to_rgb(image_bgr)
        shapes = dlib.full_object_detections()
        for box in xyxy:
            shapes.append(self._sp5(rgb, _xyxy_to_rect(box)))
        with self._embed_lock:
            descriptors = self._resnet.compute_face_descriptor(rgb, shapes, jitters)
        return np.asarray([np.asarray(d) for d in descriptors], np.float32).reshape(-1, EMBEDDING_DIM)


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


def distances(embeddings: np.ndarray, references: np.ndarray) -> np.ndarray:
    """Euclidean distances, ``(N, 128)`` x ``(M, 128)`` -> ``(N, M)`` float32."""
    a = np.asarray(embeddings, np.float32).reshape(-1, EMBEDDING_DIM)
    b = np.asarray(references, np.float32).reshape(-1, EMBEDDING_DIM)
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)), np.float32)
    return np.linalg.norm(a[:, None, :] - b[None, :, :], axis=2)
