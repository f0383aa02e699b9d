"""blurface: targeted face anonymisation for video.

    >>> from blurface import blur_video
    >>> result = blur_video("talk.mp4", targets=["alice.jpg"])   # writes talk.blurred.mp4

The stages are importable on their own: :func:`analyse` gives a :class:`Plan`,
:func:`render` writes it, :class:`Gallery` holds reference people.
"""

from __future__ import annotations

import os as _os

# onnxruntime (1.32) starts a telemetry client when imported unless this is set: it writes a
# session file (.ses) into the temp folder. blurface makes no network access, and whichever
# module imports onnxruntime first (the detector, the audit report), it is set before.
_os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")

from .version import __version__ as __version__

__all__ = [
    "AnalysisSettings",
    "BlurfaceError",
    "Gallery",
    "Plan",
    "RenderSettings",
    "Result",
    "analyse",
    "blur_video",
    "render",
]


def __getattr__(name: str) -> object:
    # Lazy, so `blurface --help` and `--version` answer without loading OpenCV, onnxruntime and PyAV.
    if name in ("AnalysisSettings", "RenderSettings", "analyse", "blur_video", "render"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "Gallery":
        from .gallery import Gallery

        return Gallery
    if name == "Plan":
        from .plan import Plan

        return Plan
    if name in ("BlurfaceError", "Result"):
        from . import types

        return getattr(types, name)
    raise AttributeError(f"module 'blurface' has no attribute {name!r}")
