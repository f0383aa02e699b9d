"""Synthetic clips with exact per-frame truth, generated at run time.

Faces are cut from reference photos (``../shared/media`` or any photos you give),
then moved, scaled, mirrored (a head turning), pushed partly out of frame, made to
cross each other, and cut to a second shot. Nothing generated here is committed.

    python benchmarks/synth.py OUT.mp4 --truth OUT.json   # uses ../shared/media
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cases import PHOTOS  # noqa: E402

SHARED = REPO.parent / "shared" / "media"

# Who appears, cut from which photo; the target's reference is a *different* photo.
CAST = {"rose": "rose_leslie.jpg", "biden": "biden.jpg", "kit": "kit_harington.jpg"}
TARGET = "rose"
TARGET_REFERENCE = "rose_leslie_2.jpg"


@dataclass
class Actor:
    """A face cut from a photo: ``crop`` BGR with margin and ``alpha`` (0..1), face box inside it."""

    name: str
    crop: np.ndarray
    alpha: np.ndarray
    face: np.ndarray  # xyxy in crop pixels


# Face boxes checked by eye (benchmarks/cases.py), so the clip does not change with the detector.
KNOWN_BOXES = {file: box for key, (file, box) in PHOTOS.items() if "#" not in key}


def load_actor(name: str, photo: Path, engine=None) -> Actor:
    """Cut the head around the photo's face: its known box, else the largest face ``engine`` finds."""
    image = cv2.imread(str(photo))
    if image is None:
        raise FileNotFoundError(photo)
    if photo.name in KNOWN_BOXES:
        box = np.array(KNOWN_BOXES[photo.name], np.float32)
    else:
        from blurface.faces import FaceEngine
        from blurface.gallery import detect_reference_faces

        faces = detect_reference_faces(image, engine or FaceEngine())
        box = faces.xyxy[int(np.argmax(faces.width))]
    w, h = box[2] - box[0], box[3] - box[1]
    m = 0.8
    x1, y1 = int(max(0, box[0] - m * w)), int(max(0, box[1] - m * h * 1.2))
    x2, y2 = int(min(image.shape[1], box[2] + m * w)), int(min(image.shape[0], box[3] + m * h))
    crop = np.ascontiguousarray(image[y1:y2, x1:x2])
    ch, cw = crop.shape[:2]
    alpha = np.zeros((ch, cw), np.float32)
    cv2.ellipse(alpha, ((cw / 2, ch / 2), (cw * 0.95, ch * 0.98), 0), 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), max(1.0, cw / 30))
    return Actor(name, crop, alpha, np.array([box[0] - x1, box[1] - y1, box[2] - x1, box[3] - y1], np.float32))


def load_cast(engine=None, media: Path = SHARED) -> dict[str, Actor]:
    return {name: load_actor(name, media / photo, engine) for name, photo in CAST.items()}


@dataclass
class Placement:
    actor: str
    cx: float  # face centre, frame pixels
    cy: float
    face_width: float
    mirrored: bool = False


def background(shot: int, width: int, height: int) -> np.ndarray:
    rng = np.random.default_rng(shot)
    base = np.array([[70, 60, 50], [40, 70, 90]][shot % 2], np.float32)
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    img = base + 60 * x * np.array([1, 0.5, 0.2], np.float32) + 40 * y * np.array([0.2, 0.6, 1], np.float32)
    texture = cv2.resize(rng.normal(0, 12, (height // 16, width // 16, 3)).astype(np.float32), (width, height))
    return np.clip(img + texture, 0, 255).astype(np.uint8)


def script(i: int, n: int, width: int, height: int) -> tuple[int, list[Placement]]:
    """Shot number and placements at frame ``i`` of ``n``; sizes scale with the frame."""
    s = height / 360
    cut = n // 2
    if i < cut:
        t = i / max(1, cut - 1)
        rose = Placement("rose", (90 + 430 * t) * s, 170 * s, (70 + 50 * t) * s, mirrored=0.45 < t < 0.7)
        biden = Placement("biden", (560 - 420 * t) * s, (150 + 25 * math.sin(6 * t)) * s, 80 * s)
        return 0, [biden, rose]  # rose drawn last: in front when they cross
    t = (i - cut) / max(1, n - cut - 1)
    rose = Placement("rose", (200 + 520 * t) * s, 190 * s, 100 * s)  # leaves the frame on the right
    kit = Placement("kit", 470 * s, (120 + 30 * t) * s, (110 - 30 * t) * s, mirrored=t > 0.5)
    return 1, [kit, rose]


def compose(actors: dict[str, Actor], shot: int, places: list[Placement], width: int, height: int) -> tuple[np.ndarray, list[dict]]:
    frame = background(shot, width, height).astype(np.float32)
    drawn: list[tuple[str, np.ndarray, np.ndarray]] = []  # name, face box, coverage mask
    for p in places:
        actor = actors[p.actor]
        k = p.face_width / (actor.face[2] - actor.face[0])
        crop = cv2.resize(actor.crop, None, fx=k, fy=k, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
        alpha = cv2.resize(actor.alpha, (crop.shape[1], crop.shape[0]))
        face = actor.face * k
        if p.mirrored:
            crop, alpha = crop[:, ::-1], alpha[:, ::-1]
            face = np.array([crop.shape[1] - face[2], face[1], crop.shape[1] - face[0], face[3]], np.float32)
        ox = p.cx - (face[0] + face[2]) / 2
        oy = p.cy - (face[1] + face[3]) / 2
        x1, y1 = int(round(ox)), int(round(oy))
        fx1, fy1 = max(0, x1), max(0, y1)
        fx2, fy2 = min(width, x1 + crop.shape[1]), min(height, y1 + crop.shape[0])
        if fx2 <= fx1 or fy2 <= fy1:
            continue
        a = alpha[fy1 - y1 : fy2 - y1, fx1 - x1 : fx2 - x1, None]
        c = crop[fy1 - y1 : fy2 - y1, fx1 - x1 : fx2 - x1].astype(np.float32)
        frame[fy1:fy2, fx1:fx2] = frame[fy1:fy2, fx1:fx2] * (1 - a) + c * a
        cover = np.zeros((height, width), bool)
        cover[fy1:fy2, fx1:fx2] = a[:, :, 0] > 0.5
        for _, _, earlier in drawn:
            earlier &= ~cover
        box = np.array([face[0] + x1, face[1] + y1, face[2] + x1, face[3] + y1], np.float32)
        drawn.append((p.actor, box, cover))
    truth = []
    for name, box, cover in drawn:
        bx1, by1 = max(0, int(box[0])), max(0, int(box[1]))
        bx2, by2 = min(width, int(math.ceil(box[2]))), min(height, int(math.ceil(box[3])))
        full_area = (box[2] - box[0]) * (box[3] - box[1])
        visible = cover[by1:by2, bx1:bx2].sum() if bx2 > bx1 and by2 > by1 else 0
        # Truth lists a face while at least 40% of it shows (not occluded, not off frame).
        if visible >= 0.4 * full_area:
            truth.append({"box": [float(bx1), float(by1), float(bx2), float(by2)], "who": name})
    return np.clip(frame, 0, 255).astype(np.uint8), truth


def make_clip(
    path: str | Path,
    *,
    actors: dict[str, Actor] | None = None,
    width: int = 640,
    height: int = 360,
    fps: int = 30,
    frames: int = 120,
    crf: int = 20,
    audio: bool = True,
) -> list[list[dict]]:
    """Write the scripted clip (H.264 + AAC tone) and return its per-frame truth."""
    actors = actors or load_cast()
    truth: list[list[dict]] = []
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": str(crf), "preset": "veryfast"}
        astream = out.add_stream("aac", rate=44100) if audio else None
        if astream is not None:
            astream.layout = "mono"
        for i in range(frames):
            shot, places = script(i, frames, width, height)
            image, faces = compose(actors, shot, places, width, height)
            truth.append(faces)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if astream is not None:
            total = int(44100 * frames / fps)
            for start in range(0, total, 1024):
                t = np.arange(start, min(total, start + 1024)) / 44100
                a = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)[None], format="fltp", layout="mono")
                a.sample_rate, a.pts, a.time_base = 44100, start, Fraction(1, 44100)
                out.mux(astream.encode(a))
            out.mux(astream.encode())
    return truth


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("output")
    p.add_argument("--truth", required=True)
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--frames", type=int, default=120)
    args = p.parse_args()
    truth = make_clip(args.output, width=args.width, height=args.height, frames=args.frames)
    Path(args.truth).write_text(json.dumps({"frames": truth}))


if __name__ == "__main__":
    main()
