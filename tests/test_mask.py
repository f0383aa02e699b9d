"""Masks hide what they cover, only that, and cannot be sharpened back."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from blurface.mask import DEFAULT_PAD, Blur, Masker, Pixelate, Solid, padded_boxes


def noise_frame(h: int = 360, w: int = 640, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def high_pass(img: np.ndarray) -> np.ndarray:
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY).astype(np.float32)
    return gray - cv2.GaussianBlur(gray, (0, 0), 2)


@pytest.mark.parametrize("effect", [Blur(), Pixelate(), Solid()], ids=["blur", "pixelate", "solid"])
@pytest.mark.parametrize("shape", ["ellipse", "box"])
def test_face_box_fully_changed_and_far_pixels_untouched(effect, shape) -> None:
    frame = noise_frame()
    original = frame.copy()
    box = np.array([[200, 100, 300, 220]], np.float32)
    Masker(effect, shape=shape).apply(frame, box)
    inside = np.any(frame[100:220, 200:300] != original[100:220, 200:300], axis=2)
    # With the default pad, even the corners of the detector's box are inside the mask.
    assert inside.mean() > 0.97
    padded = padded_boxes(box, DEFAULT_PAD)[0]
    outside = np.ones(frame.shape[:2], bool)
    outside[max(0, int(padded[1]) - 1) : int(padded[3]) + 2, max(0, int(padded[0]) - 1) : int(padded[2]) + 2] = False
    assert np.array_equal(frame[outside], original[outside])


def test_blur_cannot_be_sharpened_back() -> None:
    face = cv2.cvtColor(cv2.resize(noise_frame(40, 40, 3), (200, 200), interpolation=cv2.INTER_CUBIC), cv2.COLOR_BGR2RGB)
    frame = np.zeros((300, 300, 3), np.uint8)
    frame[50:250, 50:250] = face
    original = frame.copy()
    Masker(Blur(), shape="box", pad=0).apply(frame, np.array([[50, 50, 250, 250]], np.float32))
    sharpened = cv2.addWeighted(frame, 3.0, cv2.GaussianBlur(frame, (0, 0), 3), -2.0, 0)
    a = high_pass(original[60:240, 60:240]).ravel()
    b = high_pass(sharpened[60:240, 60:240]).ravel()
    correlation = float(np.corrcoef(a, b)[0, 1])
    assert abs(correlation) < 0.2, correlation


@pytest.mark.parametrize("size", [40, 400])
def test_blur_strength_follows_face_size(size: int) -> None:
    frame = noise_frame(600, 600, 1)
    Masker(Blur(), shape="box", pad=0).apply(frame, np.array([[100, 100, 100 + size, 100 + size]], np.float32))
    region = cv2.cvtColor(frame[100 : 100 + size, 100 : 100 + size], cv2.COLOR_BGR2GRAY).astype(np.float32)
    # Neighbouring pixels are nearly equal at any size: detail scales away with the face.
    assert np.abs(np.diff(region, axis=1)).mean() < 255 / 6 * 12 / size + 2


def test_solid_colour_and_boxes_outside_frame() -> None:
    frame = noise_frame(100, 100)
    Masker(Solid(color=(1, 2, 3)), shape="box", pad=0).apply(
        frame, np.array([[-50, -50, 10, 10], [95, 95, 300, 300], [500, 500, 600, 600]], np.float32)
    )
    assert (frame[:10, :10] == (1, 2, 3)).all()
    assert (frame[95:, 95:] == (1, 2, 3)).all()


def test_pixelate_makes_blocks() -> None:
    frame = noise_frame(200, 200)
    Masker(Pixelate(cells=4), shape="box", pad=0).apply(frame, np.array([[0, 0, 200, 200]], np.float32))
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) <= 16


@pytest.mark.parametrize("bad", [dict(shape="circle"), dict(pad=-1), dict(pad=10)])
def test_bad_settings_raise(bad) -> None:
    with pytest.raises(ValueError):
        Masker(Blur(), **bad)
