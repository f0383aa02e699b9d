"""Pipeline helpers that decide how far masks reach, on synthetic tracks (no video)."""

from __future__ import annotations

import numpy as np
import pytest

from blurface.analysis import _frames_to_leave
from blurface.settings import AnalysisSettings, detection_scale
from blurface.types import SOURCE_DETECTED, SOURCE_INTERPOLATED, Track


def moving_track(x0: float, vx: float, n: int = 10, width: float = 100) -> Track:
    frames = np.arange(n)
    x = x0 + vx * frames
    xyxy = np.stack([x, np.full(n, 50.0), x + width, np.full(n, 150.0)], 1)
    source = np.where(frames % 3 == 0, SOURCE_DETECTED, SOURCE_INTERPOLATED)
    source[-1] = SOURCE_DETECTED
    return Track(1, frames, xyxy, source)


@pytest.mark.parametrize(
    "x0, vx, at_end, expect",
    [
        (1080, 10, True, True),  # leaving through the right edge: cover until it is out
        (10, -5, True, True),  # leaving through the left edge
        (500, 10, True, False),  # mid-frame: nothing to add
        (1080, -10, True, False),  # near the edge but coming in
        (10, 5, False, True),  # entered from the left: cover back to where it came in
    ],
)
def test_frames_to_leave(x0: float, vx: float, at_end: bool, expect: bool) -> None:
    track = moving_track(x0, vx)
    n = _frames_to_leave(track, 1280, 720, at_end=at_end)
    assert (n > 0) == expect
    if expect and at_end:
        last = track.xyxy[-1]
        moved = last + np.array([vx, 0, vx, 0]) * n
        # After n frames on its path the whole box is outside the frame.
        assert moved[0] >= 1280 or moved[2] <= 0


@pytest.mark.parametrize("height", [720, 1080, 2160])
def test_detection_scale_puts_the_smallest_face_at_the_detectors_minimum(height: int) -> None:
    settings = AnalysisSettings()
    scale = detection_scale(settings, 14.0, height * 16 // 9, height)
    assert height * settings.min_face * scale == pytest.approx(14.0, rel=0.02)


def test_detection_scale_never_upscales() -> None:
    # 360p: the smallest wanted face (12 px) is under the detector's minimum even at full size.
    assert detection_scale(AnalysisSettings(), 14.0, 640, 360) == 1.0
