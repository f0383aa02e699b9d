"""Checks of a plan file's JSON before :meth:`blurface.plan.Plan.load` reads any of it.

A plan file is untrusted input: plans are passed between reviewers, and their text reaches the
review page, reports and the terminal. Every field the loader reads is checked here for its
type, its range or its allowed values and its length, before any of it is used; the first bad
field is refused with one line that names it and says what it must be. Fields the loader does
not read are ignored (they are never written back).
"""

from __future__ import annotations

import math
import re

from .types import DECISIONS, MODES, SOURCE_NAMES

MAX_FRAMES = 10_000_000  # over 90 hours at 30 fps
MAX_SIDE = 1 << 16  # width and height, pixels
MAX_BOXES_PER_FRAME = 10_000
MAX_TEXT = 4_096  # a reason, a warning, a path
MAX_NAME = 256  # an identity, a codec, a settings key
MAX_ITEMS = 100_000  # warnings, metadata keys, settings lists, streams
MAX_ID = 2**31 - 1  # track ids, frame numbers: what int64 numpy maths takes without overflow
MAX_DISTANCE = 100.0  # embedding distances are about 0-2; anything far beyond is not one
_ACTION = re.compile(r"[a-z][a-z_]{0,31}")
_STREAM_KINDS = ("video", "audio", "subtitle", "data", "attachment", "unknown")


def _show(value: object) -> str:
    """``value`` for a message: its repr (control characters escaped), cut to 48 characters."""
    text = repr(value)
    return text if len(text) <= 48 else text[:45] + "..."


def _bad(where: str, value: object, fix: str) -> ValueError:
    return ValueError(f"{where} is {_show(value)}: {fix}")


def _int(value: object, where: str, lo: int = 0, hi: int = MAX_ID) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise _bad(where, value, f"give a whole number from {lo} to {hi}")
    return value


def _num(value: object, where: str, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise _bad(where, value, f"give a finite number from {lo:g} to {hi:g}")
    return float(value)


def _text(value: object, where: str, limit: int = MAX_TEXT, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise _bad(where, value, f"give text of at most {limit} characters" + (" or null" if optional else ""))
    return value


def _bool(value: object, where: str) -> bool:
    if not isinstance(value, bool):
        raise _bad(where, value, "give true or false (JSON booleans, not text)")
    return value


def _choice(value: object, where: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise _bad(where, value, f"use one of {', '.join(allowed)}")
    return value


def _list(value: object, where: str, limit: int = MAX_ITEMS) -> list:
    if not isinstance(value, list) or len(value) > limit:
        raise _bad(where, value, f"give a list of at most {limit} items")
    return value


def _obj(value: object, where: str) -> dict:
    if not isinstance(value, dict):
        raise _bad(where, value, "give a JSON object")
    return value


def _need(data: dict, key: str, where: str) -> object:
    if key not in data:
        raise ValueError(f"{where} lacks {key!r}: write the plan again with 'blurface VIDEO ... --plan PLAN.json'")
    return data[key]


def _fraction(value: object, where: str) -> None:
    from fractions import Fraction

    try:
        ok = isinstance(value, str) and len(value) <= 32 and 0 < Fraction(value) <= 1_000_000
    except (ValueError, ZeroDivisionError):
        ok = False
    if not ok:
        raise _bad(where, value, "give a positive fraction as text, such as \"30000/1001\"")


def _plain_json(value: object, where: str, depth: int = 0) -> None:
    """Free-form data kept for the record (settings, review details): bounded size, finite numbers."""
    if depth > 8:
        raise ValueError(f"{where} is nested too deeply: keep settings as blurface wrote them")
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        _num(value, where, -1e15, 1e15)
    elif isinstance(value, str):
        _text(value, where)
    elif isinstance(value, list):
        for k, item in enumerate(_list(value, where)):
            _plain_json(item, f"{where}[{k}]", depth + 1)
    elif isinstance(value, dict):
        if len(value) > 1000:
            raise _bad(where, value, "give an object of at most 1000 keys")
        for key, item in value.items():
            _text(key, f"{where} key", MAX_NAME)
            _plain_json(item, f"{where}.{key}", depth + 1)
    else:
        raise _bad(where, value, "give JSON data")


def check_plan_json(data: object) -> None:
    """Check every field of a plan's JSON that :meth:`Plan.load` reads; the first bad one raises.

    Raises:
        ValueError: names the field (``tracks[3].decision``), shows its value (cut short,
            escaped) and says what it must be.
    """
    data = _obj(data, "the plan")
    _choice(_need(data, "mode", "the plan"), "mode", MODES)
    _plain_json(data.get("settings", {}), "settings")
    settings = _obj(data.get("settings", {}), "settings")
    # The settings other code reads back (the audit report, follow, the report's expectations).
    if "decision" in settings:
        decision = _obj(settings["decision"], "settings.decision")
        if "mask_unsure" in decision:
            _bool(decision["mask_unsure"], "settings.decision.mask_unsure")
    for k, cut in enumerate(_list(settings.get("scene_cuts", []), "settings.scene_cuts")):
        _int(cut, f"settings.scene_cuts[{k}]", 0, MAX_FRAMES)
    for k, split in enumerate(_list(settings.get("splits", []), "settings.splits")):
        for j, part in enumerate(_list(_obj(split, f"settings.splits[{k}]").get("parts", []),
                                       f"settings.splits[{k}].parts")):
            _int(part, f"settings.splits[{k}].parts[{j}]")
    for key in ("warnings", "metadata_dropped"):
        for k, text in enumerate(_list(data.get(key, []), key)):
            _text(text, f"{key}[{k}]")

    video = _obj(_need(data, "video", "the plan"), "video")
    for key, limit in (("path", MAX_TEXT), ("container", MAX_NAME), ("codec", MAX_NAME), ("pix_fmt", MAX_NAME)):
        _text(_need(video, key, "video"), f"video.{key}", limit)
    width = _int(_need(video, "width", "video"), "video.width", 1, MAX_SIDE)
    height = _int(_need(video, "height", "video"), "video.height", 1, MAX_SIDE)
    rotation = _need(video, "rotation", "video")
    if isinstance(rotation, bool) or not isinstance(rotation, int) or rotation not in (0, 90, 180, 270):
        raise _bad("video.rotation", rotation, "use one of 0, 90, 180, 270")
    _fraction(_need(video, "fps", "video"), "video.fps")
    _fraction(_need(video, "time_base", "video"), "video.time_base")
    _num(_need(video, "start_time", "video"), "video.start_time", -1e9, 1e9)
    _num(_need(video, "duration", "video"), "video.duration", 0, 1e9)
    _int(_need(video, "frame_count", "video"), "video.frame_count", 0, MAX_FRAMES)
    if video.get("bit_rate") is not None:
        _int(video["bit_rate"], "video.bit_rate", 0, 10**12)
    for k, stream in enumerate(_list(video.get("streams", []), "video.streams", 1000)):
        where = f"video.streams[{k}]"
        _obj(stream, where)
        _int(_need(stream, "index", where), f"{where}.index", 0, 100_000)
        _choice(_need(stream, "kind", where), f"{where}.kind", _STREAM_KINDS)
        _text(_need(stream, "codec", where), f"{where}.codec", MAX_NAME)
        _text(stream.get("language"), f"{where}.language", MAX_NAME, optional=True)

    count = _int(_need(data, "frame_count", "the plan"), "frame_count", 0, MAX_FRAMES)
    times = _list(_need(data, "times", "the plan"), "times", MAX_FRAMES)
    if len(times) != count:
        raise ValueError(f"'times' lists {len(times)} times for {count} frames: give one time per frame")
    for k, t in enumerate(times):
        _num(t, f"times[{k}]", -1e9, 1e9)

    tracks = _list(_need(data, "tracks", "the plan"), "tracks", MAX_ITEMS * 10)
    ids: set[int] = set()
    for k, spec in enumerate(tracks):
        where = f"tracks[{k}]"
        _obj(spec, where)
        tid = _int(_need(spec, "id", where), f"{where}.id")
        if tid in ids:
            raise ValueError(f"{where}.id {tid} is used by two tracks: give each track its own id")
        ids.add(tid)
        _choice(spec.get("decision", "other"), f"{where}.decision", DECISIONS)
        _bool(_need(spec, "masked", where), f"{where}.masked")
        _text(spec.get("identity"), f"{where}.identity", MAX_NAME, optional=True)
        if spec.get("distance") is not None:
            _num(spec["distance"], f"{where}.distance", 0, MAX_DISTANCE)
        _text(spec.get("reason", ""), f"{where}.reason")
        for key in ("first", "last", "detected_frames"):
            if key in spec:
                _int(spec[key], f"{where}.{key}", 0, MAX_FRAMES)
        for j, f in enumerate(_list(spec.get("embedding_frames", []), f"{where}.embedding_frames", MAX_FRAMES)):
            _int(f, f"{where}.embedding_frames[{j}]", 0, max(count - 1, 0))

    # Boxes may reach past the picture (a padded or extrapolated face), but not by more than a picture.
    xs, ys = (-float(width), 2.0 * width), (-float(height), 2.0 * height)
    sources = tuple(SOURCE_NAMES.values())
    seen: set[tuple[int, int]] = set()
    for k, frame in enumerate(_list(_need(data, "frames", "the plan"), "frames", MAX_FRAMES)):
        where = f"frames[{k}]"
        _obj(frame, where)
        index = _need(frame, "index", where)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < count:
            raise _bad(f"{where}.index", index, f"it is outside the video: give a frame from 0 to {count - 1}")
        if "time" in frame:
            _num(frame["time"], f"{where}.time", -1e9, 1e9)
        for j, box in enumerate(_list(_need(frame, "boxes", where), f"{where}.boxes", MAX_BOXES_PER_FRAME)):
            at = f"{where}.boxes[{j}]"
            _obj(box, at)
            xyxy = _need(box, "box", at)
            if not isinstance(xyxy, list) or len(xyxy) != 4:
                raise _bad(f"{at}.box", xyxy, "give four numbers [x1, y1, x2, y2]")
            x1, y1, x2, y2 = (_num(v, f"{at}.box[{n}]", *(xs if n % 2 == 0 else ys)) for n, v in enumerate(xyxy))
            if x2 < x1 or y2 < y1:
                raise _bad(f"{at}.box", xyxy, "give [x1, y1, x2, y2] with x1 <= x2 and y1 <= y2")
            tid = _int(_need(box, "track", at), f"{at}.track")
            if tid not in ids:
                raise ValueError(f"{at}.track is {tid}, which is not in 'tracks': list every track in 'tracks'")
            if (tid, index) in seen:
                raise ValueError(f"{at}: track {tid} has two boxes on frame {index}: keep one")
            seen.add((tid, index))
            _choice(box.get("source", "detected"), f"{at}.source", sources)
            if "masked" in box:
                _bool(box["masked"], f"{at}.masked")
            _text(box.get("identity"), f"{at}.identity", MAX_NAME, optional=True)
            if box.get("distance") is not None:
                _num(box["distance"], f"{at}.distance", 0, MAX_DISTANCE)
            _text(box.get("why", ""), f"{at}.why")

    for k, entry in enumerate(_list(data.get("review", []), "review", MAX_FRAMES)):
        where = f"review[{k}]"
        _obj(entry, where)
        action = _need(entry, "action", where)
        if not isinstance(action, str) or not _ACTION.fullmatch(action):
            raise _bad(f"{where}.action", action, "give a word of lower-case letters and '_'")
        _text(entry.get("time", ""), f"{where}.time", 64)
        if entry.get("track") is not None:
            _int(entry["track"], f"{where}.track")
        _text(entry.get("reason", ""), f"{where}.reason")
        for key, value in entry.items():
            _text(key, f"{where} key", MAX_NAME)
            if key not in ("action", "time", "track", "reason"):
                _plain_json(value, f"{where}.{key}", 6)
