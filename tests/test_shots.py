"""Tests for blurface.shots on generated frames (no video)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from skimage import data

from blurface.shots import SceneCutDetector

# --------------------------------------------------------------------------- scene cuts

H, W = 180, 320
_YY, _XX = np.mgrid[0:H, 0:W].astype(np.float32)


def gradient_frame(phase: float, gain: float = 1.0) -> np.ndarray:
    """Smooth colour gradient; ``phase`` moves it, ``gain`` scales brightness."""
    chans = [127 + 100 * np.sin(_XX / 40 * c + _YY / 57 + phase) for c in (1.0, 0.6, 0.3)]
    return np.clip(np.stack(chans, -1) * gain, 0, 255).astype(np.uint8)


def noise_texture(seed: int, width: int = W) -> np.ndarray:
    """Smooth random colour texture (blocky noise upscaled)."""
    small = np.random.default_rng(seed).integers(0, 256, (9, width // 20, 3), dtype=np.uint8)
    return cv2.resize(small, (width, H), interpolation=cv2.INTER_CUBIC)


def cuts_in(frames: list[np.ndarray], detector: SceneCutDetector | None = None) -> list[int]:
    detector = detector or SceneCutDetector()
    return [i for i, f in enumerate(frames) if detector.update(f)]


def test_hard_cut_is_detected_on_its_frame() -> None:
    shot_a = [gradient_frame(0.1 * i) for i in range(10)]
    shot_b = [noise_texture(1)] * 10
    shot_c = [gradient_frame(0.5, 0.8)[:, :, ::-1].copy() for _ in range(10)]
    assert cuts_in(shot_a + shot_b + shot_c) == [10, 20]


@pytest.mark.parametrize(
    "name",
    ["brightness_ramp", "flicker", "moving_object", "pan", "moving_gradient", "sensor_noise"],
)
def test_no_cut_within_a_shot(name: str) -> None:
    base = gradient_frame(0.0)
    rng = np.random.default_rng(0)
    frames: list[np.ndarray] = []
    for i in range(40):
        if name == "brightness_ramp":
            f = gradient_frame(0.0, 0.4 + 0.03 * i)
        elif name == "flicker":
            f = gradient_frame(0.0, 1.0 + 0.2 * (-1) ** i)
        elif name == "moving_object":
            f = base.copy()
            x = 8 * i
            cv2.rectangle(f, (x, 40), (x + 70, 130), (20, 30, 230), -1)
        elif name == "pan":
            f = noise_texture(5, width=3 * W)[:, 12 * i : 12 * i + W].copy()
        elif name == "moving_gradient":
            f = gradient_frame(0.3 * i)
        else:
            f = np.clip(base.astype(np.int16) + rng.integers(-20, 21, base.shape), 0, 255).astype(np.uint8)
        frames.append(f)
    assert cuts_in(frames) == []


def test_min_shot_and_reset() -> None:
    a, b = gradient_frame(0.0), noise_texture(1)
    # Cuts 2 frames apart: the second is suppressed (a flash would be two cuts).
    assert cuts_in([a] * 6 + [b] * 2 + [a] * 6, SceneCutDetector(min_shot=5)) == [6]
    assert cuts_in([a] * 6 + [b] * 2 + [a] * 6, SceneCutDetector(min_shot=1)) == [6, 8]
    det = SceneCutDetector()
    for _ in range(6):
        det.update(a)
    det.reset()
    assert det.update(b) is False  # first frame after reset starts a shot, is not a cut
    assert cuts_in([b] * 6 + [a], det) == [6]


def test_scene_cut_accepts_any_size_and_grey() -> None:
    det = SceneCutDetector()
    assert det.update(np.zeros((20, 30, 3), np.uint8)) is False
    assert det.update(np.full((20, 30), 128, np.uint8)) is False  # flat to flat
    # Sizes and channel counts may change between calls; a shot is judged on its content.
    a = cv2.resize(noise_texture(2), (1280, 720))
    b = cv2.resize(cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR), (640, 360))
    assert cuts_in([a] * 6 + [b] * 6 + [cv2.cvtColor(b, cv2.COLOR_BGR2GRAY)] * 2, det) == [6]
    with pytest.raises(ValueError):
        det.update(np.zeros((10, 10, 3), np.float32))
