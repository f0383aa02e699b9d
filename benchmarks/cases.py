"""Synthetic 720p cases with exact per-frame truth, for the accuracy benchmark.

Each case is a 1280x720, 30 fps clip with an AAC tone, generated at run time from
the shared reference photos (``../shared/media``) and ``skimage.data.astronaut()``.
Nothing generated here is committed: clips go to a git-ignored folder (``bench_out/``).

    python benchmarks/cases.py --cases small,crowd --seeds heldout --out bench_out/cases

Cases (each has one target person and other people):

    small     faces 20-60 px wide, walking, crossing, one walking towards the camera
    crowd     14 faces in three rows, 16-80 px, swaying, the camera panning slowly
    blur      fast walkers and a whip pan, with motion blur (shutter 1/60 s)
    dim       low light (gain 0.15-0.35) with sensor noise
    occluder  a pillar and a passer-by in the foreground hide faces for a while
    edges     faces entering and leaving at all four frame edges, half out of frame

Seeds and photos come in two sets (``SETS``). **tuning** may be looked at and tuned on;
**heldout** uses other photos (the target is another person, pasted from another photo)
and other seeds, and is for scoring only: do not tune on it. The target's reference photo
(what ``--target`` gets) is always a different photo from the one pasted into the clip.

Faces are cut from the photos at fixed face boxes (dlib HOG boxes, checked by eye on a
contact sheet), not by running a detector here, so the cases do not change when the
detector does. The truth box of a face is that face box, moved and scaled into the clip,
clipped to the frame; a face is in the truth while at least 40% of its box shows.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass, field
from fractions import Fraction
from functools import lru_cache
from pathlib import Path
from typing import Callable

import av
import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "media"

WIDTH, HEIGHT, FPS = 1280, 720, 30
# Bump when the generator changes, so cached clips are made again.
VERSION = 1

# Face boxes (x1, y1, x2, y2) in photo pixels: dlib HOG's boxes (upsample 1), checked by eye.
# "file#who" names one face of a photo with several people.
PHOTOS: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "rose_leslie": ("rose_leslie.jpg", (603, 115, 880, 391)),
    "rose_leslie_2": ("rose_leslie_2.jpg", (165, 194, 424, 453)),
    "kit_harington": ("kit_harington.jpg", (273, 174, 454, 354)),
    "kit_with_rose#kit": ("kit_with_rose.jpg", (250, 89, 354, 193)),
    "kit_with_rose#rose": ("kit_with_rose.jpg", (85, 133, 158, 206)),
    "biden": ("biden.jpg", (429, 209, 760, 539)),
    "biden_2": ("biden_2.jpg", (435, 286, 882, 733)),
    "alex_lacamoire": ("alex_lacamoire.png", (174, 134, 354, 314)),
    "alex_lacamoire_2": ("alex_lacamoire_2.jpg", (267, 198, 578, 509)),
    "lin_manuel_miranda": ("lin_manuel_miranda.png", (267, 164, 578, 475)),
    "obama": ("obama.jpg", (366, 136, 625, 395)),
    "obama_2": ("obama_2.jpg", (164, 302, 475, 612)),
    "obama_3": ("obama_3.jpg", (635, 281, 927, 573)),
    "two_people#biden": ("two_people.jpg", (792, 95, 942, 245)),
    "astronaut": ("skimage:astronaut", (179, 83, 267, 171)),
}


@dataclass(frozen=True)
class CastSet:
    """Who appears in a set's clips, from which photos, and with which seeds."""

    name: str
    seeds: tuple[int, ...]
    target: str  # the target's name in the truth
    target_photo: str  # PHOTOS key pasted into the clip
    reference: str  # PHOTOS key given to --target: another photo of the same person
    others: tuple[tuple[str, str], ...]  # (name in truth, PHOTOS key)


SETS: dict[str, CastSet] = {
    # Tuning: look at these, tune on these. obama.jpg and lin's photo are the shared
    # clip's references, which are tuned on anyway.
    "tuning": CastSet(
        "tuning", seeds=(1,), target="rose", target_photo="rose_leslie", reference="rose_leslie_2",
        others=(("kit", "kit_harington"), ("biden", "biden"), ("alex", "alex_lacamoire_2"),
                ("astronaut", "astronaut"), ("obama", "obama")),
    ),
    # Held out: score only. Another target (Obama, from photos not used for tuning),
    # other photos of the bystanders, other seeds.
    "heldout": CastSet(
        "heldout", seeds=(101,), target="obama", target_photo="obama_3", reference="obama_2",
        others=(("biden", "biden_2"), ("kit", "kit_with_rose#kit"), ("rose", "kit_with_rose#rose"),
                ("alex", "alex_lacamoire"), ("lin", "lin_manuel_miranda")),
    ),
}

CASES = ("small", "crowd", "blur", "dim", "occluder", "edges")


def photo_path(key: str, media: Path = SHARED) -> Path | None:
    """The file behind a PHOTOS key (None for skimage's astronaut)."""
    file = PHOTOS[key][0]
    return None if file.startswith("skimage:") else media / file


# ----- faces cut from photos ------------------------------------------------------------

FACE_PX = 160  # actors are stored at this face width; clips scale them down from there


@dataclass
class Actor:
    """A head cut from a photo: BGR ``crop``, feathered elliptical ``alpha`` (0..1), ``face`` xyxy inside it."""

    crop: np.ndarray
    alpha: np.ndarray
    face: np.ndarray


@lru_cache(maxsize=None)
def load_actor(key: str, media: Path = SHARED) -> Actor:
    """Cut the whole head around PHOTOS[key]'s face box, with soft elliptical edges."""
    file, box = PHOTOS[key]
    if file.startswith("skimage:"):
        import skimage.data

        image = np.ascontiguousarray(skimage.data.astronaut()[:, :, ::-1])
    else:
        image = cv2.imread(str(media / file))
        if image is None:
            raise FileNotFoundError(f"cannot read {media / file}: the benchmark needs the shared media")
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    # Face boxes run brows to lips; the head reaches ~0.6 h above (hair) and ~0.5 h below (chin, neck).
    cx1, cy1 = max(0, int(x1 - 0.5 * w)), max(0, int(y1 - 0.75 * h))
    cx2, cy2 = min(image.shape[1], int(x2 + 0.5 * w)), min(image.shape[0], int(y2 + 0.6 * h))
    crop = image[cy1:cy2, cx1:cx2]
    k = FACE_PX / w
    crop = cv2.resize(crop, None, fx=k, fy=k, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_CUBIC)
    face = (np.array([x1 - cx1, y1 - cy1, x2 - cx1, y2 - cy1], np.float32) * k)
    ch, cw = crop.shape[:2]
    alpha = np.zeros((ch, cw), np.float32)
    # Ellipse centred on the face, a little above it (hair), reaching past the box on every side.
    fcx, fcy = (face[0] + face[2]) / 2, (face[1] + face[3]) / 2
    fw, fh = face[2] - face[0], face[3] - face[1]
    cv2.ellipse(alpha, ((float(fcx), float(fcy - 0.12 * fh)), (float(1.75 * fw), float(2.2 * fh)), 0), 1.0, -1)
    alpha = cv2.GaussianBlur(alpha, (0, 0), fw / 14)
    return Actor(np.ascontiguousarray(crop), alpha, face)


# ----- scenes ---------------------------------------------------------------------------


@dataclass
class Walker:
    """One person: face centre and width (screen pixels before the camera) at keyframes.

    Outside the first..last keyframe the person is not in the scene. ``mirror`` is a
    frame range shown mirrored (a head turning); ``shade`` scales brightness.
    """

    who: str
    photo: str
    t: list[float]
    x: list[float]
    y: list[float]
    w: list[float]
    mirror: tuple[int, int] | None = None
    shade: float = 1.0
    sway: tuple[float, float, float] = (0.0, 0.0, 0.0)  # amplitude px, period frames, phase

    def at(self, i: float) -> tuple[float, float, float] | None:
        if i < self.t[0] or i > self.t[-1]:
            return None
        amp, period, phase = self.sway
        dx = amp * math.sin(2 * math.pi * i / period + phase) if amp else 0.0
        return (float(np.interp(i, self.t, self.x)) + dx, float(np.interp(i, self.t, self.y)),
                float(np.interp(i, self.t, self.w)))


@dataclass
class Occluder:
    """A textured upright panel (a pillar, a passer-by's coat) drawn in front of everyone."""

    t: list[float]
    x: list[float]  # centre, screen pixels
    width: float
    top: float
    bottom: float
    colour: tuple[int, int, int]


@dataclass
class Scene:
    name: str
    frames: int
    walkers: list[Walker]
    occluders: list[Occluder] = field(default_factory=list)
    camera: Callable[[float], tuple[float, float]] = lambda i: (0.0, 0.0)
    shutter: float = 0.0  # exposure as a fraction of the frame interval (0: no motion blur)
    gain: Callable[[int], float] | None = None
    noise: float = 0.0  # sensor noise sigma after gain, 0..255 scale
    seed: int = 0


def _line_kernel(dx: float, dy: float) -> np.ndarray | None:
    """Normalised line kernel for a motion of (dx, dy) pixels during the exposure."""
    length = math.hypot(dx, dy)
    if length < 1.5:
        return None
    size = int(math.ceil(length)) | 1
    k = np.zeros((size, size), np.float32)
    c = size // 2
    ux, uy = dx / length, dy / length
    for s in np.linspace(-length / 2, length / 2, max(2, int(length * 2))):
        k[int(round(c + s * uy)), int(round(c + s * ux))] = 1
    return k / k.sum()


MARGIN = 420  # background is this much larger on every side, for the camera to move over


def _background(seed: int) -> np.ndarray:
    """A soft, textured backdrop (walls, shapes) larger than the frame."""
    rng = np.random.default_rng(seed)
    h, w = HEIGHT + 2 * MARGIN, WIDTH + 2 * MARGIN
    base = rng.uniform(40, 110, 3).astype(np.float32)
    x = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img = base + 70 * x * rng.uniform(0, 1, 3).astype(np.float32) + 50 * y * rng.uniform(0, 1, 3).astype(np.float32)
    img = img + cv2.GaussianBlur(cv2.resize(rng.normal(0, 10, (h // 24, w // 24, 3)).astype(np.float32), (w, h)), (0, 0), 12)
    for _ in range(25):  # shapes: doors, windows, posters, so the background has edges like a room
        x1, y1 = int(rng.uniform(0, w)), int(rng.uniform(0, h))
        cv2.rectangle(img, (x1, y1), (x1 + int(rng.uniform(40, 300)), y1 + int(rng.uniform(40, 300))),
                      rng.uniform(20, 200, 3).tolist(), -1)
    img = cv2.GaussianBlur(img, (0, 0), 2.0)
    img += rng.normal(0, 1.5, img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.float32)


def render(scene: Scene, i: int, background: np.ndarray) -> tuple[np.ndarray, list[dict]]:
    """Frame ``i`` (BGR uint8, 1280x720) and its truth ``[{"box": xyxy, "who": name}, ...]``."""
    cam_x, cam_y = scene.camera(i)
    bx, by = int(round(MARGIN + cam_x)), int(round(MARGIN + cam_y))
    frame = background[by : by + HEIGHT, bx : bx + WIDTH].copy()
    if scene.shutter:
        a, b = scene.camera(i - scene.shutter / 2), scene.camera(i + scene.shutter / 2)
        kernel = _line_kernel(b[0] - a[0], b[1] - a[1])
        if kernel is not None:
            frame = cv2.filter2D(frame, -1, kernel, borderType=cv2.BORDER_REFLECT)
    drawn: list[tuple[str, np.ndarray, np.ndarray]] = []  # who, face box, coverage
    for walker in scene.walkers:
        pose = walker.at(i)
        if pose is None:
            continue
        cx, cy, fw = pose
        cx, cy = cx - cam_x, cy - cam_y
        actor = load_actor(walker.photo)
        k = fw / (actor.face[2] - actor.face[0])
        crop = cv2.resize(actor.crop, None, fx=k, fy=k, interpolation=cv2.INTER_AREA if k < 1 else cv2.INTER_LINEAR)
        alpha = cv2.resize(actor.alpha, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_AREA)
        face = actor.face * k
        if walker.mirror and walker.mirror[0] <= i < walker.mirror[1]:
            crop, alpha = crop[:, ::-1], alpha[:, ::-1]
            face = np.array([crop.shape[1] - face[2], face[1], crop.shape[1] - face[0], face[3]], np.float32)
        premult = crop.astype(np.float32) * (walker.shade * alpha[:, :, None])
        alpha = np.ascontiguousarray(alpha)
        if scene.shutter:
            p0, p1 = walker.at(i - scene.shutter / 2), walker.at(i + scene.shutter / 2)
            c0, c1 = scene.camera(i - scene.shutter / 2), scene.camera(i + scene.shutter / 2)
            if p0 and p1:
                kernel = _line_kernel(p1[0] - p0[0] - (c1[0] - c0[0]), p1[1] - p0[1] - (c1[1] - c0[1]))
                if kernel is not None:
                    pad = kernel.shape[0] // 2 + 1
                    premult = cv2.copyMakeBorder(premult, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
                    alpha = cv2.copyMakeBorder(alpha, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
                    premult, alpha = cv2.filter2D(premult, -1, kernel), cv2.filter2D(alpha, -1, kernel)
                    face = face + pad
        ox = int(round(cx - (face[0] + face[2]) / 2))
        oy = int(round(cy - (face[1] + face[3]) / 2))
        x1, y1 = max(0, ox), max(0, oy)
        x2, y2 = min(WIDTH, ox + alpha.shape[1]), min(HEIGHT, oy + alpha.shape[0])
        box = np.array([face[0] + ox, face[1] + oy, face[2] + ox, face[3] + oy], np.float32)
        cover = np.zeros((HEIGHT, WIDTH), bool)
        if x2 > x1 and y2 > y1:
            a = alpha[y1 - oy : y2 - oy, x1 - ox : x2 - ox, None]
            frame[y1:y2, x1:x2] = frame[y1:y2, x1:x2] * (1 - a) + premult[y1 - oy : y2 - oy, x1 - ox : x2 - ox]
            cover[y1:y2, x1:x2] = a[:, :, 0] > 0.5
            for _, _, earlier in drawn:
                earlier &= ~cover
        drawn.append((walker.who, box, cover))
    for occ in scene.occluders:
        if i < occ.t[0] or i > occ.t[-1]:
            continue
        cx = float(np.interp(i, occ.t, occ.x))
        x1, x2 = max(0, int(cx - occ.width / 2)), min(WIDTH, int(cx + occ.width / 2))
        y1, y2 = max(0, int(occ.top)), min(HEIGHT, int(occ.bottom))
        if x2 <= x1 or y2 <= y1:
            continue
        rng = np.random.default_rng(hash((scene.seed, occ.colour)) & 0xFFFF)
        panel = np.empty((y2 - y1, x2 - x1, 3), np.float32)
        panel[:] = occ.colour
        # Vertical grain (wood, fabric folds) so the panel has texture of its own.
        grain = cv2.resize(rng.normal(0, 18, (1, max(2, (x2 - x1) // 3))).astype(np.float32), (x2 - x1, y2 - y1))
        panel += grain[:, :, None]
        frame[y1:y2, x1:x2] = panel
        for _, _, earlier in drawn:
            earlier[y1:y2, x1:x2] = False
    if scene.gain is not None:
        frame *= scene.gain(i)
    if scene.noise:
        rng = np.random.default_rng((scene.seed, i))
        frame += rng.normal(0, scene.noise, frame.shape).astype(np.float32)
    truth = []
    for who, box, cover in drawn:
        x1, y1 = max(0, int(box[0])), max(0, int(box[1]))
        x2, y2 = min(WIDTH, int(math.ceil(box[2]))), min(HEIGHT, int(math.ceil(box[3])))
        full = float((box[2] - box[0]) * (box[3] - box[1]))
        visible = float(cover[y1:y2, x1:x2].sum()) if x2 > x1 and y2 > y1 else 0.0
        if visible >= 0.4 * full:
            truth.append({"box": [float(x1), float(y1), float(x2), float(y2)], "who": who})
    return np.clip(frame, 0, 255).astype(np.uint8), truth


# ----- the six cases ----------------------------------------------------------------------


def _cast(cast: CastSet, count: int, rng: np.random.Generator) -> list[tuple[str, str]]:
    """``count`` other people; once the set's photos are used up, repeats get names like ``kit.2``."""
    people = list(cast.others)
    rng.shuffle(people)
    out = []
    for n in range(count):
        who, photo = people[n % len(people)]
        out.append((who if n < len(people) else f"{who}.{n // len(people) + 1}", photo))
    return out


def _lanes(count: int, rng: np.random.Generator, top: float = 130, bottom: float = 590) -> list[float]:
    """``count`` heights, evenly spaced and shuffled: walkers on their own lanes pass without hiding each other."""
    lanes = list(np.linspace(top, bottom, count) + rng.uniform(-12, 12, count))
    rng.shuffle(lanes)
    return [float(v) for v in lanes]


def _walk(who: str, photo: str, rng: np.random.Generator, frames: int, size: tuple[float, float],
          *, lane: float, enter: float = 0, leave: float | None = None) -> Walker:
    """A person crossing the frame left-right or right-left along ``lane``, growing or shrinking."""
    leave = frames - 1 if leave is None else leave
    left = rng.random() < 0.5
    x0, x1 = rng.uniform(60, 400), rng.uniform(880, 1220)
    if not left:
        x0, x1 = x1, x0
    y0, y1 = lane + rng.uniform(-15, 15), lane + rng.uniform(-15, 15)
    w0, w1 = rng.uniform(*size), rng.uniform(*size)
    mid = rng.uniform(enter + 0.3 * (leave - enter), enter + 0.7 * (leave - enter))
    turn = int(rng.uniform(enter, leave - 20))
    return Walker(who, photo, [enter, mid, leave], [x0, (x0 + x1) / 2 + rng.uniform(-80, 80), x1],
                  [y0, (y0 + y1) / 2 + rng.uniform(-15, 15), y1], [w0, (w0 + w1) / 2, w1],
                  mirror=(turn, turn + int(rng.uniform(10, 30))), shade=float(rng.uniform(0.85, 1.1)))


def scene_small(cast: CastSet, seed: int) -> Scene:
    """Faces 20-60 px wide walking, crossing; one walks towards the camera (24 -> 60 px)."""
    rng = np.random.default_rng([seed, 0])
    n = 180
    lanes = _lanes(5, rng)
    walkers = [_walk(cast.target, cast.target_photo, rng, n, (22, 40), lane=lanes[0])]
    for (who, photo), lane in zip(_cast(cast, 4, rng), lanes[1:]):
        walkers.append(_walk(who, photo, rng, n, (20, 60), lane=lane))
    walkers[1].w = [24, 40, 60]  # walks towards the camera
    walkers[2].w = [20, 21, 20]  # the smallest face the case promises
    rng.shuffle(walkers)
    return Scene("small", n, walkers, seed=seed)


def scene_crowd(cast: CastSet, seed: int) -> Scene:
    """An audience: three rows (16-26, 28-45, 50-80 px), swaying; the camera pans slowly."""
    rng = np.random.default_rng([seed, 1])
    n = 150
    rows = [(5, (16, 26), 200), (5, (28, 45), 330), (4, (50, 80), 510)]
    people = _cast(cast, sum(r[0] for r in rows) - 1, rng)
    slot = int(rng.integers(0, len(people) + 1))
    people.insert(slot, (cast.target, cast.target_photo))
    walkers, k = [], 0
    for count, size, y in rows:  # back row first, so the front row is drawn over it
        xs = np.linspace(150, 1130, count) + rng.uniform(-40, 40, count)
        widths = rng.permutation(np.linspace(*size, count))  # each row spans its whole size range
        for x, w in zip(xs, widths):
            who, photo = people[k]
            k += 1
            w = float(w)
            yy = y + rng.uniform(-20, 20)
            walkers.append(Walker(who, photo, [0, n - 1], [x, x + rng.uniform(-30, 30)], [yy, yy], [w, w],
                                  mirror=(int(rng.uniform(0, n)), n) if rng.random() < 0.3 else None,
                                  shade=float(rng.uniform(0.8, 1.1)),
                                  sway=(float(rng.uniform(2, 8)), float(rng.uniform(40, 90)), float(rng.uniform(0, 6.3)))))
    pan = rng.choice([-1, 1]) * rng.uniform(120, 200)
    return Scene("crowd", n, walkers, camera=lambda i: (pan * i / (n - 1) - pan / 2, 0.0), seed=seed)


def scene_blur(cast: CastSet, seed: int) -> Scene:
    """Fast walkers (20-35 px per frame) and a whip pan mid-clip, exposed for half a frame."""
    rng = np.random.default_rng([seed, 2])
    n = 150
    walkers = []
    people = [(cast.target, cast.target_photo)] + _cast(cast, 3, rng)
    for (who, photo), y in zip(people, _lanes(len(people), rng, 120, 600)):
        w = float(rng.uniform(50, 110))
        start = float(rng.uniform(0, 40))
        speed = float(rng.uniform(25, 40)) * rng.choice([-1, 1])
        # Run across, stop, run back: sharp frames between the blurred ones.
        span = 1000 / abs(speed)
        x0 = 140.0 if speed > 0 else 1140.0
        x1 = x0 + math.copysign(1000, speed)
        t = [0, start, start + span, start + span + 20, start + 2 * span + 20, n - 1]
        walkers.append(Walker(who, photo, t, [x0, x0, x1, x1, x0, x0], [y] * 6, [w, w, w * 1.1, w * 1.1, w, w],
                              shade=float(rng.uniform(0.9, 1.1))))
    t0 = float(rng.uniform(50, 90))
    swing = float(rng.choice([-1, 1]) * rng.uniform(250, 380))

    def camera(i: float) -> tuple[float, float]:
        # A whip pan over 12 frames (peak ~45 px/frame) and back 30 frames later.
        s = np.clip((i - t0) / 12, 0, 1) - np.clip((i - t0 - 42) / 12, 0, 1)
        s = 0.5 - 0.5 * math.cos(math.pi * s)
        return swing * s, 0.06 * swing * s

    return Scene("blur", n, walkers, camera=camera, shutter=0.5, seed=seed)


def scene_dim(cast: CastSet, seed: int) -> Scene:
    """Low light: gain 0.35 falling to 0.15 and back, sensor noise sigma 5."""
    rng = np.random.default_rng([seed, 3])
    n = 150
    lanes = _lanes(4, rng)
    walkers = [_walk(cast.target, cast.target_photo, rng, n, (40, 90), lane=lanes[0])]
    walkers += [_walk(who, photo, rng, n, (35, 90), lane=lane) for (who, photo), lane in zip(_cast(cast, 3, rng), lanes[1:])]
    rng.shuffle(walkers)
    low = float(rng.uniform(0.13, 0.18))
    return Scene("dim", n, walkers, gain=lambda i: 0.35 - (0.35 - low) * math.sin(math.pi * i / (n - 1)),
                 noise=5.0, seed=seed)


def scene_occluder(cast: CastSet, seed: int) -> Scene:
    """A pillar the target walks behind, and a passer-by's coat crossing in the foreground."""
    rng = np.random.default_rng([seed, 4])
    n = 150
    lanes = _lanes(4, rng)
    target = _walk(cast.target, cast.target_photo, rng, n, (60, 85), lane=lanes[0])
    walkers = [target] + [_walk(who, photo, rng, n, (40, 90), lane=lane)
                          for (who, photo), lane in zip(_cast(cast, 3, rng), lanes[1:])]
    # Pillar where the target is around a third of the way through.
    t_hide = float(rng.uniform(0.25, 0.4) * n)
    px = target.at(t_hide)[0]
    pillar = Occluder([0, n - 1], [px, px], float(rng.uniform(90, 130)), 0, HEIGHT, (70, 90, 110))
    # A coat crossing the frame fast, in front of the target around two thirds of the way.
    t_coat = float(rng.uniform(0.6, 0.75) * n)
    cx = target.at(t_coat)[0]
    direction = rng.choice([-1, 1])
    coat = Occluder([t_coat - 25, t_coat + 25], [cx - direction * 700, cx + direction * 700],
                    float(rng.uniform(180, 260)), 120, HEIGHT, (40, 40, 50))
    return Scene("occluder", n, walkers, occluders=[pillar, coat], seed=seed)


def scene_edges(cast: CastSet, seed: int) -> Scene:
    """Faces entering and leaving at the left, right, top and bottom edges."""
    rng = np.random.default_rng([seed, 5])
    n = 180
    people = [(cast.target, cast.target_photo)] + _cast(cast, 4, rng)
    walkers = []
    sides = ["left", "right", "top", "bottom", "right"]
    rng.shuffle(sides)
    # Each person stops in a column of their own, on a lane of their own: paths cross only on the way in and out.
    columns = rng.permutation(np.linspace(150, 1130, len(people)))
    lanes = _lanes(len(people), rng, 140, 580)
    for (who, photo), side, x, y in zip(people, sides, columns, lanes):
        w = float(rng.uniform(40, 100))
        out = w * 1.2  # centre this far beyond the edge: the face is fully out of frame
        t_in, t_out = float(rng.uniform(0, 50)), float(rng.uniform(110, n - 1))
        stay = float(rng.uniform(0.3, 0.5))
        if side in ("left", "right"):
            edge = -out if side == "left" else WIDTH + out
            xs, ys = [edge, x, x, edge], [y, y, y + rng.uniform(-20, 20), y]
        else:
            edge = -out if side == "top" else HEIGHT + out
            xs, ys = [x, x, x + rng.uniform(-40, 40), x], [edge, y, y, edge]
        mid = (t_in + t_out) / 2
        ts = [t_in, mid - stay * (mid - t_in), mid + stay * (t_out - mid), t_out]
        walkers.append(Walker(who, photo, ts, xs, ys, [w, w, w * 1.05, w], shade=float(rng.uniform(0.9, 1.1))))
    return Scene("edges", n, walkers, seed=seed)


SCENES: dict[str, Callable[[CastSet, int], Scene]] = {
    "small": scene_small, "crowd": scene_crowd, "blur": scene_blur,
    "dim": scene_dim, "occluder": scene_occluder, "edges": scene_edges,
}


# ----- writing -----------------------------------------------------------------------------


def write_case(scene: Scene, path: Path, *, crf: int = 18) -> list[list[dict]]:
    """Encode the scene as H.264 (yuv420p) + AAC tone at ``path``; return per-frame truth."""
    background = _background(scene.seed * 7 + 3)
    truth: list[list[dict]] = []
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"crf": str(crf), "preset": "veryfast"}
        audio = out.add_stream("aac", rate=44100)
        audio.layout = "mono"
        for i in range(scene.frames):
            image, faces = render(scene, i, background)
            truth.append(faces)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        total = int(44100 * scene.frames / FPS)
        for start in range(0, total, 1024):
            t = np.arange(start, min(total, start + 1024)) / 44100
            a = av.AudioFrame.from_ndarray((0.2 * np.sin(2 * np.pi * 330 * t)).astype(np.float32)[None],
                                           format="fltp", layout="mono")
            a.sample_rate, a.pts, a.time_base = 44100, start, Fraction(1, 44100)
            out.mux(audio.encode(a))
        out.mux(audio.encode())
    return truth


@dataclass
class Generated:
    """A case on disk: the clip, its truth, and whom to look for."""

    case: str
    set: str
    seed: int
    clip: Path
    truth: list[list[dict]]
    target: str
    reference: Path | None  # None: the astronaut (made into a PNG beside the clip)
    people: list[str]


def generate(case: str, set_name: str, seed: int, out_dir: Path, media: Path = SHARED) -> Generated:
    """Make (or reuse, when made by this VERSION) the clip and truth for one case and seed."""
    cast = SETS[set_name]
    out_dir.mkdir(parents=True, exist_ok=True)
    clip = out_dir / f"{case}-{set_name}-{seed}.mp4"
    meta = clip.with_suffix(".json")
    reference = photo_path(cast.reference, media)
    if clip.is_file() and meta.is_file():
        data = json.loads(meta.read_text())
        if data.get("version") == VERSION:
            return Generated(case, set_name, seed, clip, data["frames"], cast.target, reference, data["people"])
    scene = SCENES[case](cast, seed)
    truth = write_case(scene, clip)
    people = sorted({w.who for w in scene.walkers})
    meta.write_text(json.dumps({"version": VERSION, "case": case, "set": set_name, "seed": seed,
                                "target": cast.target, "reference": str(reference), "people": people,
                                "frames": truth}))
    return Generated(case, set_name, seed, clip, truth, cast.target, reference, people)


def parse_seeds(spec: str) -> list[tuple[str, int]]:
    """``tuning``, ``heldout``, ``all``, or ``SET:SEED`` items, comma-separated -> [(set, seed)]."""
    out: list[tuple[str, int]] = []
    for item in spec.split(","):
        item = item.strip()
        if item == "all":
            out += [(s, seed) for s in SETS for seed in SETS[s].seeds]
        elif item in SETS:
            out += [(item, seed) for seed in SETS[item].seeds]
        elif ":" in item and item.split(":")[0] in SETS and item.split(":")[1].isdigit():
            out.append((item.split(":")[0], int(item.split(":")[1])))
        else:
            raise ValueError(f"bad seed set {item!r}: use tuning, heldout, all or SET:SEED (e.g. heldout:7)")
    return out


def contact_sheet(path: Path, media: Path = SHARED) -> None:
    """Every actor on one image, face box drawn: to check the crops by eye."""
    tiles = []
    for key in PHOTOS:
        actor = load_actor(key, media)
        bg = np.full(actor.crop.shape, 128, np.float32)
        tile = (bg * (1 - actor.alpha[:, :, None]) + actor.crop * actor.alpha[:, :, None]).astype(np.uint8)
        x1, y1, x2, y2 = actor.face.astype(int)
        cv2.rectangle(tile, (x1, y1), (x2, y2), (0, 255, 0), 2)
        tile = cv2.resize(tile, (int(tile.shape[1] * 300 / tile.shape[0]), 300))
        cv2.putText(tile, key, (4, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 255), 1)
        tiles.append(tile)
    rows, row, width = [], [], 0
    for tile in tiles:
        if width + tile.shape[1] > 1500 and row:
            rows.append(row)
            row, width = [], 0
        row.append(tile)
        width += tile.shape[1]
    rows.append(row)
    full = max(sum(t.shape[1] for t in r) for r in rows)
    cv2.imwrite(str(path), np.vstack([np.hstack(r + [np.zeros((300, full - sum(t.shape[1] for t in r), 3), np.uint8)])
                                      for r in rows]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES)}")
    p.add_argument("--seeds", default="tuning", help="tuning, heldout, all, or SET:SEED items (default tuning)")
    p.add_argument("--out", default=str(REPO / "bench_out" / "cases"), help="folder for clips and truth (git-ignored)")
    p.add_argument("--sheet", metavar="PNG", help="also write a contact sheet of the cut-out heads")
    p.add_argument("--preview", action="store_true", help="also write a PNG of frames with truth boxes per case")
    args = p.parse_args()
    out = Path(args.out)
    if args.sheet:
        contact_sheet(Path(args.sheet))
    for case in args.cases.split(","):
        for set_name, seed in parse_seeds(args.seeds):
            g = generate(case, set_name, seed, out)
            faces = sum(len(f) for f in g.truth)
            sizes = [f["box"][2] - f["box"][0] for fr in g.truth for f in fr]
            print(f"{g.clip}: {len(g.truth)} frames, {faces} truth faces "
                  f"({min(sizes):.0f}-{max(sizes):.0f} px wide), target {g.target} in "
                  f"{sum(any(f['who'] == g.target for f in fr) for fr in g.truth)} frames")
            if args.preview:
                _preview(g)


def _preview(g: Generated) -> None:
    """Four frames side by side, truth boxes drawn (target red), to look at a case."""
    import sys

    sys.path.insert(0, str(REPO))
    from blurface import media

    picks = set(np.linspace(0, len(g.truth) - 1, 4).astype(int).tolist())
    tiles = []
    for frame in media.iter_frames(media.probe(g.clip)):
        if frame.index in picks:
            image = frame.image.copy()
            for f in g.truth[frame.index]:
                x1, y1, x2, y2 = (int(v) for v in f["box"])
                cv2.rectangle(image, (x1, y1), (x2, y2), (0, 0, 255) if f["who"] == g.target else (0, 255, 0), 1)
            tiles.append(cv2.resize(image, (640, 360)))
    grid = np.vstack([np.hstack(tiles[:2]), np.hstack(tiles[2:4])])
    cv2.imwrite(str(g.clip.with_suffix(".preview.png")), grid)


if __name__ == "__main__":
    main()
