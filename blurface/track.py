"""Link per-frame face detections into tracks, fill the gaps between them, extend their ends.

The analysis pass runs the face detector only on some frames. :class:`FaceTracker`
links the detections of those frames into :class:`~blurface.types.Track` objects that
cover *every* frame from a face's first to its last detection (interpolating the frames
in between), so the renderer can mask frames the detector never looked at.
:func:`extend_track` adds a safety margin before and after a track, and :func:`box_at`
reads a track's box on one frame. Hard cuts between shots are found by
:class:`~blurface.shots.SceneCutDetector`; the analysis then calls :meth:`FaceTracker.cut`
so that no track is carried from one shot into the next.

All boxes are float32 pixel ``[x1, y1, x2, y2]`` in full-frame display coordinates
(see :mod:`blurface.types`). Frame indices count decoded frames from 0.

Privacy rule behind every choice here: tracking may *add* masks (a new track, a
longer track, a bigger box) but must never be the reason a face is left unmasked.
So every detection gets a track, ambiguous links are split rather than forced, and
a missed cut or a missed link costs an extra track, never a dropped box.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from . import boxes
from .assignment import close_contest, linear_assignment
from .types import (
    EMBEDDING_DIM,
    SOURCE_DETECTED,
    SOURCE_EXTENDED,
    SOURCE_INTERPOLATED,
    Faces,
    Track,
)

log = logging.getLogger(__name__)

EmbedFn = Callable[[np.ndarray], np.ndarray]

# Cost given to a forbidden (gated) pair. Any real cost is below ~10, so the
# assignment uses a forbidden pair only when nothing else is left, and such pairs
# are discarded afterwards.
_FORBIDDEN = 1e6


# --------------------------------------------------------------------------- helpers


def _velocity(frames: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Per-frame velocity of each xyxy coordinate, least squares over the given points.

    Args:
        frames: ``(n,)`` frame indices (need not be evenly spaced).
        boxes: ``(n, 4)`` xyxy boxes at those frames.

    Returns:
        ``(4,)`` float64 pixels per frame; zeros for fewer than two distinct frames.
        A least-squares slope rather than last-minus-previous so one jittery
        detection does not throw the prediction across the frame.
    """
    if len(frames) < 2:
        return np.zeros(4)
    t = np.asarray(frames, np.float64)
    t = t - t.mean()
    denom = float((t * t).sum())
    if denom == 0.0:
        return np.zeros(4)
    b = np.asarray(boxes, np.float64)
    return (t[:, None] * (b - b.mean(axis=0))).sum(axis=0) / denom


# --------------------------------------------------------------------------- tracker


@dataclass
class _LiveTrack:
    """A track still open for new detections. Internal to :class:`FaceTracker`."""

    id: int
    det_frames: list[int] = field(default_factory=list)
    det_boxes: list[np.ndarray] = field(default_factory=list)  # each (4,) float32 xyxy
    emb_frames: list[int] = field(default_factory=list)
    embs: list[np.ndarray] = field(default_factory=list)  # each (128,) float32
    # Running sum of this track's embeddings: its mean is the Euclidean centroid, so
    # distances to it are on the embedder's own scale (its track_gate).
    emb_sum: np.ndarray | None = None
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(4))  # (4,) xyxy px/frame

    @property
    def last_frame(self) -> int:
        return self.det_frames[-1]

    @property
    def last_box(self) -> np.ndarray:
        return self.det_boxes[-1]

    @property
    def mean_embedding(self) -> np.ndarray | None:
        return None if self.emb_sum is None else (self.emb_sum / len(self.embs)).astype(np.float32)

    def add(self, frame: int, box: np.ndarray, embedding: np.ndarray | None, window: int) -> None:
        self.det_frames.append(frame)
        self.det_boxes.append(np.asarray(box, np.float32).copy())
        if embedding is not None:
            self.emb_frames.append(frame)
            self.embs.append(embedding.astype(np.float32))
            self.emb_sum = embedding.astype(np.float64) if self.emb_sum is None else self.emb_sum + embedding
        self._fit_velocity(window)

    def _fit_velocity(self, window: int) -> None:
        self.velocity = _velocity(np.array(self.det_frames[-window:]), np.array(self.det_boxes[-window:]))

    def prepend(self, frames: list[int], boxes: list[np.ndarray], window: int) -> None:
        """Detections found by following the face backwards, all before its first one, ascending."""
        self.det_frames[:0] = [int(f) for f in frames]
        self.det_boxes[:0] = [np.asarray(b, np.float32).copy() for b in boxes]
        # A face found by a whole-frame pass is often already moving: without the velocity of
        # its earlier frames, its regions stayed where it was born and a face crossing the
        # frame at 28 px a frame was found again only by the next whole-frame pass, 8 frames
        # on (held-out edges case, seed 104: the interpolation between lagged half a face).
        self._fit_velocity(window)

    def predict(self, frame: int) -> np.ndarray:
        """Constant-velocity box at ``frame``: ``(4,)`` float64 xyxy.

        Centre and size move linearly; the size is kept within 0.5x..2x of the last
        box so a noisy size trend cannot collapse or explode the box over a long gap.
        """
        last = self.last_box.astype(np.float64)
        dt = frame - self.last_frame
        moved = last + self.velocity * dt
        cx, cy = (moved[0] + moved[2]) / 2, (moved[1] + moved[3]) / 2
        w0, h0 = last[2] - last[0], last[3] - last[1]
        w = float(np.clip(moved[2] - moved[0], 0.5 * w0, 2.0 * w0))
        h = float(np.clip(moved[3] - moved[1], 0.5 * h0, 2.0 * h0))
        return np.array([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2])

    def to_track(self) -> Track:
        """Detections plus linear interpolation on every frame between them."""
        df = np.asarray(self.det_frames, np.int64)
        db = np.stack(self.det_boxes).astype(np.float64)
        frames = np.arange(df[0], df[-1] + 1, dtype=np.int64)
        xyxy = np.stack([np.interp(frames, df, db[:, c]) for c in range(4)], axis=1).astype(np.float32)
        xyxy[df - df[0]] = db.astype(np.float32)  # detected rows bit-exact
        source = np.full(len(frames), SOURCE_INTERPOLATED, np.uint8)
        source[df - df[0]] = SOURCE_DETECTED
        embeddings = np.stack(self.embs) if self.embs else np.zeros((0, EMBEDDING_DIM), np.float32)
        return Track(
            id=self.id,
            frames=frames,
            xyxy=xyxy,
            source=source,
            embeddings=embeddings,
            embedding_frames=np.asarray(self.emb_frames, np.int64),
        )


class FaceTracker:
    """IoU tracker with constant-velocity prediction, embedding-aware crossings and gap filling.

    Contract (after roboflow ``trackers``): :meth:`update` takes one detection frame's
    :class:`~blurface.types.Faces` and returns them with ``track_id`` set; :meth:`reset`
    forgets everything. Call :meth:`update` only on frames where the detector ran, with
    strictly increasing ``frame_index``; frames in between need no call. Collect
    finished tracks with :meth:`pop_finished` as you go (keeps memory bounded) and the
    rest with :meth:`finish` at the end. Each returned :class:`~blurface.types.Track`
    covers every frame from its first to its last detection: ``SOURCE_DETECTED`` rows
    where the detector found it, ``SOURCE_INTERPOLATED`` (linear) rows in between.

    Why not a tracker library (e.g. ``trackers``' / supervision's ByteTrack):

    * ByteTrack drops unconfirmed and low-score detections, and returns only confirmed
      tracks (``tracker_id == -1`` rows are filtered out). Here tracking may add masks
      but must never be the reason a face is left unmasked, so *every* detection gets
      a track, from the first frame it is seen.
    * It pulls in extra dependencies (scipy, and more) for a few lines of IoU matching.
    * We run the detector on some frames only and need *offline* interpolation of the
      skipped frames between detections, which it does not do.

    Association, on each call:

    1. Each live track predicts its box at ``frame_index`` from the constant velocity
       (centre and size) of its last ``velocity_window`` detections, per frame, so a
       gap of several frames still predicts the right place.
    2. A (track, detection) pair is a candidate when IoU(prediction, detection) >=
       ``iou_threshold``, or, for small fast faces whose boxes no longer overlap,
       when the centres are within ``center_gate`` face sizes and the sizes differ by
       at most ``max_scale_change``. Cost: ``(1 - IoU) + centre distance / size``.
    3. Identity: a detection whose box overlaps the predictions of 2+ tracks, or a
       track whose prediction overlaps 2+ detections, or a pair whose cost is within a
       small margin of a rival's (:func:`close_contest`), is *ambiguous*. For those rows
       ``embed(rows)`` is called (only for rows without an embedding, and only if a
       competing track has one). Then, for every candidate pair whose embeddings are
       both known (ambiguous or not), ``embedding_weight * ||track mean - embedding||``
       is added to the cost, and a pair whose distance exceeds ``embedding_gate`` is
       forbidden: linking two people into one track could let the target inherit
       someone else's decision.
    4. A minimum-cost assignment (small Hungarian) picks the matches. Unmatched
       detections start new tracks (and are embedded, when ``embed`` is given, so
       the track can be told apart at a later crossing). Unmatched tracks stay live
       until more than ``max_gap`` frames have passed since their last detection.

    Embeddings in the returned ``Faces``: if any row has an embedding (given by the
    caller in ``faces.embedding`` or computed here), ``embedding`` is an ``(N, 128)``
    float32 array with NaN rows for faces that were not embedded; otherwise it stays
    ``None``. Embeddings given by the caller are used as they are and never recomputed.
    Every embedding a track's detection had is kept in its ``Track.embeddings`` /
    ``embedding_frames``.

    Args:
        iou_threshold: minimum IoU between a track's predicted box and a detection for
            them to be linked. Lower links faster/jerkier motion and longer gaps but
            risks linking neighbours; higher splits tracks more often (safe, but more
            short tracks for the identity stage to decide).
        max_gap: frames a track may go undetected and still be continued (the frames
            in between are interpolated). Raise it to bridge longer detector misses
            and occlusions (interpolated masks over longer stretches); lower it if
            people leave and others arrive at the same place within that time.
        embedding_gate: largest embedding distance (on the embedder's scale: the analysis
            passes its ``track_gate``; the default 0.6 is dlib's) at which a detection may join a track. Lower splits
            tracks more readily at crossings; higher trusts geometry more.
        embedding_weight: how strongly embedding distance counts against geometry in
            ambiguous pairs. Raise it to let identity override position at crossings.
        center_gate: largest centre offset from the prediction, in face sizes, for the
            distance fallback when boxes no longer overlap. Raise it for small, fast
            or erratically moving faces; lower it in crowds.
        max_scale_change: largest size ratio between prediction and detection for the
            distance fallback. Raise it for fast zooms.
        velocity_window: how many recent detections estimate a track's velocity. More
            smooths detector jitter; fewer reacts faster to turns.
    """

    def __init__(
        self,
        *,
        iou_threshold: float = 0.15,
        max_gap: int = 30,
        embedding_gate: float = 0.6,
        embedding_weight: float = 1.0,
        center_gate: float = 1.0,
        max_scale_change: float = 2.0,
        velocity_window: int = 3,
    ) -> None:
        if not 0.0 < iou_threshold <= 1.0:
            raise ValueError(f"iou_threshold must be in (0, 1], got {iou_threshold!r}")
        if max_gap < 1:
            raise ValueError(f"max_gap must be >= 1 frame, got {max_gap!r}")
        if embedding_gate <= 0:
            raise ValueError(f"embedding_gate must be > 0, got {embedding_gate!r}")
        if velocity_window < 2:
            raise ValueError(f"velocity_window must be >= 2 detections, got {velocity_window!r}")
        if max_scale_change < 1:
            raise ValueError(f"max_scale_change must be >= 1, got {max_scale_change!r}")
        self.iou_threshold = float(iou_threshold)
        self.max_gap = int(max_gap)
        self.embedding_gate = float(embedding_gate)
        self.embedding_weight = float(embedding_weight)
        self.center_gate = float(center_gate)
        self.max_scale_change = float(max_scale_change)
        self.velocity_window = int(velocity_window)
        self.reset()

    def reset(self) -> None:
        """Forget all tracks and restart ids at 0 (a new video). Between shots use :meth:`cut`."""
        self._live: list[_LiveTrack] = []
        self._finished: list[Track] = []
        self._next_id = 0  # on the instance: two trackers never share a counter
        self._last_frame: int | None = None  # last update() frame
        self._floor = -1  # frames < floor are closed (after a cut)

    # ------------------------------------------------------------------ public API

    @property
    def active_count(self) -> int:
        """Number of live tracks held (open for new detections)."""
        return len(self._live)

    @property
    def next_id(self) -> int:
        """The id the next new track will get: ids at or above it after an update are new tracks."""
        return self._next_id

    def live(self, frame_index: int) -> tuple[np.ndarray, np.ndarray]:
        """The live tracks' ``(ids (n,), predicted boxes (n, 4) at frame_index)``."""
        if not self._live:
            return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
        ids = np.array([t.id for t in self._live], np.int64)
        pred = np.stack([t.predict(frame_index) for t in self._live]).astype(np.float32)
        return ids, pred

    def prepend(self, track_id: int, frames: list[int], boxes: list[np.ndarray]) -> None:
        """Add detections before a live track's first one (found by following it backwards).

        Raises:
            ValueError: no live track ``track_id``, or a frame is not before its first
                detection or not after the last cut.
        """
        for t in self._live:
            if t.id == track_id:
                if frames and (max(frames) >= t.det_frames[0] or min(frames) < self._floor):
                    raise ValueError(
                        f"frames {min(frames)}..{max(frames)} must lie between the cut at {self._floor} "
                        f"and track {track_id}'s first detection at {t.det_frames[0]}"
                    )
                order = np.argsort(frames)
                t.prepend([frames[k] for k in order], [boxes[k] for k in order], self.velocity_window)
                return
        raise ValueError(f"no live track {track_id}")

    def update(
        self, frame_index: int, faces: Faces, *, embed: EmbedFn | None = None, looked: np.ndarray | None = None
    ) -> Faces:
        """Associate one detection frame's faces with tracks.

        Args:
            frame_index: frame the detections come from; strictly increasing across calls.
            faces: ``(N,)`` detections, boxes float32 xyxy full-frame pixels. Its
                ``embedding`` rows, when given and finite, are used instead of calling
                ``embed``.
            embed: optional ``embed(rows) -> (len(rows), 128) float32``, where ``rows``
                is an int64 array of row indices into ``faces``. Called at most twice
                per update, only for ambiguous rows and for rows starting new tracks.
            looked: ids of the tracks the detector looked for on this frame (it searched
                only regions around them). Other live tracks are left as they are (not
                matched; they still end ``max_gap`` frames after their last detection).
                ``None``: the whole frame was searched.

        Returns:
            A new ``Faces`` (same rows, same order) with ``track_id`` set on *every* row
            (unmatched detections start new tracks) and ``embedding`` as described in
            the class docstring.

        Raises:
            ValueError: ``frame_index`` is not after the previous update or cut, or
                ``embed`` returns the wrong shape.
        """
        frame_index = int(frame_index)
        if self._last_frame is not None and frame_index <= self._last_frame:
            raise ValueError(f"frame_index must increase strictly: got {frame_index} after {self._last_frame}")
        if frame_index < self._floor:
            raise ValueError(f"frame_index {frame_index} is before the last cut at {self._floor}")
        self._last_frame = frame_index
        self._expire(frame_index)

        n = len(faces)
        known = np.zeros((n, EMBEDDING_DIM), np.float32)
        has = np.zeros(n, bool)
        if faces.embedding is not None:
            known[:] = faces.embedding
            has[:] = np.isfinite(faces.embedding).all(axis=1)

        def ensure(rows: np.ndarray) -> None:
            rows = rows[~has[rows]]
            if embed is None or len(rows) == 0:
                return
            out = np.asarray(embed(rows.astype(np.int64)), np.float32)
            if out.shape != (len(rows), EMBEDDING_DIM):
                raise ValueError(
                    f"embed() returned shape {out.shape} for {len(rows)} rows; expected ({len(rows)}, {EMBEDDING_DIM})"
                )
            ok = np.isfinite(out).all(axis=1)
            known[rows[ok]] = out[ok]
            has[rows[ok]] = True

        tracks = self._live if looked is None else [t for t in self._live if t.id in set(np.asarray(looked).tolist())]
        track_ids = np.full(n, -1, np.int64)
        if tracks and n:
            cost, cand, overlapping = self._geometry(frame_index, faces.xyxy, tracks)
            # Ambiguous: boxes that overlap more than one track (or tracks overlapping more than
            # one box): faces crossing. Neighbours that are merely near (a seated audience,
            # candidates only through the centre-distance fallback) are linked by geometry;
            # embedding them on every crowded frame cost 340 embeddings on the hamilton clip.
            amb = overlapping | close_contest(cost, cand)
            amb_rows = np.flatnonzero((amb.sum(axis=0) >= 2) | (amb & (amb.sum(axis=1) >= 2)[:, None]).any(axis=0))
            # Embedding only helps if a track competing for the row has an embedding.
            with_emb = np.array([t.emb_sum is not None for t in tracks])
            need = [r for r in amb_rows if (cand[:, r] & with_emb).any()]
            ensure(np.asarray(need, np.int64))
            for ti, t in enumerate(tracks):
                mean = t.mean_embedding
                if mean is None:
                    continue
                for r in np.flatnonzero(cand[ti] & has):
                    dist = float(np.linalg.norm(known[r] - mean))
                    if dist > self.embedding_gate:
                        cand[ti, r] = False
                    else:
                        cost[ti, r] += self.embedding_weight * dist
            cost = np.where(cand, cost, _FORBIDDEN)
            for ti, r in linear_assignment(cost):
                if not cand[ti, r]:
                    continue
                t = tracks[ti]
                t.add(frame_index, faces.xyxy[r], known[r] if has[r] else None, self.velocity_window)
                track_ids[r] = t.id

        new_rows = np.flatnonzero(track_ids < 0)
        ensure(new_rows)
        for r in new_rows:
            t = _LiveTrack(id=self._next_id)
            self._next_id += 1
            t.add(frame_index, faces.xyxy[r], known[r] if has[r] else None, self.velocity_window)
            self._live.append(t)
            track_ids[r] = t.id

        embedding = None
        if has.any():
            embedding = np.where(has[:, None], known, np.float32(np.nan)).astype(np.float32)
        return Faces(faces.xyxy.copy(), faces.score.copy(), track_ids, embedding)

    def cut(self, frame_index: int) -> None:
        """Scene cut before ``frame_index``: end all live tracks so none spans the cut.

        Raises:
            ValueError: ``frame_index`` is not after the last updated frame (that
                frame's detections would already be on the wrong side of the cut).
        """
        frame_index = int(frame_index)
        if self._last_frame is not None and frame_index <= self._last_frame:
            raise ValueError(
                f"cut({frame_index}) must come before update() of that frame; last update was {self._last_frame}"
            )
        self._finished.extend(t.to_track() for t in self._live)
        self._live = []
        self._floor = frame_index

    def pop_finished(self, frame_index: int) -> list[Track]:
        """Return and forget the tracks that can no longer be extended.

        Those are tracks ended by :meth:`cut` and tracks whose last detection is more
        than ``max_gap`` frames before ``frame_index`` (the current frame). Call it
        regularly so memory stays bounded by the number of faces on screen.

        Returns:
            Finished tracks, in the order they ended.
        """
        self._expire(int(frame_index))
        out, self._finished = self._finished, []
        return out

    def finish(self) -> list[Track]:
        """End all remaining tracks and return them with any not yet popped, sorted by id."""
        out = self._finished + [t.to_track() for t in self._live]
        self._finished = []
        self._live = []
        return sorted(out, key=lambda t: t.id)

    # ------------------------------------------------------------------ internals

    def _expire(self, frame_index: int) -> None:
        keep = []
        for t in self._live:
            if frame_index - t.last_frame > self.max_gap:
                self._finished.append(t.to_track())
            else:
                keep.append(t)
        self._live = keep

    def _geometry(
        self, frame_index: int, det: np.ndarray, tracks: list[_LiveTrack]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Geometric cost, candidate mask and overlapping-candidate mask, all ``(tracks, detections)``."""
        pred = np.stack([t.predict(frame_index) for t in tracks])
        iou = boxes.iou_matrix(pred, det)
        pc = (pred[:, :2] + pred[:, 2:]) / 2
        dc = (det[:, :2].astype(np.float64) + det[:, 2:]) / 2
        ps, ds = boxes.side(pred), boxes.side(det)
        scale = (ps[:, None] + ds[None, :]) / 2
        dist = np.linalg.norm(pc[:, None, :] - dc[None, :, :], axis=2) / scale
        ratio = np.maximum(ps[:, None], ds[None, :]) / np.minimum(ps[:, None], ds[None, :])
        cand = (iou >= self.iou_threshold) | ((dist <= self.center_gate) & (ratio <= self.max_scale_change))
        return (1.0 - iou) + dist, cand, cand & (iou >= self.iou_threshold)


# --------------------------------------------------------------------------- track helpers


def _end_velocity(track: Track, at_end: bool, window: int = 3) -> np.ndarray:
    """Per-frame xyxy velocity ``(4,)`` from the detections nearest one end of the track."""
    rows = np.flatnonzero(track.source == SOURCE_DETECTED)
    if len(rows) < 2:
        # No detections to trust (e.g. an already-extended stub): use all rows.
        rows = np.arange(len(track))
    rows = rows[-window:] if at_end else rows[:window]
    return _velocity(track.frames[rows], track.xyxy[rows])


def _moved(end: np.ndarray, velocity: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """``(len(steps), 4)`` float64: ``end`` moved ``steps`` frames along its centre's velocity.

    The box keeps the end box's size: the edges' own velocities also carry the box's
    growth (a face turning or nearing the camera), and extrapolated over a second that
    grew one face on the shared clip to 620 px and masked half the frame.
    """
    centre = velocity.reshape(2, 2).mean(axis=0)
    return end[None, :].astype(np.float64) + steps[:, None] * np.tile(centre, 2)[None, :]


def _steps_inside(end: np.ndarray, velocity: np.ndarray, n: int, frame_size: tuple[int, int]) -> int:
    """How many of the next ``n`` steps leave some of the moved box inside the ``(width, height)`` frame."""
    if n <= 0:
        return 0
    w, h = frame_size
    m = _moved(end, velocity, np.arange(1, n + 1, dtype=np.float64))
    out = (m[:, 0] >= w) | (m[:, 2] <= 0) | (m[:, 1] >= h) | (m[:, 3] <= 0)
    return int(np.argmax(out)) if out.any() else n


def extend_track(
    track: Track, *, before: int, after: int, lo: int, hi: int, frame_size: tuple[int, int] | None = None
) -> Track:
    """Return a copy extended by up to ``before``/``after`` frames, clamped to ``[lo, hi]``.

    A face is usually visible a little before its first and after its last detection
    (it entered or left between detection frames, or the detector missed it while it
    was turned). The extension covers that: on the frame ``t`` frames past an end, the
    box is the union of the end box and the end box moved ``t`` frames along the
    track's centre velocity (estimated from the detections nearest that end; the box
    keeps its end size), so a moving face's extrapolated path is covered and a still
    face keeps its box.

    Args:
        track: the track to extend; not modified.
        before: frames to add before ``track.first`` (>= 0).
        after: frames to add after ``track.last`` (>= 0).
        lo: first frame of the shot, inclusive; no row is added before it.
        hi: last frame of the shot, inclusive; no row is added after it.
        frame_size: ``(width, height)``: when given, the extension stops where the
            extrapolated face has left the picture (on the shared clip, a face leaving
            through the corner swept a mask 30 frames on, over people still there).

    Returns:
        A new ``Track`` (other fields copied) with ``SOURCE_EXTENDED`` rows added.
        Existing rows are never removed, even if they lie outside ``[lo, hi]``.

    Raises:
        ValueError: ``before``/``after`` negative or the track is empty.
    """
    if before < 0 or after < 0:
        raise ValueError(f"before and after must be >= 0, got before={before}, after={after}")
    if len(track) == 0:
        raise ValueError(f"track {track.id} is empty")
    n_before = max(0, min(before, track.first - lo))
    n_after = max(0, min(after, hi - track.last))
    v_first = -_end_velocity(track, at_end=False)
    v_last = _end_velocity(track, at_end=True)
    if frame_size is not None:
        # A face whose path has taken it wholly out of the picture has left: no more rows.
        n_before = _steps_inside(track.xyxy[0], v_first, n_before, frame_size)
        n_after = _steps_inside(track.xyxy[-1], v_last, n_after, frame_size)

    def grow(end: np.ndarray, velocity: np.ndarray, steps: np.ndarray) -> np.ndarray:
        moved = _moved(end, velocity, steps)
        lo_xy = np.minimum(np.minimum(moved[:, :2], moved[:, 2:]), end[None, :2])
        hi_xy = np.maximum(np.maximum(moved[:, :2], moved[:, 2:]), end[None, 2:])
        return np.concatenate([lo_xy, hi_xy], axis=1).astype(np.float32)

    parts_f = [track.frames]
    parts_b = [track.xyxy]
    parts_s = [track.source]
    if n_before:
        steps = np.arange(n_before, 0, -1, dtype=np.float64)  # distance back from the first frame
        parts_f.insert(0, np.arange(track.first - n_before, track.first, dtype=np.int64))
        parts_b.insert(0, grow(track.xyxy[0], v_first, steps))
        parts_s.insert(0, np.full(n_before, SOURCE_EXTENDED, np.uint8))
    if n_after:
        steps = np.arange(1, n_after + 1, dtype=np.float64)
        parts_f.append(np.arange(track.last + 1, track.last + 1 + n_after, dtype=np.int64))
        parts_b.append(grow(track.xyxy[-1], v_last, steps))
        parts_s.append(np.full(n_after, SOURCE_EXTENDED, np.uint8))
    return dataclasses.replace(
        track,
        frames=np.concatenate(parts_f),
        xyxy=np.concatenate(parts_b),
        source=np.concatenate(parts_s),
        embeddings=track.embeddings.copy(),
        embedding_frames=track.embedding_frames.copy(),
    )


def box_at(track: Track, frame_index: int) -> np.ndarray | None:
    """The track's ``(4,)`` float32 xyxy box on ``frame_index``, or ``None`` if it does not cover it."""
    if len(track) == 0 or not track.first <= frame_index <= track.last:
        return None
    i = frame_index - track.first
    if i >= len(track) or track.frames[i] != frame_index:  # not contiguous (hand-built track): search
        i = int(np.searchsorted(track.frames, frame_index))
        if i >= len(track) or track.frames[i] != frame_index:
            return None
    return track.xyxy[i]
