"""The redaction plan: which box to mask on which frame, and why.

The plan is the only thing the render step needs, so it can be saved, reviewed,
edited (flip a track's ``masked``) and rendered again without detecting again.
It is built from :class:`~blurface.types.Track` objects whose identity was
decided here from all of each track's evidence.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .boxes import iou_matrix
from .embedders import SFace, embedder_settings
from .files import write_atomically
from .track import box_at
from .types import (
    DECISIONS,
    MODES,
    SOURCE_NAMES,
    InputError,
    Mode,
    Track,
    VideoInfo,
)

PLAN_FORMAT = "blurface-plan"
PLAN_VERSION = 1
# The default embedder's thresholds (see blurface/embedders.py for how each was measured):
# an embedder owns its distance scale, and DecisionSettings.for_embedder() takes another's.
DEFAULT_TOLERANCE = SFace.tolerance
DEFAULT_UNSURE_MARGIN = SFace.unsure_margin
# Narrower faces are too small to identify (see DecisionSettings.min_identify_px).
DEFAULT_MIN_IDENTIFY_PX = SFace.min_identify_px


@dataclass(frozen=True)
class DecisionSettings:
    """How tracks become masked or not.

    Attributes:
        mode: ``target`` masks the target people, ``keep`` masks everyone but the kept
            people, ``all`` masks every face.
        people: the gallery names the mode refers to (targets or kept people).
        tolerance: distance at or below which a track is that person. Lower is stricter.
        unsure_margin: tracks within ``tolerance + unsure_margin`` are "unsure". In
            ``target`` mode they are masked unless ``mask_unsure`` is false; in ``keep``
            mode they are always masked.
        mask_unsure: see ``unsure_margin``.
        min_identify_px: a track whose largest face crop is narrower than this is too
            small to identify: where its distance would leave it unmasked, it is "unsure"
            instead (masked in ``target`` mode unless ``mask_unsure`` is false; always in
            ``keep`` mode). Embeddings of faces under about 32 px scatter widely.
    """

    mode: Mode
    people: tuple[str, ...] = ()
    tolerance: float = DEFAULT_TOLERANCE
    unsure_margin: float = DEFAULT_UNSURE_MARGIN
    mask_unsure: bool = True
    min_identify_px: float = DEFAULT_MIN_IDENTIFY_PX

    @classmethod
    def for_embedder(cls, embedder: str, *, tolerance: float | None = None, **kwargs: object) -> DecisionSettings:
        """Settings on ``embedder``'s own distance scale; ``tolerance`` ``None`` (and any field not given) takes its default."""
        e = embedder_settings(embedder)
        fields: dict[str, object] = {"tolerance": e.tolerance if tolerance is None else tolerance,
                                     "unsure_margin": e.unsure_margin, "min_identify_px": e.min_identify_px}
        return cls(**{**fields, **kwargs})  # type: ignore[arg-type]


def track_distance(crop_distances: np.ndarray) -> float:
    """One distance for a track from its crops' distances to one person.

    The mean of the best half (at least one, at most three) of the crops: one lucky
    crop cannot decide alone once there are several, and a few bad crops (blur,
    profile) cannot hide a good match.
    """
    d = np.sort(np.asarray(crop_distances, np.float64).reshape(-1))
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return math.inf
    k = min(3, max(1, len(d) // 2))
    return float(d[:k].mean())


def decide(
    track: Track,
    crop_distances: np.ndarray,
    names: list[str],
    settings: DecisionSettings,
    *,
    face_px: float | None = None,
) -> Track:
    """Set ``identity``, ``distance``, ``decision``, ``masked`` and ``reason`` of ``track``.

    Args:
        track: a finished track.
        crop_distances: ``(m, P)`` distances of the track's ``m`` embeddings to the
            ``P`` gallery people named by ``names``.
        names: gallery people, in column order.
        settings: the mode and thresholds.
        face_px: width of the track's largest face crop, full-frame pixels; ``None``
            when unknown (no size rule applies).

    Returns:
        ``track``, changed in place.
    """
    if settings.mode == "all":
        track.decision, track.masked, track.reason = "all", True, "--all: every face is masked"
        return track
    crop_distances = np.asarray(crop_distances, np.float32).reshape(len(track.embeddings), len(names))
    per_person = [track_distance(crop_distances[:, j]) for j in range(len(names))]
    relevant = [j for j, n in enumerate(names) if n in settings.people]
    if not relevant or len(crop_distances) == 0:
        track.identity, track.distance = None, None
        if settings.mode == "target":
            # No evidence either way: a privacy tool masks rather than guesses.
            track.decision, track.masked = "unsure", settings.mask_unsure
            track.reason = "no usable face crop to compare; masked as unsure" if settings.mask_unsure else (
                "no usable face crop to compare; left as --unsure keep asks")
        else:
            track.decision, track.masked, track.reason = "unsure", True, "no usable face crop; masked (--keep masks unsure faces)"
        return track
    best = min(relevant, key=lambda j: per_person[j])
    d = per_person[best]
    track.identity, track.distance = names[best], round(d, 4)
    limit, unsure_limit = settings.tolerance, settings.tolerance + settings.unsure_margin
    n = len(crop_distances)
    evidence = f"{n} crop{'s' if n != 1 else ''}, distance {d:.3f}"
    if settings.mode == "target":
        if d <= limit:
            track.decision, track.masked = "target", True
            track.reason = f"matches target {names[best]} ({evidence} <= tolerance {limit:.2f})"
        elif d <= unsure_limit:
            track.decision, track.masked = "unsure", settings.mask_unsure
            track.reason = (
                f"unsure: close to target {names[best]} ({evidence}, within {unsure_limit:.2f}); "
                + ("masked to be safe" if settings.mask_unsure else "left unmasked by --unsure keep")
            )
        else:
            track.decision, track.masked = "other", False
            track.reason = f"not a target (nearest {names[best]}: {evidence} > {unsure_limit:.2f})"
    else:
        if d <= limit:
            track.decision, track.masked = "keep", False
            track.reason = f"kept person {names[best]} ({evidence} <= tolerance {limit:.2f})"
        elif d <= unsure_limit:
            track.decision, track.masked = "unsure", True
            track.reason = f"unsure: near kept person {names[best]} ({evidence}); --keep masks unsure faces"
        else:
            track.decision, track.masked = "other", True
            track.reason = f"not a kept person (nearest {names[best]}: {evidence}); masked"
    small = face_px is not None and face_px < settings.min_identify_px
    if small and not track.masked and track.decision in ("other", "keep"):
        size = f"face at most {face_px:.0f} px wide, under {settings.min_identify_px:.0f} px: too small to identify"
        track.decision = "unsure"
        if settings.mode == "target":
            track.masked = settings.mask_unsure
            track.reason = f"unsure: {size} ({evidence}); " + (
                "masked to be safe" if settings.mask_unsure else "left unmasked by --unsure keep")
        else:
            track.masked = True
            track.reason = f"unsure: {size} ({evidence}); --keep masks unsure faces"
    return track


def who(track: Track) -> tuple[str, str]:
    """What to call a track's face, and the evidence: ``("lin", "distance 0.80")``, ``("other", "nearest lin 1.30")``.

    Only a face decided to *be* a reference person (a target, or a kept person) is
    named; every other face is "other" or "unsure", with the nearest reference as
    detail, so no label reads like an identification of a stranger.
    """
    dist = "" if track.distance is None else f" {track.distance:.2f}"
    if track.decision in ("target", "keep") and track.identity is not None:
        return track.identity, f"distance{dist}".strip()
    name = {"all": "face", "manual": "drawn"}.get(track.decision, track.decision)
    return name, (f"nearest {track.identity}{dist}" if track.identity is not None else "")


def decision_counts(tracks: list[Track]) -> dict[str, int]:
    """How many tracks were decided each way, in a fixed order (the summary line's counts)."""
    counts = {d: 0 for d in DECISIONS}
    for t in tracks:
        counts[t.decision] = counts.get(t.decision, 0) + 1
    return counts


def exclude_simultaneous(tracks: list[Track], settings: DecisionSettings) -> int:
    """Unmask unsure tracks seen at the same time as a confident match of the same person.

    One person is not in two places in one frame, so in ``target`` mode an unsure
    track that overlaps (in frames) a track matched within tolerance to the same
    target is someone else. Returns how many tracks changed. Confident matches are
    never changed: two at once may be a duplicate detection of one face.
    """
    if settings.mode != "target" or not settings.mask_unsure:
        return 0
    sure = [t for t in tracks if t.decision == "target"]
    changed = 0
    for t in tracks:
        if t.decision != "unsure" or t.identity is None:
            continue
        for other in sure:
            if other.identity == t.identity and other.first <= t.last and t.first <= other.last:
                overlap = np.intersect1d(t.frames, other.frames[other.source == 0])
                # Where the two boxes overlap it is one face found twice (e.g. followed
                # backwards into frames another track of it covered): the same person.
                apart = [f for f in overlap if _apart(box_at(t, int(f)), box_at(other, int(f)))]
                if apart:
                    t.decision, t.masked = "other", False
                    t.reason = (
                        f"not {t.identity}: on screen at the same time as track {other.id}, "
                        f"which matches {t.identity} (distance {other.distance}); was unsure at {t.distance}"
                    )
                    changed += 1
                    break
    return changed


def _apart(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    return a is not None and b is not None and float(iou_matrix(a[None], b[None])[0, 0]) < 0.1


@dataclass
class Plan:
    """Every track of one video with its decision, and the frame times.

    Attributes:
        video: the analysed input.
        mode: ``target``, ``keep`` or ``all``.
        settings: the analysis and decision settings, for the record.
        tracks: all tracks, masked or not.
        times: ``(frame_count,)`` float64 presentation time of each frame in seconds.
        warnings: analysis warnings, one sentence each.
        metadata_dropped: filled in by :func:`blurface.pipeline.blur_video` after rendering:
            the identifying metadata the output left out, by key (never by value).
    """

    video: VideoInfo
    mode: Mode
    settings: dict
    tracks: list[Track]
    times: np.ndarray
    warnings: list[str] = field(default_factory=list)
    # Set once rendered: identifying metadata keys the output left out (never values).
    metadata_dropped: list[str] = field(default_factory=list)
    # The reviewer's changes, oldest first: {"time", "action", "track", "reason", ...} each
    # (see :meth:`log_review`). Written to JSON only when not empty, so older plans and
    # plans nobody reviewed keep their exact bytes.
    review: list[dict] = field(default_factory=list)

    @property
    def frame_count(self) -> int:
        return len(self.times)

    @property
    def masked_tracks(self) -> list[Track]:
        return [t for t in self.tracks if t.masked]

    def override(self, track_id: int, *, masked: bool, reason: str = "reviewer override") -> None:
        """Flip one track's decision (a reviewer's correction); raises ``KeyError`` if absent."""
        for track in self.tracks:
            if track.id == track_id:
                track.masked, track.reason = masked, reason
                return
        raise KeyError(f"plan has no track {track_id}")

    def track(self, track_id: int) -> Track:
        """The track with id ``track_id``; raises ``KeyError`` if absent."""
        for track in self.tracks:
            if track.id == track_id:
                return track
        raise KeyError(f"plan has no track {track_id}")

    def log_review(self, action: str, track: int | None, reason: str = "", **details: object) -> dict:
        """Append one entry to the review log: UTC time, action, track, reason and any details."""
        entry = {"time": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "action": action,
                 "track": track, "reason": reason, **details}
        self.review.append(entry)
        return entry

    def split(self, track_id: int, first: int, last: int) -> Track:
        """Cut track ``track_id`` so that frames ``first..last`` are one track; return that piece.

        The frames before and after stay with the original id (before) and a new id
        (after); the middle piece gets a new id unless it starts at the track's start.
        Each piece keeps the identity, distance, decision, reason and embeddings, so
        a reviewer can mask part of a track's time and every renderer and report
        reads it as ordinary tracks.

        Raises:
            KeyError: no such track. ValueError: the range holds none of its frames.
        """
        track = self.track(track_id)
        inside = (track.frames >= first) & (track.frames <= last)
        if not inside.any():
            raise ValueError(f"frames {first}-{last} hold no frame of track {track_id} ({track.first}-{track.last})")
        if inside.all():
            return track
        pieces = [m for m in (track.frames < first, inside, track.frames > last) if m.any()]
        made = []
        next_id = max(t.id for t in self.tracks) + 1
        for k, rows in enumerate(pieces):
            tid = track.id if k == 0 else next_id + k - 1
            made.append(Track(
                id=tid, frames=track.frames[rows], xyxy=track.xyxy[rows], source=track.source[rows],
                embeddings=track.embeddings, embedding_frames=track.embedding_frames, identity=track.identity,
                distance=track.distance, decision=track.decision, masked=track.masked, reason=track.reason,
            ))
        at = self.tracks.index(track)
        self.tracks[at:at + 1] = made
        return next(t for t in made if t.first >= first)

    def iter_rows(
        self, first: int = 0, last: int | None = None, *, masked_only: bool = False
    ) -> Iterator[tuple[int, list[tuple[Track, int]]]]:
        """Yield ``(frame, [(track, row in track), ...])`` for every frame from ``first`` to ``last``.

        Sweeps tracks sorted by first frame, holding only the live ones, so memory does
        not grow with the video's length.
        """
        last = self.frame_count - 1 if last is None else last
        pool = self.masked_tracks if masked_only else self.tracks
        tracks = sorted((t for t in pool if t.last >= first and t.first <= last), key=lambda t: t.first)
        live: list[Track] = []
        nxt = 0
        for i in range(first, last + 1):
            while nxt < len(tracks) and tracks[nxt].first <= i:
                live.append(tracks[nxt])
                nxt += 1
            live = [t for t in live if t.last >= i]
            rows = []
            for t in live:
                # Tracks we build have no holes, but an edited plan may: look the row up.
                row = int(np.searchsorted(t.frames, i))
                if row < len(t.frames) and t.frames[row] == i:
                    rows.append((t, row))
            yield i, rows

    def iter_masks(self) -> Iterator[np.ndarray]:
        """Yield, for every frame in order, the ``(n, 4)`` float32 boxes to mask."""
        empty = np.zeros((0, 4), np.float32)
        for _, rows in self.iter_rows(masked_only=True):
            yield np.stack([t.xyxy[row] for t, row in rows]) if rows else empty

    def iter_frame_masks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield, for every frame in order, ``(masked, spared)``: ``(n, 4)`` and ``(m, 4)`` float32 boxes.

        ``masked`` are the boxes :meth:`iter_masks` yields; ``spared`` the boxes of the tracks
        on that frame left unmasked, whose eyes, nose and mouth the masks' padding must not
        cover (see :class:`blurface.mask.Masker`). A spared box marks where the bystander's
        own face is (seen, interpolated between sightings, or extended a few frames past
        them), so what the trimmed padding leaves visible there is the bystander's face.
        """
        empty = np.zeros((0, 4), np.float32)
        for _, rows in self.iter_rows():
            masked = [t.xyxy[row] for t, row in rows if t.masked]
            spared = [t.xyxy[row] for t, row in rows if not t.masked]
            yield (np.stack(masked) if masked else empty), (np.stack(spared) if spared else empty)

    def masked_frame_count(self) -> int:
        covered = np.zeros(self.frame_count, bool)
        for t in self.masked_tracks:
            covered[t.frames[(t.frames >= 0) & (t.frames < self.frame_count)]] = True
        return int(covered.sum())

    # ----- JSON ---------------------------------------------------------------------------

    def to_json(self) -> dict:
        """The plan as JSON-ready data: tracks, then every frame that has a face."""
        by_frame: dict[int, list[dict]] = {}
        for t in self.tracks:
            for row, frame in enumerate(t.frames):
                by_frame.setdefault(int(frame), []).append(
                    {
                        "box": [round(float(v), 1) for v in t.xyxy[row]],
                        "track": t.id,
                        "masked": t.masked,
                        # What to call the face: only a matched one is named (see who()).
                        "who": who(t)[0],
                        "identity": t.identity,
                        "distance": t.distance,
                        "source": SOURCE_NAMES[int(t.source[row])],
                        "why": t.reason,
                    }
                )
        return {
            "format": PLAN_FORMAT,
            "version": PLAN_VERSION,
            "video": self.video.to_dict(),
            "mode": self.mode,
            "settings": self.settings,
            "frame_count": self.frame_count,
            "warnings": self.warnings,
            "metadata_dropped": self.metadata_dropped,
            **({"review": self.review} if self.review else {}),
            "tracks": [
                {
                    "id": t.id,
                    "first": t.first,
                    "last": t.last,
                    "detected_frames": t.detected_count,
                    "who": who(t)[0],
                    "identity": t.identity,
                    "distance": t.distance,
                    "decision": t.decision,
                    "masked": t.masked,
                    "reason": t.reason,
                    "embedding_frames": [int(f) for f in t.embedding_frames],
                }
                for t in self.tracks
            ],
            "frames": [
                {"index": i, "time": round(float(self.times[i]), 6), "boxes": by_frame[i]}
                for i in sorted(by_frame)
                if 0 <= i < self.frame_count
            ],
            "times": [round(float(x), 6) for x in self.times],
        }

    def as_saved(self) -> Plan:
        """This plan as :meth:`load` would read it back after :meth:`save` (boxes rounded to 0.1 px).

        Render this, not the unrounded plan, so that re-rendering the saved file gives the same bytes.
        Tracks keep their embeddings in memory (:meth:`save` never writes them).
        """
        saved = self._from_json(self.to_json())
        for new, old in zip(saved.tracks, self.tracks, strict=True):
            new.embeddings, new.embedding_frames = old.embeddings, old.embedding_frames
        return saved

    def save(self, path: str | os.PathLike) -> None:
        """Write the plan as JSON (embeddings are never written: they are biometric data)."""
        def write(tmp: Path) -> None:
            with open(tmp, "w", encoding="utf-8") as f:
                json.dump(self.to_json(), f, indent=1)

        write_atomically(path, write, what="plan", error=InputError)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Plan:
        """Read a plan written by :meth:`save`, possibly edited by a reviewer.

        A track's ``masked`` in the ``tracks`` list is what counts: flip it to override.

        Raises:
            InputError: unreadable, not a plan, or inconsistent values.
        """
        path = Path(path)
        try:
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except OSError as e:
            raise InputError(f"cannot read plan {str(path)!r}: {e.strerror or e}") from e
        except (UnicodeDecodeError, ValueError, RecursionError) as e:  # ValueError: also a 5000-digit number
            raise InputError(f"cannot read plan {str(path)!r}: it is not JSON ({e})") from e
        try:
            if isinstance(data, dict) and data.get("format") == PLAN_FORMAT and data.get("version") == PLAN_VERSION:
                check_plan_json(data)  # untrusted input: every field, before any of it is used
            return cls._from_json(data)
        except KeyError as e:
            raise InputError(f"plan {str(path)!r} is not a valid blurface plan: it lacks {e.args[0]!r}") from e
        except (TypeError, ValueError, IndexError, ZeroDivisionError, OverflowError, AttributeError) as e:
            raise InputError(f"plan {str(path)!r} is not a valid blurface plan: {e}") from e

    @classmethod
    def _from_json(cls, data: dict) -> Plan:
        if not isinstance(data, dict) or data.get("format") != PLAN_FORMAT:
            raise ValueError(f"'format' must be {PLAN_FORMAT!r}")
        if data.get("version") != PLAN_VERSION:
            raise ValueError(f"version must be {PLAN_VERSION}, got {data.get('version')!r}")
        mode = data["mode"]
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}")
        times = np.asarray(data["times"], np.float64)
        if times.ndim != 1 or len(times) != int(data["frame_count"]):
            raise ValueError("'times' must list one time per frame")
        if not np.isfinite(times).all():
            raise ValueError("'times' holds a value that is not a finite number")
        rows: dict[int, list[tuple[int, list[float], str]]] = {}
        for frame in data["frames"]:
            index = int(frame["index"])
            if not 0 <= index < len(times):
                raise ValueError(f"frame index {index} outside 0..{len(times) - 1}")
            for box in frame["boxes"]:
                xyxy = [float(v) for v in box["box"]]
                if len(xyxy) != 4 or not all(math.isfinite(v) for v in xyxy):
                    raise ValueError(f"bad box {box['box']!r} on frame {index}")
                rows.setdefault(int(box["track"]), []).append((index, xyxy, str(box.get("source", "detected"))))
        source_codes = {name: code for code, name in SOURCE_NAMES.items()}
        tracks = []
        for spec in data["tracks"]:
            tid = int(spec["id"])
            entries = sorted(rows.get(tid, []))
            if not entries:
                raise ValueError(f"track {tid} has no boxes in 'frames'")
            tracks.append(
                Track(
                    id=tid,
                    frames=[e[0] for e in entries],
                    xyxy=[e[1] for e in entries],
                    source=[source_codes.get(e[2], 0) for e in entries],
                    identity=spec.get("identity"),
                    distance=None if spec.get("distance") is None else float(spec["distance"]),
                    decision=spec.get("decision", "other"),
                    masked=bool(spec["masked"]),
                    reason=str(spec.get("reason", "")),
                )
            )
        return cls(
            video=VideoInfo.from_dict(data["video"]),
            mode=mode,
            settings=dict(data.get("settings", {})),
            tracks=tracks,
            times=times,
            warnings=[str(w) for w in data.get("warnings", [])],
            metadata_dropped=[str(k) for k in data.get("metadata_dropped", [])],
            review=_review_log(data.get("review", [])),
        )


def _review_log(entries: object) -> list[dict]:
    if not isinstance(entries, list) or not all(isinstance(e, dict) and "action" in e for e in entries):
        raise ValueError("'review' must be a list of entries, each with an 'action'")
    return [dict(e) for e in entries]


# ----- validation of a loaded plan ---------------------------------------------------------------
#
# A plan file is untrusted input: plans are passed between reviewers, and their text reaches the
# review page, reports and the terminal. Every field the loader reads is checked here for its
# type, its range or its allowed values and its length, before any of it is used; the first bad
# field is refused with one line that names it and says what it must be. Fields the loader does
# not read are ignored (they are never written back).

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
