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


def textured_frame(h: int = 360, w: int = 640) -> np.ndarray:
    """Smooth colour texture (face-like detail, no 1-pixel noise that 4:2:0 would alias)."""
    small = np.random.default_rng(5).integers(0, 256, (h // 8, w // 8, 3), dtype=np.uint8)
    image = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    image[..., 2] = np.clip(image[..., 2] * 0.5 + np.arange(w) / w * 120, 0, 255).astype(np.uint8)
    return image


def to_yuv420(image: np.ndarray) -> list[np.ndarray]:
    """BGR to limited-range BT.709 yuv420p planes, converted as the renderer converts (accurate swscale)."""
    import av

    from blurface.media.common import ACCURATE_TO_YUV, plane_samples

    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24")
    frame.colorspace, frame.color_range = 1, 2
    frame = frame.reformat(format="yuv420p", interpolation=ACCURATE_TO_YUV, dst_colorspace=1, dst_color_range=1)
    return [plane_samples(p, 8).copy() for p in frame.planes]


# (effect, largest mean chroma difference inside the masks). Luma agrees within 2 levels for
# every effect. Chroma is masked at its own (half) size: blur smooths it a little more and
# pixelate's block edges land on even pixels, so chroma is compared on average.
YUV_CASES = [(Blur(), 5.0), (Pixelate(), 4.0), (Solid(color=(40, 180, 230)), 0.0)]


@pytest.mark.parametrize(("effect", "chroma_tolerance"), YUV_CASES, ids=["blur", "pixelate", "solid"])
@pytest.mark.parametrize("shape", ["ellipse", "box"])
def test_masking_the_yuv_planes_matches_masking_bgr(effect, chroma_tolerance, shape) -> None:
    """The renderer masks 4:2:0 planes directly; the picture must be the one the BGR masker draws."""
    image = textured_frame()
    boxes = np.array([[200, 100, 300, 220], [455.3, 201.7, 521.9, 281.2], [-30, 250, 40, 340]], np.float32)
    masker = Masker(effect, shape=shape)
    bgr_masked = image.copy()
    masker.apply(bgr_masked, boxes)
    expected = to_yuv420(bgr_masked)
    original = to_yuv420(image)
    planes = [p.copy() for p in original]
    fills = masker.plane_fills(depth=8, colorspace=1, full_range=False)
    masker.apply_planes(planes, boxes, shifts=[(0, 0), (1, 1), (1, 1)], fills=fills)

    inside = np.zeros(image.shape[:2], np.uint8)
    for x1, y1, x2, y2 in padded_boxes(boxes, masker.pad):
        if shape == "box":
            cv2.rectangle(inside, (int(x1), int(y1)), (int(x2), int(y2)), 255, -1)
        else:
            cv2.ellipse(inside, (((x1 + x2) / 2, (y1 + y2) / 2), (x2 - x1, y2 - y1), 0), 255, -1)
    for index, (got, want, before) in enumerate(zip(planes, expected, original, strict=True)):
        size = (got.shape[1], got.shape[0])
        cover = cv2.resize(inside, size, interpolation=cv2.INTER_AREA)
        # Two samples in from each mask edge: at the edge a chroma sample is half face, half background.
        core = cv2.erode((cover == 255).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        diff = np.abs(got.astype(int) - want.astype(int))[core]
        assert core.sum() > 1000
        assert not np.array_equal(got[core], before[core]), "the mask changed nothing"
        if index == 0:
            assert diff.max() <= 3, diff.max()
        else:
            assert diff.mean() <= chroma_tolerance + 0.5, (index, diff.mean())
        # Nothing moves outside the mask: chroma may cover at most one more sample at the edges.
        near = cv2.dilate((cover > 0).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        assert np.array_equal(got[~near], before[~near])


# --------------------------------------------------------------------------- sparing the neighbours

TARGET = np.array([[200, 100, 300, 220]], np.float32)
# A bystander just right of the target and a little lower: the target's padded ellipse
# (40 px wider each side, 60 px higher) reaches over her eyes.
BYSTANDER = np.array([[308, 130, 400, 250]], np.float32)


def core_slice(box: np.ndarray, shift: tuple[int, int] = (0, 0)) -> tuple[slice, slice]:
    """The pixels (rounded inwards) of ``box``'s eyes-nose-mouth core, in a plane subsampled by ``shift``."""
    from blurface.mask import core_boxes

    x1, y1, x2, y2 = core_boxes(box)[0]
    fx, fy = 1 << shift[0], 1 << shift[1]
    return slice(int(np.ceil(y1 / fy)), int(y2 // fy)), slice(int(np.ceil(x1 / fx)), int(x2 // fx))


def own_slice(box: np.ndarray) -> tuple[slice, slice]:
    x1, y1, x2, y2 = box[0]
    return slice(int(y1), int(y2)), slice(int(x1), int(x2))


def test_the_layout_puts_the_padding_over_the_bystanders_eyes() -> None:
    """Without ``spare`` the target's padding covers much of the bystander's core: the tests below test something."""
    frame = noise_frame()
    original = frame.copy()
    Masker(Blur()).apply(frame, TARGET)
    ys, xs = core_slice(BYSTANDER)
    assert np.any(frame[ys, xs] != original[ys, xs], axis=2).mean() > 0.1


@pytest.mark.parametrize("effect", [Blur(), Pixelate(), Solid()], ids=["blur", "pixelate", "solid"])
@pytest.mark.parametrize("shape", ["ellipse", "box"])
def test_padding_spares_an_unmasked_neighbours_core_but_never_the_own_box(effect, shape) -> None:
    frame = noise_frame()
    original = frame.copy()
    Masker(effect, shape=shape).apply(frame, TARGET, spare=BYSTANDER)
    ys, xs = core_slice(BYSTANDER)
    assert np.array_equal(frame[ys, xs], original[ys, xs]), "the bystander's eyes, nose and mouth were changed"
    ys, xs = own_slice(TARGET)
    assert np.any(frame[ys, xs] != original[ys, xs], axis=2).mean() > 0.97, "the target's own box was trimmed"
    # Only the core is cut out: the padding elsewhere (above the target's head) is still masked.
    assert np.any(frame[60:100, 220:280] != original[60:100, 220:280], axis=2).mean() > 0.9


@pytest.mark.parametrize("shape", ["ellipse", "box"])
def test_a_spared_face_overlapping_the_target_box_leaves_that_box_masked(shape) -> None:
    """A bystander half behind the target: her core is spared only outside the target's own box."""
    frame = noise_frame()
    original = frame.copy()
    behind = np.array([[270, 150, 360, 270]], np.float32)
    Masker(Solid(color=(1, 2, 3)), shape=shape).apply(frame, TARGET, spare=behind)
    assert (frame[100:220, 200:300] == (1, 2, 3)).all(), "the target's own box was trimmed"
    ys, xs = core_slice(behind)
    outside = np.ones(frame.shape[:2], bool)
    outside[100:220, 200:300] = False
    spared = np.zeros(frame.shape[:2], bool)
    spared[ys, xs] = True
    assert np.array_equal(frame[spared & outside], original[spared & outside])


def test_two_masked_faces_trim_nothing_between_them_and_a_duplicate_spares_nothing() -> None:
    """Spare boxes are unmasked faces only; an unmasked box that is a masked face found twice is ignored."""
    frame = noise_frame()
    both = np.concatenate([TARGET, BYSTANDER])
    expected = frame.copy()
    Masker(Solid(), shape="ellipse").apply(expected, both)
    got = frame.copy()
    Masker(Solid(), shape="ellipse").apply(got, both, spare=np.zeros((0, 4), np.float32))
    assert np.array_equal(got, expected)
    # The target found twice, once left unmasked (a duplicate track): the mask stays whole.
    twice = frame.copy()
    Masker(Solid(), shape="ellipse").apply(twice, TARGET, spare=TARGET + np.float32([-8, -6, 10, 12]))
    whole = frame.copy()
    Masker(Solid(), shape="ellipse").apply(whole, TARGET)
    assert np.array_equal(twice, whole)


@pytest.mark.parametrize(("effect", "chroma_tolerance"), YUV_CASES, ids=["blur", "pixelate", "solid"])
@pytest.mark.parametrize("shape", ["ellipse", "box"])
def test_the_planes_spare_the_same_core_as_bgr(effect, chroma_tolerance, shape) -> None:
    """The render masks 4:2:0 planes: the bystander's core is unchanged there too, in luma and chroma."""
    image = textured_frame()
    masker = Masker(effect, shape=shape)
    original = to_yuv420(image)
    planes = [p.copy() for p in original]
    fills = masker.plane_fills(depth=8, colorspace=1, full_range=False)
    shifts = [(0, 0), (1, 1), (1, 1)]
    masker.apply_planes(planes, TARGET, shifts=shifts, fills=fills, spare=BYSTANDER)
    for got, before, shift in zip(planes, original, shifts, strict=True):
        ys, xs = core_slice(BYSTANDER, shift)
        assert np.array_equal(got[ys, xs], before[ys, xs]), shift
        fx, fy = 1 << shift[0], 1 << shift[1]
        x1, y1, x2, y2 = TARGET[0]
        own = (slice(int(y1) // fy, int(y2) // fy), slice(int(x1) // fx, int(x2) // fx))
        assert (got[own] != before[own]).mean() > 0.9, shift
    # And the BGR masker leaves the same core alone (what the preview and matte draw).
    bgr = image.copy()
    masker.apply(bgr, TARGET, spare=BYSTANDER)
    ys, xs = core_slice(BYSTANDER)
    assert np.array_equal(bgr[ys, xs], image[ys, xs])
