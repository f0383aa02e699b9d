"""Shrinking pictures for the detector and the scene-cut thumbnails: averaged, never aliased."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from blurface.resample import halvings, shrink


def _stripes(width: int, height: int) -> np.ndarray:
    """One-pixel black and white columns: the worst case for a shrink that samples instead of averaging."""
    row = np.where(np.arange(width) % 2 == 0, 0, 255).astype(np.uint8)
    return np.repeat(row[None, :], height, axis=0)


@pytest.mark.parametrize("size", [(64, 36), (128, 72), (50, 28)])
def test_fine_detail_shrinks_to_its_average(size: tuple[int, int]) -> None:
    out = shrink(_stripes(1280, 720), size)
    assert out.shape == (size[1], size[0])
    # Bilinear alone would sample whole columns of one colour (0 or 255).
    assert np.abs(out.astype(int) - 127.5).max() <= 2


def test_power_of_two_shrinks_are_opencvs_exact_area_average() -> None:
    image = np.random.default_rng(0).integers(0, 256, (720, 1280, 3), np.uint8)
    exact = cv2.resize(image, (160, 90), interpolation=cv2.INTER_AREA)
    assert np.abs(shrink(image, (160, 90)).astype(int) - exact.astype(int)).max() <= 1


def test_odd_sides_and_enlargements_keep_the_asked_size() -> None:
    image = _stripes(1001, 563)
    assert shrink(image, (100, 56)).shape == (56, 100)
    assert np.abs(shrink(image, (100, 56)).astype(int) - 127.5).max() <= 14  # odd columns: 501 black, 500 white
    assert shrink(image[:20, :30], (60, 40)).shape == (40, 60)
    assert halvings(1031, 128) == 3 and halvings(255, 128) == 0 and halvings(256, 128) == 1
