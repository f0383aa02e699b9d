"""The model files blurface loads: one list, for the audit report's hashes.

Add a model here when a stage starts loading one, so every report names it.
"""

from __future__ import annotations

from pathlib import Path


def model_files() -> list[tuple[str, Path]]:
    """``(role, path)`` of every model file blurface may load.

    dlib's HOG detector is compiled into dlib (no file); the report records dlib's version for it.
    """
    from .faces import models_dir

    folder = models_dir()
    return [
        ("face landmarks (dlib 5-point shape predictor)", folder / "shape_predictor_5_face_landmarks.dat"),
        ("face embedding (dlib ResNet)", folder / "dlib_face_recognition_resnet_model_v1.dat"),
        ("CNN face detector (dlib MMOD: --thorough, verify)", folder / "mmod_human_face_detector.dat"),
    ]
