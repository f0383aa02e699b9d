"""Judge from pixels whether faces were masked: leak, longest leak run and collateral.

Used by ``benchmarks/accuracy.py`` and the end-to-end tests. It never reads a
plan or a log: a box counts as masked only if the output's pixels there lost
their detail or changed a lot compared with the input.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from . import media

# A masked face keeps under a tenth of its detail; an x264 re-encode at our CRF keeps
# most of it (measured ratios: masked < 0.1, unmasked > 0.6). 0.35 sits between them.
# Chosen on the astronaut test clips and the hamilton clip; tests/test_people.py judges
# clips of other people (Hopper, Obama, Biden, Kit) with it.
DETAIL_RATIO_MASKED = 0.35
# Or the pixels changed a lot on average (a solid mask over a flat face keeps "detail" ~0).
MEAN_DIFF_MASKED = 18.0


def _inner(image: np.ndarray, box: list[float] | np.ndarray, keep: float = 0.7) -> np.ndarray:
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = (x2 - x1) * (1 - keep) / 2, (y2 - y1) * (1 - keep) / 2
    a, b = max(0, int(x1 + mx)), max(0, int(y1 + my))
    c, d = min(w, int(x2 - mx)), min(h, int(y2 - my))
    return image[b:d, a:c]


def _detail(region: np.ndarray) -> float:
    gray = cv2.cvtColor(region, cv2.COLOR_BGR2GRAY)
    return float(cv2.Laplacian(gray, cv2.CV_32F).var())


# Detail at or below x264's own noise (measured 3-6 in dim, flat cells of the
# hamilton audience) cannot show a drop; such a cell is hidden if it stays that flat.
# Chosen on the hamilton clip's audience (aud_b, Michelle).
FLAT_DETAIL = 6.0


def _cell_hidden(a: np.ndarray, b: np.ndarray) -> bool:
    if float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean()) > MEAN_DIFF_MASKED:
        return True
    # A masked cell keeps the encoder's own noise, so detail at or below FLAT_DETAIL is
    # hidden whatever the cell held before: a dim face with 2x the noise floor (detail
    # 11-14 in the hamilton audience) cannot lose 65% of it and still read as masked.
    after = _detail(b)
    return after <= FLAT_DETAIL or after / max(_detail(a), 1e-6) < DETAIL_RATIO_MASKED


def box_is_masked(original: np.ndarray, output: np.ndarray, box: list[float] | np.ndarray) -> bool:
    """Whether the face at ``box`` (xyxy) of BGR ``original`` is hidden in BGR ``output``.

    The face's inner part is cut into a 3x3 grid; it counts as masked when at least
    7 of the 9 cells lost their detail or changed a lot. So a face merely clipped by
    a neighbour's mask is not "masked", and a target with an eye showing is a leak.
    """
    a, b = _inner(original, box), _inner(output, box)
    if a.shape[0] < 3 or a.shape[1] < 3 or a.shape != b.shape:
        return False
    ys = np.linspace(0, a.shape[0], 4).astype(int)
    xs = np.linspace(0, a.shape[1], 4).astype(int)
    hidden = sum(
        _cell_hidden(a[ys[r] : ys[r + 1], xs[c] : xs[c + 1]], b[ys[r] : ys[r + 1], xs[c] : xs[c + 1]])
        for r in range(3)
        for c in range(3)
    )
    return hidden >= 7


@dataclass
class Accuracy:
    """Per-person counts of visible frames and masked frames, from pixels."""

    targets: list[str]
    visible: dict[str, int] = field(default_factory=dict)
    masked: dict[str, int] = field(default_factory=dict)
    leaked_frames: list[int] = field(default_factory=list)
    collateral_frames: list[int] = field(default_factory=list)
    other_visible_frames: int = 0

    @property
    def target_visible(self) -> int:
        return sum(self.visible.get(t, 0) for t in self.targets)

    @property
    def leak_rate(self) -> float:
        return len(self.leaked_frames) / max(1, self.target_visible)

    @property
    def longest_leak_run(self) -> int:
        longest = run = 0
        previous = None
        for f in sorted(self.leaked_frames):
            run = run + 1 if previous is not None and f == previous + 1 else 1
            longest = max(longest, run)
            previous = f
        return longest

    @property
    def collateral_rate(self) -> float:
        return len(self.collateral_frames) / max(1, self.other_visible_frames)

    def summary(self) -> dict:
        return {
            "targets": self.targets,
            "target_visible_frames": self.target_visible,
            "leaked_frames": len(self.leaked_frames),
            "leak_rate": round(self.leak_rate, 4),
            "longest_leak_run": self.longest_leak_run,
            "other_visible_frames": self.other_visible_frames,
            "collateral_frames": len(self.collateral_frames),
            "collateral_rate": round(self.collateral_rate, 4),
            "masked_by_person": {k: f"{self.masked.get(k, 0)}/{v}" for k, v in sorted(self.visible.items())},
        }


def load_truth(path: str | os.PathLike) -> list[list[dict]]:
    """Per-frame truth: ``[[{"box": [x1, y1, x2, y2], "who": name}, ...], ...]``."""
    data = json.loads(Path(path).read_text())
    return data["frames"] if isinstance(data, dict) else data


def score(original: str | os.PathLike, output: str | os.PathLike, truth: list[list[dict]], targets: list[str]) -> Accuracy:
    """Compare ``output`` with ``original`` frame by frame at the truth boxes.

    A target-visible frame leaks when any target box in it is not masked. A frame
    with other people counts as collateral when any non-target box in it is masked.
    """
    acc = Accuracy(targets=list(targets))
    a_info, b_info = media.probe(original), media.probe(output)
    frames_a, frames_b = media.iter_frames(a_info), media.iter_frames(b_info)
    for fa, fb in zip(frames_a, frames_b):
        if fa.index >= len(truth):
            break
        target_leak = collateral = False
        others = False
        for face in truth[fa.index]:
            who = face["who"]
            masked = box_is_masked(fa.image, fb.image, face["box"])
            acc.visible[who] = acc.visible.get(who, 0) + 1
            acc.masked[who] = acc.masked.get(who, 0) + int(masked)
            if who in targets:
                target_leak |= not masked
            else:
                others = True
                collateral |= masked
        if target_leak:
            acc.leaked_frames.append(fa.index)
        if others:
            acc.other_visible_frames += 1
            if collateral:
                acc.collateral_frames.append(fa.index)
    return acc
