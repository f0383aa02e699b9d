"""The redaction plan: which box to mask on which frame, and why.

The plan is the only thing the render step needs, so it can be saved, reviewed,
edited and rendered again without detecting again. It is built from
:class:`~blurface.types.Track` objects whose identity was decided from all of each
track's evidence (:mod:`blurface.decisions`). Every edit of a plan is one of its own methods (``override``,
``split``, ``trim``, ``add_track``; new ids from ``new_track_id``): the review session
calls them, and a loaded file is checked field by field first (:mod:`blurface.plan_check`).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .decisions import who
from .files import write_atomically
from .plan_check import MAX_ID, MAX_NAME, check_plan_json  # noqa: F401 - MAX_NAME: gallery.py reads it here
from .types import (
    MODES,
    Decision,
    SOURCE_NAMES,
    InputError,
    Mode,
    Track,
    VideoInfo,
)

PLAN_FORMAT = "blurface-plan"
PLAN_VERSION = 1
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
        metadata_dropped: filled in by :func:`blurface.pipeline.run` after rendering:
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
        at = self.tracks.index(track)
        made = []
        for k, rows in enumerate(pieces):
            # Each piece joins the list before the next id is asked for, so the ids differ.
            piece = Track(
                id=track.id if k == 0 else self.new_track_id(), frames=track.frames[rows], xyxy=track.xyxy[rows],
                source=track.source[rows], embeddings=track.embeddings, embedding_frames=track.embedding_frames,
                identity=track.identity, distance=track.distance, decision=track.decision, masked=track.masked,
                reason=track.reason,
            )
            if k == 0:
                self.tracks[at] = piece  # the first piece keeps the track's id and place
            else:
                self.tracks.insert(at + k, piece)
            made.append(piece)
        return next(t for t in made if t.first >= first)

    def trim(self, track_id: int, first: int, last: int) -> Track:
        """Keep only frames ``first..last`` of track ``track_id`` (a hand-added one that ran too far); return it.

        The track keeps its id, decision, reason and embeddings; its boxes outside the range go.

        Raises:
            KeyError: no such track. ValueError: the range holds none of its frames.
        """
        track = self.track(track_id)
        keep = (track.frames >= first) & (track.frames <= last)
        if not keep.any():
            raise ValueError(f"frames {first}-{last} hold no frame of track {track_id}: it runs {track.first}-{track.last}")
        track.frames, track.xyxy, track.source = track.frames[keep], track.xyxy[keep], track.source[keep]
        return track

    def new_track_id(self) -> int:
        """The id a track added now gets: one past the highest, so ids keep the order tracks were made in.

        Past :data:`~blurface.plan_check.MAX_ID` (the largest id :meth:`load` accepts) it is the
        lowest id no track uses, so the plan saved after the edit still loads.
        """
        ids = {t.id for t in self.tracks}
        after = max(ids, default=-1) + 1
        if after <= MAX_ID:
            return after
        return next(i for i in range(len(ids) + 1) if i not in ids)

    def add_track(
        self,
        frames: np.ndarray,
        xyxy: np.ndarray,
        source: np.ndarray,
        *,
        decision: Decision = "manual",
        masked: bool = True,
        reason: str = "",
    ) -> Track:
        """Add a track under a new id (:meth:`new_track_id`), in the plan's order (first frame, then id); return it.

        Args:
            frames: ``(n,)`` ascending frame indices within the video.
            xyxy: ``(n, 4)`` finite boxes, full-frame pixels.
            source: ``(n,)`` one of ``SOURCE_*`` per row.

        Raises:
            ValueError: no frames, frames not ascending or outside the video, or a box not finite.
        """
        track = Track(id=self.new_track_id(), frames=frames, xyxy=xyxy, source=source, decision=decision,
                      masked=masked, reason=reason)
        if not len(track):
            raise ValueError("a track needs at least one frame")
        if track.first < 0 or track.last >= self.frame_count or (np.diff(track.frames) <= 0).any():
            raise ValueError(f"frames {track.first}-{track.last} are not ascending frames of the video "
                             f"(0..{self.frame_count - 1})")
        if not np.isfinite(track.xyxy).all():
            raise ValueError("every box must be four finite numbers")
        self.tracks.append(track)
        self.tracks.sort(key=lambda t: (t.first, t.id))
        return track

    @property
    def cuts(self) -> tuple[int, ...]:
        """Frames where a new shot starts, ascending, as the analysis found them (frame 0 is not listed).

        Kept in the plan file as ``settings.scene_cuts``, where plans have always kept them (so
        files keep their bytes, and the analysis' record stays whole), and checked on load like
        every field. ``()`` when the plan records none: one shot.
        """
        return tuple(sorted(int(c) for c in self.settings.get("scene_cuts", ())))

    @cuts.setter
    def cuts(self, frames: tuple[int, ...] | list[int]) -> None:
        cuts = [int(c) for c in frames]
        if any(c < 0 for c in cuts) or any(b <= a for a, b in zip(cuts, cuts[1:])):
            raise ValueError(f"scene cuts {cuts[:8]} must be ascending frame numbers")
        self.settings["scene_cuts"] = cuts

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

    def iter_frame_masks(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield, for every frame in order, ``(masked, spared)``: ``(n, 4)`` and ``(m, 4)`` float32 boxes.

        ``masked`` are the boxes of the masked tracks on that frame; ``spared`` the boxes of the tracks
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
