"""Pictures for reviewers: decision overlays on frames, and the contact sheet of tracks.

Pure drawing on ``(H, W, 3) uint8`` BGR arrays, from a :class:`~blurface.plan.Plan`'s
tracks; no decoding or encoding here (:mod:`blurface.review` does that).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from .plan import Plan

from .decisions import who
from .types import SOURCE_DETECTED, Track

# Outline colours (BGR), one per kind of decision. Saturated primaries survive x264's
# 4:2:0 chroma well enough to be found again by tests; the label text is white on black
# so that the outline is the only coloured thing drawn.
MASKED = (0, 0, 255)  # red: masked (the target, or --keep/--all masking a stranger)
KEPT = (0, 255, 0)  # green: left visible
UNSURE = (0, 255, 255)  # yellow: in the unsure band (masked or not, per --unsure)
OUTLINE_COLOURS = {"masked": MASKED, "kept": KEPT, "unsure": UNSURE}

_FONT = cv2.FONT_HERSHEY_SIMPLEX


def category(track: Track) -> str:
    """``masked``, ``kept`` or ``unsure``: what the overlay colour and the contact sheet say."""
    if track.decision == "unsure":
        return "unsure"
    return "masked" if track.masked else "kept"


@dataclass(frozen=True)
class FrameBox:
    """One track's box on one frame, for drawing."""

    track: Track
    box: np.ndarray  # (4,) float32 xyxy, full-frame pixels
    source: int


def iter_frame_boxes(plan: Plan, first: int = 0, last: int | None = None) -> Iterator[tuple[int, list[FrameBox]]]:
    """``(frame index, boxes of every track on it)`` for frames ``first..last``, masked or not.

    Sweeps tracks sorted by first frame, holding only the live ones (memory does not grow with length).
    """
    for i, rows in plan.iter_rows(first, last):
        yield i, [FrameBox(t, t.xyxy[row], int(t.source[row])) for t, row in rows]


def label(track: Track) -> str:
    """``#20 other (nearest lin 1.30) kept``: a stranger is never labelled with a reference's name alone."""
    name, detail = who(track)
    return f"#{track.id} {name}{f' ({detail})' if detail else ''} {'masked' if track.masked else 'kept'}"


def _text(image: np.ndarray, text: str, org: tuple[int, int], scale: float) -> None:
    """White text on a black box whose top-left corner is ``org`` (clamped into the picture)."""
    thickness = max(1, round(scale * 2))
    (w, h), base = cv2.getTextSize(text, _FONT, scale, thickness)
    x = int(min(max(0, org[0]), max(0, image.shape[1] - w - 4)))
    y = int(min(max(0, org[1]), max(0, image.shape[0] - h - base - 4)))
    cv2.rectangle(image, (x, y), (x + w + 4, y + h + base + 4), (0, 0, 0), -1)
    cv2.putText(image, text, (x + 2, y + h + 2), _FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA)


def draw_overlay(image: np.ndarray, boxes: list[FrameBox], *, scale: float, time: float, index: int) -> np.ndarray:
    """Draw each box's outline (colour by :func:`category`), its label and the frame time, in place.

    Args:
        image: ``(H, W, 3) uint8`` BGR, the frame scaled by ``scale`` from full size.
        boxes: from :func:`iter_frame_boxes` (full-frame coordinates).
        scale: ``image`` size / full frame size.
        time: the frame's presentation time, s; ``index``: its frame number.

    Returns:
        ``image``.
    """
    h = image.shape[0]
    thickness = max(2, round(h / 180))  # 3 px at 540p: wide enough to keep its colour through 4:2:0
    font = max(0.35, h / 1200)
    for fb in boxes:
        x1, y1, x2, y2 = (np.asarray(fb.box, np.float64) * scale).round().astype(int)
        cv2.rectangle(image, (x1, y1), (x2, y2), OUTLINE_COLOURS[category(fb.track)], thickness)
        (_, th), base = cv2.getTextSize("Ag", _FONT, font, 1)
        above = y1 - thickness - th - base - 6
        _text(image, label(fb.track), (x1, above if above >= 0 else y2 + thickness + 2), font)
    _text(image, f"{_clock(time)}  frame {index}", (4, 4), font)
    return image


def _clock(seconds: float) -> str:
    m, s = divmod(max(0.0, seconds), 60)
    return f"{int(m)}:{s:06.3f}"


# --------------------------------------------------------------------------- contact sheet

TILE = 112  # crop tile side, px
PANEL = 300  # text panel width, px
HEADER = 34  # header height, px


def sheet_frames(track: Track, per_track: int) -> list[int]:
    """Up to ``per_track`` frames spread over the track's life, detected frames preferred."""
    candidates = track.frames[track.source == SOURCE_DETECTED]
    if len(candidates) == 0:
        candidates = track.frames
    picks = np.linspace(0, len(candidates) - 1, min(per_track, len(candidates))).round().astype(int)
    return sorted({int(candidates[i]) for i in picks})


def face_tile(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """``(TILE, TILE, 3)`` BGR: the face plus 30% margin, letterboxed on grey. Not masked."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = box
    mx, my = 0.3 * (x2 - x1), 0.3 * (y2 - y1)
    cx1, cy1 = int(max(0, x1 - mx)), int(max(0, y1 - my))
    cx2, cy2 = int(min(w, np.ceil(x2 + mx))), int(min(h, np.ceil(y2 + my)))
    tile = np.full((TILE, TILE, 3), 48, np.uint8)
    if cx2 - cx1 < 1 or cy2 - cy1 < 1:
        return tile
    crop = image[cy1:cy2, cx1:cx2]
    f = TILE / max(crop.shape[:2])
    cw, ch = max(1, round(crop.shape[1] * f)), max(1, round(crop.shape[0] * f))
    small = cv2.resize(crop, (cw, ch), interpolation=cv2.INTER_AREA if f < 1 else cv2.INTER_LINEAR)
    ox, oy = (TILE - cw) // 2, (TILE - ch) // 2
    tile[oy : oy + ch, ox : ox + cw] = small
    return tile


def sheet_row(track: Track, tiles: list[np.ndarray], times: np.ndarray, per_track: int) -> np.ndarray:
    """One row: a text panel (id, identity, distance, decision, time range) and the crops."""
    row = np.full((TILE + 8, PANEL + per_track * (TILE + 4) + 4, 3), 250, np.uint8)
    cv2.rectangle(row, (0, 0), (6, row.shape[0] - 1), OUTLINE_COLOURS[category(track)], -1)
    start, end = float(times[min(track.first, len(times) - 1)]), float(times[min(track.last, len(times) - 1)])
    lines = [
        f"track #{track.id}: {who(track)[0]}",
        who(track)[1] or "no reference compared",
        f"{track.decision}: {'MASKED' if track.masked else 'kept'}",
        f"{_clock(start)} - {_clock(end)}",
        f"frames {track.first}-{track.last}",
    ]
    for k, text in enumerate(lines):
        cv2.putText(row, text, (14, 22 + 21 * k), _FONT, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for k, tile in enumerate(tiles):
        x = PANEL + k * (TILE + 4)
        row[4 : 4 + TILE, x : x + TILE] = tile
    return row


def sheet_header(title: str, width: int) -> np.ndarray:
    header = np.full((HEADER, width, 3), 32, np.uint8)
    cv2.putText(header, title, (10, 22), _FONT, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return header
