"""Clips with several real people, each cut from a *different* photo, with exact truth.

Faces come from two kinds of source, never from the repository:

- installed packages, so these tests run anywhere: the astronaut Eileen Collins
  (``skimage.data.astronaut()``, NASA, public domain) and Grace Hopper
  (``matplotlib``'s ``sample_data/grace_hopper.jpg``, US Navy, public domain);
- the shared reference photos in ``../shared/media`` (CI has them), read at test time.
  Nothing made from them is written outside pytest's temporary folders.

A face's box in its source photo is fixed here (measured once with dlib's HOG at
threshold 0): it is the truth the pixel judge reads, so it must not come from the
detector under test. Each head is pasted with a soft elliptical edge onto a textured
background, drifting and growing a little, with an AAC tone and a video start offset.
"""

from __future__ import annotations

import importlib.util
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from skimage import data

# name -> (file in ../shared/media, face box xyxy in that photo's pixels)
SHARED_FACES = {
    "obama": ("obama.jpg", (366, 136, 625, 395)),
    "biden": ("biden.jpg", (430, 209, 760, 540)),
    "kit": ("kit_harington.jpg", (273, 174, 454, 354)),
    "rose": ("rose_leslie.jpg", (604, 115, 880, 391)),
}
# The reference is always another photo than the one in the clip (distances measured
# between the two photos: Obama 0.38, Biden 0.41, Rose 0.38).
SHARED_REFERENCES = {"obama": "obama_2.jpg", "biden": "biden_2.jpg", "rose": "rose_leslie_2.jpg"}
ASTRONAUT_BOX = (179, 83, 267, 171)
HOPPER_BOX = (161, 137, 377, 353)


def shared_dir() -> Path:
    """``../shared/media``: skip when absent, fail on CI (as conftest's ``shared_media``)."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "media"
    if not path.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"shared media folder {path} is missing: CI must provide it")
        pytest.skip(f"shared media folder {path} is absent")
    return path


def astronaut_photo() -> np.ndarray:
    """``(512, 512, 3) uint8`` BGR: Eileen Collins."""
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def hopper_photo() -> np.ndarray:
    """``(600, 512, 3) uint8`` BGR: Grace Hopper, from matplotlib's sample data (a test dependency)."""
    spec = importlib.util.find_spec("matplotlib")
    assert spec is not None and spec.origin, "matplotlib (a test dependency) is not installed: pip install '.[test]'"
    path = Path(spec.origin).parent / "mpl-data" / "sample_data" / "grace_hopper.jpg"
    image = cv2.imread(str(path))
    assert image is not None, f"cannot read {path}"
    return image


@dataclass
class Head:
    """A head cut from a photo: BGR ``crop`` with margin, soft ``alpha`` (0..1), face box inside the crop."""

    name: str
    crop: np.ndarray
    alpha: np.ndarray
    face: np.ndarray


def cut_head(name: str, image: np.ndarray, box: Sequence[float]) -> Head:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    cx1, cy1 = int(max(0, x1 - 0.45 * w)), int(max(0, y1 - 0.6 * h))
    cx2, cy2 = int(min(image.shape[1], x2 + 0.45 * w)), int(min(image.shape[0], y2 + 0.45 * h))
    crop = np.ascontiguousarray(image[cy1:cy2, cx1:cx2])
    ch, cw = crop.shape[:2]
    alpha = np.zeros((ch, cw), np.float32)
    cv2.ellipse(alpha, ((cw / 2, ch / 2), (cw * 0.96, ch * 0.98), 0), 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(1.0, cw / 40))
    return Head(name, crop, alpha, np.array([x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1], np.float32))


def package_heads() -> dict[str, Head]:
    return {
        "astronaut": cut_head("astronaut", astronaut_photo(), ASTRONAUT_BOX),
        "hopper": cut_head("hopper", hopper_photo(), HOPPER_BOX),
    }


def shared_heads(media: Path, names: Sequence[str]) -> dict[str, Head]:
    heads = {}
    for name in names:
        file, box = SHARED_FACES[name]
        image = cv2.imread(str(media / file))
        assert image is not None, f"cannot read {media / file}"
        heads[name] = cut_head(name, image, box)
    return heads


@dataclass
class PeopleClip:
    path: Path
    truth: list[list[dict]]  # per frame: [{"box": xyxy, "who": name}], the evaluate.load_truth format
    names: list[str]

    def boxes_of(self, who: str) -> list[list[float] | None]:
        return [next((f["box"] for f in frame if f["who"] == who), None) for frame in self.truth]


def _background(width: int, height: int) -> np.ndarray:
    """A gradient with fixed blotchy texture, so masked and unmasked regions differ in detail."""
    rng = np.random.default_rng(11)
    x = np.linspace(50, 130, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 50, height, dtype=np.float32)[:, None, None]
    texture = cv2.resize(rng.normal(0, 10, (height // 8, width // 8, 3)).astype(np.float32), (width, height))
    return np.clip(x + y * np.float32([0.9, 0.6, 0.3]) + texture, 0, 255).astype(np.uint8)


def paste_head(
    image: np.ndarray, head: Head, cx: float, cy: float, face_px: float, *,
    alpha: Callable[[np.ndarray, tuple[int, int]], np.ndarray] | None = None, hidden: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Blend ``head`` into float32 ``image`` with its face ``face_px`` wide, centred at ``(cx, cy)``.

    ``alpha(face box in the scaled crop, (h, w))``: the blend mask; default the head's own soft ellipse.
    ``hidden``: the head turned away (a smooth blob, as the back of a head is to a detector).
    Returns the face box in the image, and where the head covers it (alpha > 0.5). The
    pasted crop is clipped to the frame.
    """
    height, width = image.shape[:2]
    scale = face_px / float(head.face[2] - head.face[0])
    crop = cv2.resize(head.crop, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    if hidden:
        crop = cv2.GaussianBlur(cv2.flip(crop, 1), (0, 0), face_px / 4) // 2
    face = head.face * scale
    blend = (cv2.resize(head.alpha, (crop.shape[1], crop.shape[0])) if alpha is None
             else alpha(face, crop.shape[:2])).reshape(crop.shape[0], crop.shape[1], 1)
    x1 = int(round(cx - (face[0] + face[2]) / 2))
    y1 = int(round(cy - (face[1] + face[3]) / 2))
    fx1, fy1 = max(0, x1), max(0, y1)
    fx2, fy2 = min(width, x1 + crop.shape[1]), min(height, y1 + crop.shape[0])
    a = blend[fy1 - y1 : fy2 - y1, fx1 - x1 : fx2 - x1]
    c = crop[fy1 - y1 : fy2 - y1, fx1 - x1 : fx2 - x1].astype(np.float32)
    image[fy1:fy2, fx1:fx2] = image[fy1:fy2, fx1:fx2] * (1 - a) + c * a
    cover = np.zeros((height, width), bool)
    cover[fy1:fy2, fx1:fx2] = a[:, :, 0] > 0.5
    return face + np.array([x1, y1, x1, y1], np.float32), cover


def add_streams(out: av.container.OutputContainer, width: int, height: int, fps: Fraction,
                tb: Fraction) -> tuple[av.VideoStream, av.AudioStream]:
    """An H.264 video stream (CRF 20, keyframe every 12 frames, time base ``tb``) and a mono AAC stream."""
    video = out.add_stream("libx264", rate=fps)
    video.width, video.height, video.pix_fmt = width, height, "yuv420p"
    video.time_base = video.codec_context.time_base = tb
    video.options = {"crf": "20", "preset": "veryfast"}
    video.codec_context.gop_size = 12
    return video, out.add_stream("aac", rate=48000, layout="mono")


def write_tone(out: av.container.OutputContainer, stream: av.AudioStream, seconds: float, hz: float) -> None:
    """Mux ``seconds`` of a mono 48 kHz sine at ``hz`` into ``stream`` from time 0, and flush it."""
    total = math.ceil(seconds * 48000)
    for s in range(0, total, 1024):
        ts = np.arange(s, min(total, s + 1024)) / 48000
        a = av.AudioFrame.from_ndarray(
            (0.3 * np.sin(2 * np.pi * hz * ts)).astype(np.float32)[None], format="fltp", layout="mono"
        )
        a.sample_rate, a.pts, a.time_base = 48000, s, Fraction(1, 48000)
        out.mux(stream.encode(a))
    out.mux(stream.encode())


def make_people_clip(
    path: Path,
    heads: dict[str, Head],
    *,
    n_frames: int = 30,
    width: int = 512,
    height: int = 288,
    face_px: float = 64.0,
    fps: Fraction = Fraction(30000, 1001),
    video_start: float = 0.3,
) -> PeopleClip:
    """Write the heads side by side, each in its own column, drifting and growing (H.264 + AAC).

    Faces are ``face_px`` wide (growing by 15%) and stay apart by more than a padded
    mask's reach, so masking one never touches another's truth box.
    """
    names = list(heads)
    bg = _background(width, height)
    tb = Fraction(1, 90000)
    start = round(Fraction(video_start).limit_denominator(10**6) / tb)
    column = width / len(names)
    truth: list[list[dict]] = []
    with av.open(str(path), "w") as out:
        video, astream = add_streams(out, width, height, fps, tb)
        for i in range(n_frames):
            t = i / max(1, n_frames - 1)
            image = bg.astype(np.float32)
            faces = []
            for k, name in enumerate(names):
                # Face centre: its column's middle, drifting 12 px sideways and bobbing a little.
                cx = column * (k + 0.5) + (12 * t - 6) * (1 if k % 2 else -1)
                cy = height * 0.45 + 6 * math.sin(4 * t + k)
                box, _ = paste_head(image, heads[name], cx, cy, face_px * (1 + 0.15 * t))
                assert box[0] >= 0 and box[1] >= 0 and box[2] <= width and box[3] <= height, (name, box)
                faces.append({"box": [float(v) for v in box], "who": name})
            truth.append(faces)
            frame = av.VideoFrame.from_ndarray(np.clip(image, 0, 255).astype(np.uint8), format="bgr24")
            frame.pts = start + round(i / fps / tb)
            frame.time_base = tb
            out.mux(video.encode(frame))
        out.mux(video.encode())
        write_tone(out, astream, float(video_start + n_frames / fps), 523)
    return PeopleClip(path, truth, names)


def make_crossing_clip(
    path: Path,
    target: Head,
    passer: Head,
    *,
    n_frames: int = 150,
    width: int = 640,
    height: int = 360,
    face_px: float = 80.0,
    away: tuple[int, int] = (15, 35),
    stays: int | None = None,
    passer_scale: float = 1.0,
    fps: Fraction = Fraction(30000, 1001),
) -> PeopleClip:
    """``target`` stands in the middle and turns away and back; ``passer`` walks across in front of her.

    While turned away (frames ``away``) the target's face is hidden (the head is a smooth
    blob, as the back of a head is to a face detector). The passer, drawn over the
    target, crosses the frame at constant speed and covers her face for about a second
    and a half around the middle frame. The target's truth is the part of her face box
    the passer's head leaves visible (at her eyes' height), listed where that is at
    least half of it: pixels of the passer's face in front of her are his, not hers.
    ``stays``: instead of crossing, the passer steps in right in front of her at this frame
    and stays to the end (nearer the camera with ``passer_scale`` > 1: a bigger, sharper
    face), so her track may slide onto his face for good. H.264 + AAC, like :func:`make_people_clip`.
    """
    bg = _background(width, height)
    tb = Fraction(1, 90000)
    truth: list[list[dict]] = []

    with av.open(str(path), "w") as out:
        video, astream = add_streams(out, width, height, fps, tb)
        for i in range(n_frames):
            image = bg.astype(np.float32)
            hidden = away[0] <= i < away[1]
            tbox, _ = paste_head(image, target, width / 2 + 4 * math.sin(i / 9), height * 0.45, face_px, hidden=hidden)
            # The passer crosses from the left edge to the right one, a little lower (in front).
            if stays is None:
                px = face_px * 0.75 + (width - 1.5 * face_px) * i / (n_frames - 1)
            else:  # he steps in from beside the camera, right in front of her, and stays
                px = width / 2 + face_px * 0.15 if i >= stays else -10.0 * width
            pbox, cover = paste_head(image, passer, px, height * 0.45 + face_px * 0.1, face_px * passer_scale)
            faces = [{"box": [float(v) for v in pbox], "who": passer.name}] if cover.any() else []
            # The target's columns left visible at her eyes' height: the longer run of them.
            row = cover[int(tbox[1] + 0.4 * (tbox[3] - tbox[1]))]
            x1, x2 = int(math.floor(tbox[0])), int(math.ceil(tbox[2]))
            open_cols = ~row[x1:x2]
            best, run, end = 0, 0, 0
            for k, free in enumerate(open_cols):
                run = run + 1 if free else 0
                if run > best:
                    best, end = run, k + 1
            if not hidden and best >= 0.5 * (x2 - x1):
                visible = [float(x1 + end - best), float(tbox[1]), float(x1 + end), float(tbox[3])]
                faces.insert(0, {"box": visible, "who": target.name})
            truth.append(faces)
            frame = av.VideoFrame.from_ndarray(np.clip(image, 0, 255).astype(np.uint8), format="bgr24")
            frame.pts = round(i / fps / tb)
            frame.time_base = tb
            out.mux(video.encode(frame))
        out.mux(video.encode())
        write_tone(out, astream, float(n_frames / fps), 440)
    return PeopleClip(path, truth, [target.name, passer.name])


def plan_from_truth(clip: PeopleClip, path: Path):  # noqa: ANN201 - blurface.plan.Plan
    """A plan of ``clip`` with no detector: each person a track at their exact boxes, the astronaut
    masked (the target, matched), everyone else kept ("other"); saved to ``path`` and loaded back."""
    from blurface import media
    from blurface.plan import Plan
    from blurface.types import Track

    info = media.probe(clip.path)
    tracks = []
    for tid, who in enumerate(clip.names):
        boxes = clip.boxes_of(who)
        target = who == "astronaut"
        tracks.append(Track(
            id=tid, frames=np.arange(len(boxes)), xyxy=np.array(boxes, np.float32), source=np.zeros(len(boxes)),
            identity="astronaut" if target else None, distance=0.3 if target else 1.5,
            decision="target" if target else "other", masked=target, reason="made for the test",
        ))
    Plan(video=info, mode="target", settings={}, tracks=tracks, times=media.frame_times(info)).save(path)
    return Plan.load(path)
