"""What editors and reviewers look at, made from a plan: previews, excerpts, mattes, contact sheets.

Everything here reads a :class:`~blurface.plan.Plan`; with a saved plan nothing is
detected again, so a preview shows exactly what the render will mask. Without one,
:func:`analyse_range` analyses only the requested range plus :data:`ANALYSIS_MARGIN`.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import time as _time
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import cv2
import numpy as np

from . import media, overlay
from .files import make_temp_dir, write_atomically
from .mask import Masker, Solid
from .analysis import make_plan
from .rendering import RenderSettings, check_same_video
from .plan import Plan
from .decisions import decision_counts
from .types import InputError, OutputError, Progress, Result, Track, VideoInfo

log = logging.getLogger(__name__)


# Seconds analysed before and after a range when there is no plan. A track's identity is
# decided from its best crops over its whole life: a face that was turned away during the
# range but clear a few seconds before is recognised from those seconds. Faces seen longer
# than this outside the range are judged on what the margin holds; a full analysis
# (``--plan``) decides on everything.
ANALYSIS_MARGIN = 5.0

# Proxy encoding: fast to make and small; its pictures are for looking, not delivery.
PREVIEW_HEIGHT = 540
PREVIEW_ENCODE = media.EncodeSettings(crf=23, preset="veryfast")


def parse_time(text: str, option: str = "--from") -> float:
    """``"80"``, ``"1:20"``, ``"1:20.5"`` or ``"0:01:20"`` as seconds.

    Raises:
        InputError: not such a time.
    """
    parts = text.strip().split(":")
    if not 1 <= len(parts) <= 3 or not all(re.fullmatch(r"\d+", p) for p in parts[:-1]) or not re.fullmatch(
        r"\d+(\.\d*)?|\.\d+", parts[-1]
    ):
        raise InputError(f"{option} {text!r} is not a time: write seconds (80, 80.5) or minutes:seconds (1:20)")
    seconds = 0.0
    for part in parts:
        seconds = seconds * 60 + float(part)
    return seconds


def frame_range(plan: Plan, start: float | None, end: float | None) -> tuple[int, int]:
    """First and last frame whose time is in ``[start, end)`` (``None``: the video's start or end).

    Raises:
        InputError: the range holds no frame.
    """
    return _frames_in(plan.times, start, end, plan.video.path)


def _frames_in(times: np.ndarray, start: float | None, end: float | None, path: str) -> tuple[int, int]:
    lo = -np.inf if start is None else start
    hi = np.inf if end is None else end
    inside = np.flatnonzero((times >= lo - 1e-6) & (times < hi - 1e-6))
    if len(inside) == 0:
        span = f"{times[0]:.3f} s to {times[-1]:.3f} s" if len(times) else "no frames"
        raise InputError(
            f"--from/--to select no frame of {path}: its frames run from {span}; give a range inside it"
        )
    return int(inside[0]), int(inside[-1])


def expect(progress: Progress | None, stage: str, total: int) -> None:
    """Tell ``progress`` how many steps ``stage`` will take, where it can show it (the CLI's bars).

    Only this module knows some totals (a range's frames, the copy an analysis reads), so
    it announces them; a plain ``(stage, n)`` callable has no ``expect`` and is left alone.
    """
    announce = getattr(progress, "expect", None)
    if announce is not None:
        announce(stage, total)


# --------------------------------------------------------------------------- analysis of a range


def analyse_range(
    src: str | os.PathLike,
    start: float | None,
    end: float | None,
    *,
    margin: float = ANALYSIS_MARGIN,
    progress: Progress | None = None,
    info: VideoInfo | None = None,
    times: np.ndarray | None = None,
    **plan_options: object,
) -> Plan:
    """Analyse ``[start - margin, end + margin)`` of ``src``; a plan numbered like a full analysis.

    The range is copied packet for packet (no re-encoding, so the frames are the
    source's own) into a temporary file, which :func:`~blurface.analysis.make_plan`
    analyses; its tracks are then renumbered to the source's frames. The temporary
    file holds unmasked video: it lives in a private folder of the system temp folder
    and is removed (by a later run, should this one be killed: :func:`~blurface.files.make_temp_dir`).

    Args:
        info, times: ``src``'s probe and frame times, when the caller has them.
        plan_options: ``targets``, ``keep``, ``all_faces``, ``tolerance``, ... of ``make_plan``.
    """
    info = info if info is not None else media.probe(src)
    times = times if times is not None else media.frame_times(info)
    _frames_in(times, start, end, info.path)  # refuse an empty range before the analysis
    lo = times[0] if start is None else max(times[0], start - margin)
    hi = times[-1] + 1 if end is None else end + margin
    folder = make_temp_dir("range")  # removed below, or by a later run should this one be killed
    try:
        part = folder / "range.mkv"
        media.copy_video_range(info, part, lo, hi)
        part_info = media.probe(part)
        expect(progress, "analyse", part_info.frame_count)
        sub = make_plan(part, progress=progress, info=part_info, **plan_options)  # type: ignore[arg-type]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    # Matroska keeps milliseconds: match each frame to the nearest source time.
    index = np.searchsorted(times, sub.times)
    index = np.clip(index, 1, len(times) - 1)
    nearer_left = np.abs(times[index - 1] - sub.times) <= np.abs(times[index] - sub.times)
    index = np.where(nearer_left, index - 1, index)
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    matched = np.abs(times[index] - sub.times) < 0.5 * step
    tracks = []
    for t in sub.tracks:
        ok = matched[t.frames]
        if not ok.any():
            continue
        tracks.append(
            Track(
                id=t.id, frames=index[t.frames[ok]], xyxy=t.xyxy[ok], source=t.source[ok],
                identity=t.identity, distance=t.distance, decision=t.decision, masked=t.masked, reason=t.reason,
            )
        )
    settings = dict(sub.settings)
    # The copy numbers its frames from its own start: its cuts and splits are renumbered like its tracks,
    # or a box drawn on the review page would be followed within the wrong shot.
    settings["scene_cuts"] = [int(index[c]) for c in sub.cuts if 0 <= c < len(index) and matched[c]]
    if "splits" in settings:
        settings["splits"] = [
            {**split, "frames": [[int(index[min(a, len(index) - 1)]), int(index[min(b, len(index) - 1)])]
                                 for a, b in split.get("frames", [])]}
            for split in sub.settings["splits"]
        ]
    settings["analysed_range"] = {"from": round(float(lo), 6), "to": round(float(min(hi, times[-1] + step)), 6),
                                  "margin": margin}
    return Plan(video=info, mode=sub.mode, settings=settings, tracks=tracks, times=times, warnings=list(sub.warnings))


# --------------------------------------------------------------------------- excerpts and previews


def _even(n: float) -> int:
    return max(2, int(round(n / 2)) * 2)


def render_range(
    plan: Plan,
    dst: str | os.PathLike,
    *,
    start: float | None = None,
    end: float | None = None,
    settings: RenderSettings = RenderSettings(),
    height: int | None = None,
    show_overlay: bool = False,
    src: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
    info: VideoInfo | None = None,
) -> Result:
    """Mask frames ``[start, end)`` as the plan says and write them, with the first audio track, to ``dst``.

    The clip starts at time 0 (the first frame of the range). With ``height`` it is
    scaled down to that height (a proxy); ``show_overlay`` draws every track's box,
    label and the frame time over the masked picture (:func:`overlay.draw_overlay`).
    Other streams (second audio tracks, subtitles) are not copied: this is an excerpt.

    Raises:
        InputError: the range holds no frame, or ``src`` is not the plan's video.
        OutputError: ``dst`` cannot be written.
    """
    info = info if info is not None else media.probe(src if src is not None else plan.video.path)
    check_same_video(info, plan)
    first, last = frame_range(plan, start, end)
    expect(progress, "render", last - first + 1)
    masker = settings.masker()
    w, h = info.width, info.height
    if height is not None and height < h:
        out_h = _even(height)
        out_w = _even(w * out_h / h)
    else:
        out_w, out_h = w + (w & 1), h + (h & 1)
    scale = out_h / h if height is not None and height < h else 1.0
    tb = Fraction(plan.video.time_base)
    t0 = float(plan.times[first])
    step = 1 / float(info.fps or 30)
    t_end = float(plan.times[last]) + step if end is None else min(end, float(plan.times[last]) + step)
    boxes_of = overlay.iter_frame_boxes(plan, first, last)
    started = _time.perf_counter()
    masked_frames = masked_boxes = frames = 0
    codec = media.ClipCodec.x264(settings.encode)
    with media.ClipWriter(
        dst, size=(out_w, out_h), time_base=tb, rate=info.fps, codec=codec,
        audio=(info.path, t0, t_end, t0), src=info.path, overwrite=overwrite,
    ) as writer:
        for frame in media.iter_frames(info, start=float(plan.times[first]), end=float(plan.times[last]) + 1e-3,
                                       times=plan.times):
            index, boxes = next(boxes_of)
            while index < frame.index:
                index, boxes = next(boxes_of)
            image = frame.image
            masked = np.array([fb.box for fb in boxes if fb.track.masked], np.float32).reshape(-1, 4)
            if len(masked):
                # As the render: the padding spares the eyes, nose and mouth of unmasked faces.
                masker.apply(image, masked, spare=_unmasked(boxes))
                masked_frames += 1
                masked_boxes += len(masked)
            if scale != 1.0:
                image = cv2.resize(image, (out_w, out_h), interpolation=cv2.INTER_AREA)
            elif image.shape[:2] != (out_h, out_w):
                image = cv2.copyMakeBorder(image, 0, out_h - h, 0, out_w - w, cv2.BORDER_REPLICATE)
            if show_overlay:
                overlay.draw_overlay(image, boxes, scale=scale, time=frame.time, index=frame.index)
            # Times from the plan, as the matte's are: the two line up tick for tick.
            writer.write(image, round((float(plan.times[frame.index]) - t0) / tb))
            frames += 1
            if progress:
                progress("render", 1)
    visible = [t for t in plan.tracks if t.last >= first and t.first <= last]
    return Result(
        output=str(dst), frames=frames, masked_frames=masked_frames, masked_boxes=masked_boxes,
        tracks=len(visible), masked_tracks=sum(t.masked for t in visible), seconds_analyse=0.0,
        seconds_render=_time.perf_counter() - started, warnings=list(plan.warnings),
        decisions=decision_counts(visible),
    )


# --------------------------------------------------------------------------- matte


def matte_frames(plan: Plan, settings: RenderSettings, first: int, last: int):  # noqa: ANN201 - generator
    """``(index, (H, W) uint8 picture)``: 255 exactly where the render masks, 0 elsewhere.

    Drawn by the render's own :class:`~blurface.mask.Masker` (same shape, padding, clipping,
    and padding trimmed off unmasked faces) with a white effect, so the matte and the blurred
    pixels coincide.
    """
    w, h = plan.video.width, plan.video.height
    white = Masker(Solid(color=(255, 255, 255)), shape=settings.shape, pad=settings.pad)  # type: ignore[arg-type]
    for index, boxes in overlay.iter_frame_boxes(plan, first, last):
        canvas = np.zeros((h + (h & 1), w + (w & 1), 3), np.uint8)
        masked = np.array([fb.box for fb in boxes if fb.track.masked], np.float32).reshape(-1, 4)
        if len(masked):
            # Drawn on the picture's own size: the padding row/column of an odd size stays black.
            # Unmasked faces are spared as the render spares them.
            white.apply(canvas[:h, :w], masked, spare=_unmasked(boxes))
        yield index, np.ascontiguousarray(canvas[:, :, 0])


def _unmasked(boxes: list[overlay.FrameBox]) -> np.ndarray:
    """``(m, 4)`` float32 boxes of the faces on one frame that are left unmasked."""
    return np.array([fb.box for fb in boxes if not fb.track.masked], np.float32).reshape(-1, 4)


def write_matte(
    plan: Plan,
    dst: str | os.PathLike,
    *,
    settings: RenderSettings = RenderSettings(),
    start: float | None = None,
    end: float | None = None,
    rebase: bool = False,
    src: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: Progress | None = None,
) -> int:
    """Write the black-and-white matte of the plan's masks to ``dst`` (``.mov``: ProRes 422 HQ; ``.mkv``: FFV1).

    Frames and timestamps are the output's: every frame at the source's pts for a
    full render, or the range's frames from time 0 (``rebase``) for an excerpt.
    Nothing is decoded: the matte comes from the plan alone. Returns the frame count.

    Raises:
        OutputError: ``dst`` is not ``.mov``/``.mkv``, or cannot be written.
    """
    codec = media.MATTE_CODECS.get(Path(dst).suffix.lower())
    if codec is None:
        raise OutputError(f"{dst}: a matte must be .mov (ProRes 422 HQ) or .mkv (FFV1): choose one of those")
    first, last = frame_range(plan, start, end)
    expect(progress, "matte", last - first + 1)
    tb = Fraction(plan.video.time_base)
    t0 = float(plan.times[first]) if rebase else 0.0
    w, h = plan.video.width, plan.video.height
    count = 0
    with media.ClipWriter(
        dst, size=(w + (w & 1), h + (h & 1)), time_base=tb, rate=plan.video.fps, codec=codec,
        src=src if src is not None else plan.video.path, overwrite=overwrite,
    ) as writer:
        for index, picture in matte_frames(plan, settings, first, last):
            writer.write(picture, round((float(plan.times[index]) - t0) / tb))
            count += 1
            if progress:
                progress("matte", 1)
    return count


# --------------------------------------------------------------------------- contact sheet


def write_contact_sheet(
    plan: Plan,
    dst: str | os.PathLike,
    *,
    src: str | os.PathLike | None = None,
    start: float | None = None,
    end: float | None = None,
    per_track: int = 5,
    info: VideoInfo | None = None,
) -> int:
    """Write a PNG with one row per track seen in ``[start, end)``: face crops and the decision.

    The crops are **not masked**: the sheet is for the reviewer who checks the decisions.
    Returns the number of rows (tracks). ``info``: the video's probe, when the caller has it.
    """
    info = info if info is not None else media.probe(src if src is not None else plan.video.path)
    check_same_video(info, plan)
    first, last = frame_range(plan, start, end)
    tracks = [t for t in plan.tracks if t.last >= first and t.first <= last]
    wanted: dict[int, list[tuple[Track, np.ndarray]]] = {}
    for t in tracks:
        inside = t.frames[(t.frames >= first) & (t.frames <= last)]
        sub = replace(t, frames=inside, xyxy=t.xyxy[(t.frames >= first) & (t.frames <= last)],
                      source=t.source[(t.frames >= first) & (t.frames <= last)])
        for f in overlay.sheet_frames(sub, per_track):
            row = int(np.searchsorted(t.frames, f))
            wanted.setdefault(f, []).append((t, t.xyxy[row]))
    tiles: dict[int, list[tuple[int, np.ndarray]]] = {t.id: [] for t in tracks}
    if wanted:
        lo, hi = min(wanted), max(wanted)
        for frame in media.iter_frames(info, start=float(plan.times[lo]), end=float(plan.times[hi]) + 1e-3,
                                       times=plan.times):
            for t, box in wanted.get(frame.index, []):
                tiles[t.id].append((frame.index, overlay.face_tile(frame.image, box)))
    width = overlay.PANEL + per_track * (overlay.TILE + 4) + 4
    name = Path(info.path).name
    title = f"{name}: {len(tracks)} face track(s), mode {plan.mode}. Crops are UNMASKED: for review only, do not publish."
    rows = [overlay.sheet_header(title, width)]
    for t in tracks:
        rows.append(overlay.sheet_row(t, [tile for _, tile in sorted(tiles[t.id], key=lambda x: x[0])], plan.times,
                                      per_track))
    if not tracks:
        empty = np.full((overlay.TILE, width, 3), 250, np.uint8)
        cv2.putText(empty, "no faces in this range", (14, 40), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (0, 0, 0), 1)
        rows.append(empty)
    sheet = np.vstack(rows)
    ok, data = cv2.imencode(".png", sheet)
    if not ok:
        raise OutputError(f"{dst}: the contact sheet could not be encoded as PNG")

    def write(tmp: Path) -> None:
        tmp.write_bytes(data.tobytes())

    write_atomically(dst, write, what="contact sheet", error=OutputError)
    return len(tracks)
