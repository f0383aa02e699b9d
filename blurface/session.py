"""One video under review: its plan, the proxy, thumbnails, people groups, the review log and Render.

:class:`ReviewSession` holds the review's state and makes the reviewer's changes (through the
plan's own edits, logged in the plan); :mod:`blurface.server` only speaks HTTP to it.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from . import overlay, people
from .embedding import Embeds
from .files import make_temp_dir
from .follow import add_manual_track
from .pipeline import RenderSettings, VideoSource
from .plan import Plan
from .decisions import who
from .types import BlurfaceError, InputError, Interrupted, OutputError

log = logging.getLogger(__name__)

PROXY_HEIGHT = 360
THUMBS_PER_TRACK = 3


@dataclass
class RenderJob:
    state: str = "idle"  # idle, running, done, failed
    done: int = 0
    total: int = 0
    output: str = ""
    error: str = ""
    cancel: threading.Event = field(default_factory=threading.Event)


class ReviewSession:
    """One video under review: its plan, the proxy, thumbnails, people groups and the review log.

    Args:
        plan: the plan to review (changed in place by the reviewer's actions).
        src: the video.
        save_path: where Save writes the reviewed plan (atomically).
        output: where Render writes the masked video.
        people_dir: where a person saved from the page goes (``NAME.npz``).
        embedder: embeds tracks that have no embeddings, for grouping; ``None``: no grouping.
        render_settings: mask effect, shape, pad and encoding of Render.
        overwrite: Render may replace an existing ``output`` (checked when Render is pressed).
    """

    def __init__(
        self,
        plan: Plan,
        src: str | os.PathLike,
        *,
        save_path: str | os.PathLike,
        output: str | os.PathLike,
        people_dir: str | os.PathLike,
        embedder: Embeds | None = None,
        render_settings: RenderSettings = RenderSettings(),
        overwrite: bool = False,
        source: VideoSource | None = None,
    ) -> None:
        self.plan = plan
        self.src = str(src)
        # The video, probed once for the proxy, the thumbnails and the people (each Render probes it again).
        self.source = source if source is not None else VideoSource(self.src)
        self.save_path = Path(save_path)
        self.output = Path(output)
        self.people_dir = Path(people_dir)
        self.embedder = embedder
        self.render_settings = render_settings
        self.overwrite = overwrite
        self.lock = threading.RLock()
        self.job = RenderJob()
        self._render_thread: threading.Thread | None = None
        # Unmasked video: in a private temp folder (mode 0700), removed by close(), or by a
        # later run should this one be killed.
        self.workdir = make_temp_dir("review")
        self.proxy = self.workdir / "proxy.mp4"
        self.thumbs: dict[str, bytes] = {}
        self.groups: list[list[int]] = []

    # ----- preparation ----------------------------------------------------------------------

    def prepare(self, progress=None) -> None:  # noqa: ANN001 - review.Progress
        """Make the proxy and thumbnails, and group tracks into people."""
        from .review import PREVIEW_ENCODE, render_range

        # The proxy is plain (nothing masked, nothing drawn): the page draws the boxes from
        # JSON, so a toggle shows at once without encoding anything again.
        bare = Plan(video=self.plan.video, mode=self.plan.mode, settings={}, tracks=[], times=self.plan.times)
        render_range(bare, self.proxy, height=PROXY_HEIGHT, src=self.src,
                     settings=RenderSettings(encode=PREVIEW_ENCODE), progress=progress, info=self.source.info)
        self._make_thumbs([t for t in self.plan.tracks])
        if self.embedder is not None:
            people.fill_embeddings(self.plan, self.embedder, src=self.src, info=self.source.info)
            self.groups = people.group_tracks(self.plan.tracks, threshold=self.embedder.tolerance)
        else:
            self.groups = [[t.id] for t in self.plan.tracks]

    def _make_thumbs(self, tracks: list) -> None:
        from . import media

        wanted: dict[int, list[tuple[int, int, np.ndarray]]] = {}
        for t in tracks:
            for k, f in enumerate(overlay.sheet_frames(t, THUMBS_PER_TRACK)):
                wanted.setdefault(f, []).append((t.id, k, t.xyxy[int(np.searchsorted(t.frames, f))]))
        if not wanted:
            return
        info = self.source.info
        for frame in media.iter_frames(info, start=float(self.plan.times[min(wanted)]),
                                       end=float(self.plan.times[max(wanted)]) + 1e-3, times=self.plan.times):
            for tid, k, box in wanted.get(frame.index, []):
                tile = cv2.resize(overlay.face_tile(frame.image, box), (72, 72), interpolation=cv2.INTER_AREA)
                ok, data = cv2.imencode(".jpg", tile, [cv2.IMWRITE_JPEG_QUALITY, 85])
                if ok:
                    self.thumbs[f"{tid}-{k}"] = data.tobytes()

    def close(self) -> None:
        """Stop a running render (its partial file is removed) and delete the temp folder."""
        self.job.cancel.set()
        if self._render_thread is not None:
            self._render_thread.join()
        shutil.rmtree(self.workdir, ignore_errors=True)

    # ----- what the page reads ------------------------------------------------------------------

    def state(self) -> dict:
        with self.lock:
            plan = self.plan
            person = {tid: k for k, g in enumerate(self.groups) for tid in g}
            tracks = [
                {
                    "id": t.id, "first": t.first, "last": t.last, "identity": t.identity, "distance": t.distance,
                    # What to call the face: only a matched face is named (decisions.who).
                    "label": who(t)[0], "detail": who(t)[1],
                    "decision": t.decision, "masked": t.masked, "reason": t.reason,
                    "category": overlay.category(t), "person": person.get(t.id),
                    "thumbs": [f"thumb/{t.id}-{k}.jpg" for k in range(THUMBS_PER_TRACK) if f"{t.id}-{k}" in self.thumbs],
                    "frames": [int(f) for f in t.frames],
                    "boxes": [[round(float(v), 1) for v in b] for b in t.xyxy],
                }
                for t in plan.tracks
            ]
            return {
                "video": {"name": Path(self.src).name, "width": plan.video.width, "height": plan.video.height,
                          "fps": float(plan.video.fps) if plan.video.fps else 30.0, "frames": plan.frame_count},
                "times": [round(float(x - plan.times[0]), 6) for x in plan.times],
                "mode": plan.mode,
                "tracks": tracks,
                "people": [list(g) for g in self.groups],
                "review": list(plan.review),
                "save_path": str(self.save_path),
                "output": str(self.output),
                "render": self.render_state(),
            }

    def render_state(self) -> dict:
        j = self.job
        return {"state": j.state, "done": j.done, "total": j.total, "output": j.output, "error": j.error}

    # ----- the reviewer's actions ---------------------------------------------------------------

    def set_track(self, track_id: int, masked: bool, reason: str = "", first: int | None = None,
                  last: int | None = None) -> int:
        """Mask or keep a track, or only its frames ``first..last``; returns the id of the changed track."""
        with self.lock:
            track = self.plan.track(track_id)
            if first is not None or last is not None:
                lo = track.first if first is None else int(first)
                hi = track.last if last is None else int(last)
                if hi < lo:
                    raise InputError(f"frame range {lo}-{hi} is empty: give 'from' at or before 'to'")
                before = {t.id for t in self.plan.tracks}
                track = self.plan.split(track_id, lo, hi)
                for t in self.plan.tracks:
                    if t.id not in before:  # new pieces belong to the same person
                        self._group_of(track_id).append(t.id)
                        self._thumbs_from(track_id, t.id)
            action = "mask" if masked else "keep"
            why = f"reviewer override: {'masked' if masked else 'kept'}" + (f" ({reason})" if reason else "")
            self.plan.override(track.id, masked=masked, reason=why)
            self.plan.log_review(action, track.id, reason, frames=[track.first, track.last])
            return track.id

    def trim(self, track_id: int, first: int, last: int, reason: str = "") -> None:
        """Keep only frames ``first..last`` of a track (a hand-added one that ran too far)."""
        with self.lock:
            try:
                track = self.plan.trim(track_id, first, last)
            except ValueError as e:  # the reviewer's range: said as the page's other refusals are
                raise InputError(str(e)) from e
            self.plan.log_review("trim", track_id, reason, frames=[track.first, track.last])

    def set_person(self, index: int, masked: bool, reason: str = "") -> list[int]:
        with self.lock:
            ids = list(self._group(index))
            for tid in ids:
                self.set_track(tid, masked, reason)
            return ids

    def split_person(self, track_id: int) -> None:
        """Take a track out of its group into a group of its own."""
        with self.lock:
            self._group_of(track_id).remove(track_id)
            self.groups = [g for g in self.groups if g] + [[track_id]]
            self.plan.log_review("split", track_id, "")

    def merge_people(self, a: int, b: int) -> None:
        with self.lock:
            ga, gb = self._group(a), self._group(b)
            if ga is gb:
                return
            ga.extend(gb)
            self.groups.remove(gb)
            self.plan.log_review("merge", None, "", tracks=sorted(ga))

    def save_person(self, index: int, name: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", name) or name.endswith(".npz"):
            raise InputError(f"name {name!r}: use letters, digits, '_', '.' and '-' (the file becomes NAME.npz)")
        with self.lock:
            ids = list(self._group(index))
            self.people_dir.mkdir(parents=True, exist_ok=True)
            path = self.people_dir / f"{name}.npz"
            people.save_person(self.plan, ids, path, embedder=self.embedder, name=name)
            self.plan.log_review("save_person", None, "", tracks=ids, gallery=str(path))
            return path

    def add_box(self, frame: int, box: list[float], reason: str = "") -> int:
        """Follow a box drawn on ``frame`` through its shot as a new masked track; returns its id.

        Raises:
            InputError: the box is not four finite numbers inside the picture, or the frame
                is outside the video.
        """
        w, h = self.plan.video.width, self.plan.video.height
        # A box may reach past the picture (follow_box clips it), but not by more than a picture:
        # [-1e9, -1e9, 1e9, 1e9] is no face.
        if len(box) != 4 or not all(math.isfinite(v) for v in box) or not (
                -w <= box[0] < box[2] <= 2 * w and -h <= box[1] < box[3] <= 2 * h):
            raise InputError(f"box {[round(v, 1) for v in box][:4]} is not on the {w}x{h} picture: "
                             "draw [x1, y1, x2, y2] on the picture")
        with self.lock:
            track = add_manual_track(self.plan, frame, box, reason=reason, src=self.src)
            self.groups.append([track.id])
            self._make_thumbs([track])
            return track.id

    def save(self) -> Path:
        with self.lock:
            self.plan.log_review("save", None, "", path=str(self.save_path))
            self.plan.save(self.save_path)
            return self.save_path

    def start_render(self) -> None:
        from .pipeline import Outputs, Request, run

        with self.lock:
            if self.job.state == "running":
                raise InputError("a render is already running: wait for it to finish")
            # Checked when Render is pressed, not when the review starts: nothing is written before.
            # A file this review rendered itself may be replaced by the next Render.
            if self.output.exists() and not (self.overwrite or self._rendered_before):
                raise OutputError(f"{self.output} exists: Render does not replace it; start the "
                                  "review again with --overwrite to replace it, or with -o for another file")
            # A snapshot, so changes made during the render wait for the next one.
            plan = self.plan.as_saved()
            self.plan.log_review("render", None, "", output=str(self.output))
            self.job = job = RenderJob(state="running", total=plan.frame_count, output=str(self.output))

        def progress(stage: str, n: int) -> None:
            if job.cancel.is_set():
                raise Interrupted("review stopped")
            job.done += n

        def work() -> None:
            try:
                replace = self.overwrite or self.output.exists() and self._rendered_before
                # Probed again (not self.source): a video replaced during a long review is refused, not masked
                # with another video's plan.
                run(Request(source=self.src, outputs=Outputs(video=self.output), plan=plan, render=self.render_settings,
                            overwrite=replace), progress)
                self._rendered_before = True
                job.state = "done"
            except BlurfaceError as e:
                job.state, job.error = "failed", str(e)
            except Exception as e:  # noqa: BLE001 - shown on the page as one line, logged in full
                log.exception("render failed")
                job.state, job.error = "failed", f"{type(e).__name__}: {e}"

        self._render_thread = threading.Thread(target=work, name="blurface-render", daemon=True)
        self._render_thread.start()

    _rendered_before = False

    # ----- helpers ----------------------------------------------------------------------

    def _group(self, index: int) -> list[int]:
        if not 0 <= index < len(self.groups):
            raise InputError(f"there is no person {index + 1}: the page lists {len(self.groups)}")
        return self.groups[index]

    def _group_of(self, track_id: int) -> list[int]:
        for g in self.groups:
            if track_id in g:
                return g
        self.groups.append([])
        return self.groups[-1]

    def _thumbs_from(self, old: int, new: int) -> None:
        for k in range(THUMBS_PER_TRACK):
            if f"{old}-{k}" in self.thumbs:
                self.thumbs[f"{new}-{k}"] = self.thumbs[f"{old}-{k}"]
