"""Tests for blurface.track on synthetic detections and generated frames (no video)."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import pytest

from blurface.assignment import linear_assignment
from blurface.track import (
    FaceTracker,
    box_at,
    extend_track,
)
from blurface.types import (
    EMBEDDING_DIM,
    SOURCE_DETECTED,
    SOURCE_EXTENDED,
    SOURCE_INTERPOLATED,
    Faces,
    Track,
)

# --------------------------------------------------------------------------- builders


def box(cx: float, cy: float, size: float = 60.0) -> list[float]:
    """A square xyxy box centred on (cx, cy)."""
    h = size / 2
    return [cx - h, cy - h, cx + h, cy + h]


def make_faces(boxes: Sequence[Sequence[float]], *, embeddings: np.ndarray | None = None) -> Faces:
    """Faces from a list of xyxy boxes (track ids unset)."""
    xyxy = np.asarray(boxes, np.float32).reshape(-1, 4)
    return Faces(xyxy, np.ones(len(xyxy), np.float32), embedding=embeddings)


def identity_vectors(n: int, seed: int = 0) -> np.ndarray:
    """``n`` random unit vectors in 128-d: pairwise distance about sqrt(2), like different people."""
    v = np.random.default_rng(seed).normal(size=(n, EMBEDDING_DIM))
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


class FakeEmbedder:
    """Per-frame ``embed(rows)`` that knows each row's hidden identity; counts rows embedded."""

    def __init__(self, vectors: np.ndarray, noise: float = 0.02, seed: int = 1) -> None:
        self.vectors = vectors
        self.noise = noise
        self.rng = np.random.default_rng(seed)
        self.rows_embedded = 0
        self.calls = 0

    def for_frame(self, identities: Sequence[int]) -> Callable[[np.ndarray], np.ndarray]:
        def embed(rows: np.ndarray) -> np.ndarray:
            assert rows.dtype == np.int64 and len(rows) > 0
            self.calls += 1
            self.rows_embedded += len(rows)
            base = self.vectors[[identities[r] for r in rows]]
            return (base + self.rng.normal(0, self.noise, base.shape)).astype(np.float32)

        return embed


def run(
    tracker: FaceTracker,
    detections: dict[int, list[list[float]]],
    *,
    identities: dict[int, list[int]] | None = None,
    embedder: FakeEmbedder | None = None,
) -> tuple[dict[int, np.ndarray], list[Track]]:
    """Feed detections (frame -> boxes) in frame order; return ids per frame and all tracks."""
    ids: dict[int, np.ndarray] = {}
    tracks: list[Track] = []
    for f in sorted(detections):
        embed = None
        if embedder is not None and identities is not None:
            embed = embedder.for_frame(identities[f])
        out = tracker.update(f, make_faces(detections[f]), embed=embed)
        ids[f] = out.track_id
        tracks += tracker.pop_finished(f)
    tracks += tracker.finish()
    return ids, tracks


def assert_tracks_valid(
    tracks: list[Track], detections: dict[int, list[list[float]]], ids: dict[int, np.ndarray]
) -> None:
    """Every detection is on exactly its track, at its frame, with its exact box; frames contiguous."""
    by_id = {t.id: t for t in tracks}
    assert len(by_id) == len(tracks), "track ids must be unique"
    for t in tracks:
        assert np.array_equal(t.frames, np.arange(t.first, t.last + 1)), "frames must be contiguous"
        assert t.source[0] == SOURCE_DETECTED and t.source[-1] == SOURCE_DETECTED
        assert t.xyxy.dtype == np.float32
    n_detections = 0
    for f, boxes in detections.items():
        assert (ids[f] >= 0).all(), "every detection gets a track id"
        assert len(set(ids[f].tolist())) == len(boxes), "two detections of one frame share a track"
        for b, tid in zip(boxes, ids[f], strict=True):
            t = by_id[int(tid)]
            i = f - t.first
            assert t.source[i] == SOURCE_DETECTED
            np.testing.assert_array_equal(t.xyxy[i], np.asarray(b, np.float32))
        n_detections += len(boxes)
    assert sum(t.detected_count for t in tracks) == n_detections


# --------------------------------------------------------------------------- assignment


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (3, 2), (4, 4), (5, 6), (6, 4)])
def test_linear_assignment_matches_brute_force(shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(sum(shape))
    for _ in range(20):
        cost = rng.random(shape)
        pairs = linear_assignment(cost)
        assert len(pairs) == min(shape)
        assert len({r for r, _ in pairs}) == len({c for _, c in pairs}) == min(shape)
        n, m = shape
        if n <= m:
            best = min(sum(cost[i, p[i]] for i in range(n)) for p in itertools.permutations(range(m), n))
        else:
            best = min(sum(cost[p[j], j] for j in range(m)) for p in itertools.permutations(range(n), m))
        assert sum(cost[r, c] for r, c in pairs) == pytest.approx(best)


# --------------------------------------------------------------------------- linking and gaps


def test_linear_motion_every_third_frame_is_one_track_on_the_line() -> None:
    def truth(f: int) -> list[float]:
        return box(100 + 4.0 * f, 200 + 1.5 * f, 60 + 0.2 * f)

    detections = {f: [truth(f)] for f in range(0, 61, 3)}
    ids, tracks = run(FaceTracker(), detections)
    assert len(tracks) == 1
    (t,) = tracks
    assert (t.first, t.last) == (0, 60)
    expected = np.array([truth(f) for f in range(61)], np.float32)
    np.testing.assert_allclose(t.xyxy, expected, atol=1e-3)
    assert np.array_equal(np.flatnonzero(t.source == SOURCE_DETECTED), np.arange(0, 61, 3))
    assert (t.source[t.frames % 3 != 0] == SOURCE_INTERPOLATED).all()
    assert_tracks_valid(tracks, detections, ids)


@pytest.mark.parametrize("missed", [[15], [15, 18, 21], [9, 12, 15, 18, 21, 24, 27]])
def test_detector_misses_are_filled(missed: list[int]) -> None:
    def truth(f: int) -> list[float]:
        return box(100 + 3.0 * f, 150, 50)

    detections = {f: [truth(f)] for f in range(0, 46, 3) if f not in missed}
    ids, tracks = run(FaceTracker(max_gap=30), detections)
    assert len(tracks) == 1
    (t,) = tracks
    assert (t.first, t.last) == (0, 45)
    for f in missed:
        assert t.source[f] == SOURCE_INTERPOLATED
        np.testing.assert_allclose(box_at(t, f), truth(f), atol=1e-3)
    assert_tracks_valid(tracks, detections, ids)


@pytest.mark.parametrize(("gap", "n_tracks"), [(1, 1), (29, 1), (30, 1), (31, 2), (100, 2)])
def test_gap_longer_than_max_gap_splits(gap: int, n_tracks: int) -> None:
    detections = {f: [box(200, 200)] for f in range(0, 10)}
    detections |= {f: [box(200, 200)] for f in range(9 + gap, 20 + gap)}
    ids, tracks = run(FaceTracker(max_gap=30), detections)
    assert len(tracks) == n_tracks
    assert_tracks_valid(tracks, detections, ids)
    if n_tracks == 2:
        assert tracks[0].last == 9 and tracks[1].first == 9 + gap


def test_velocity_predicts_across_skipped_frames_for_small_fast_faces() -> None:
    # 24 px face moving 5 px/frame, detected every 6th frame, plus frame 1 so that the new
    # track has a velocity. Boxes 6 frames apart do not overlap at all (30 px > 24 px), and
    # their centres are 1.25 face sizes apart: only the predicted motion links them.
    def truth(f: int) -> list[float]:
        return box(50 + 5.0 * f, 100, 24)

    tracker = FaceTracker()
    detections: dict[int, list[list[float]]] = {}
    ids: dict[int, np.ndarray] = {}
    for f in range(0, 121):
        if f % 6 == 0 or f == 1:
            detections[f] = [truth(f)]
            ids[f] = tracker.update(f, make_faces(detections[f])).track_id
    tracks = tracker.finish()
    assert len(tracks) == 1
    np.testing.assert_allclose(tracks[0].xyxy, [truth(f) for f in range(121)], atol=1e-3)
    assert_tracks_valid(tracks, detections, ids)


def test_a_face_followed_backwards_predicts_with_the_motion_found_there() -> None:
    # Born on frame 10 by a whole-frame pass while crossing the frame at 28 px a frame;
    # frames 7-9 found by following it back. Regions around it must look where it goes,
    # not where it was born (held-out edges case, seed 104: half a face went unmasked).
    def truth(f: int) -> list[float]:
        return box(600 - 28.0 * f, 140, 45)

    tracker = FaceTracker()
    tid = int(tracker.update(10, make_faces([truth(10)])).track_id[0])
    _, before = tracker.live(12)
    np.testing.assert_allclose(before[0], truth(10), atol=1e-3)  # no motion known yet
    tracker.prepend(tid, [7, 8, 9], [np.array(truth(f), np.float32) for f in (7, 8, 9)])
    _, after = tracker.live(12)
    np.testing.assert_allclose(after[0], truth(12), atol=1e-3)
    # ... so the next detection there joins the same track.
    assert int(tracker.update(12, make_faces([truth(12)])).track_id[0]) == tid


def test_every_detection_gets_a_track_in_clutter() -> None:
    rng = np.random.default_rng(7)
    detections = {}
    for f in range(0, 300, 2):
        n = int(rng.integers(0, 7))
        centres = rng.uniform(0, 400, size=(n, 2))
        detections[f] = [box(cx, cy, float(rng.uniform(20, 90))) for cx, cy in centres]
    ids, tracks = run(FaceTracker(), detections)
    assert_tracks_valid(tracks, detections, ids)


def test_returned_faces_keep_rows_and_order() -> None:
    tracker = FaceTracker()
    faces = make_faces([box(100, 100), box(300, 100), box(500, 100)])
    faces.score = np.array([0.5, 0.9, 0.1], np.float32)
    out = tracker.update(0, faces)
    np.testing.assert_array_equal(out.xyxy, faces.xyxy)
    np.testing.assert_array_equal(out.score, faces.score)
    assert out.track_id.tolist() == [0, 1, 2]
    assert out.embedding is None  # nothing embedded, nothing given
    assert faces.track_id.tolist() == [-1, -1, -1]  # input untouched
    assert len(tracker.update(1, Faces.empty())) == 0


def test_frame_index_must_increase() -> None:
    tracker = FaceTracker()
    tracker.update(5, make_faces([box(100, 100)]))
    with pytest.raises(ValueError, match="increase"):
        tracker.update(5, make_faces([box(100, 100)]))
    with pytest.raises(ValueError):
        tracker.cut(5)


def test_track_ids_are_per_instance_and_reset() -> None:
    a, b = FaceTracker(), FaceTracker()
    assert a.update(0, make_faces([box(10, 10), box(200, 10)])).track_id.tolist() == [0, 1]
    assert b.update(0, make_faces([box(10, 10)])).track_id.tolist() == [0]
    a.reset()
    assert a.active_count == 0 and a.finish() == []
    assert a.update(0, make_faces([box(10, 10)])).track_id.tolist() == [0]


# --------------------------------------------------------------------------- crossings


def crossing_scene(kind: str) -> tuple[dict[int, list[list[float]]], dict[int, list[int]]]:
    """Two people (identities 0 and 1) meeting in the middle; detections every 2nd frame.

    ``straight``: they walk past each other. ``bounce``: they meet and each turns back,
    which constant-velocity prediction alone gets wrong. When their centres are
    closer than 30 px only the front face (identity 0) is detected (occlusion).
    """
    detections: dict[int, list[list[float]]] = {}
    identities: dict[int, list[int]] = {}
    for f in range(0, 41, 2):
        if kind == "straight":
            xa, xb = 100 + 10.0 * f, 500 - 10.0 * f
        else:
            d = 10.0 * min(f, 20) - 10.0 * max(0, f - 20)  # out and back
            xa, xb = 100 + d, 500 - d
        boxes, who = [box(xa, 200)], [0]
        if abs(xa - xb) >= 30:
            boxes.append(box(xb, 212))
            who.append(1)
        order = [1, 0] if f % 4 else [0, 1]  # detector row order must not matter
        order = [i for i in order if i < len(boxes)]
        detections[f] = [boxes[i] for i in order]
        identities[f] = [who[i] for i in order]
    return detections, identities


def ids_by_identity(ids: dict[int, np.ndarray], identities: dict[int, list[int]]) -> dict[int, set[int]]:
    out: dict[int, set[int]] = {0: set(), 1: set()}
    for f, tids in ids.items():
        for who, tid in zip(identities[f], tids, strict=True):
            out[who].add(int(tid))
    return out


@pytest.mark.parametrize("kind", ["straight", "bounce"])
def test_crossing_with_embeddings_keeps_identities(kind: str) -> None:
    detections, identities = crossing_scene(kind)
    embedder = FakeEmbedder(identity_vectors(2))
    ids, tracks = run(FaceTracker(), detections, identities=identities, embedder=embedder)
    assert_tracks_valid(tracks, detections, ids)
    who = ids_by_identity(ids, identities)
    assert len(who[0]) == 1 and len(who[1]) == 1 and who[0] != who[1], who
    # Embedding is costly: only births and the ambiguous frames near the crossing.
    n_rows = sum(len(b) for b in detections.values())
    assert 2 <= embedder.rows_embedded < n_rows / 2
    for t in tracks:
        assert len(t.embeddings) == len(t.embedding_frames) >= 1
        assert t.embedding_frames[0] == t.first  # embedded at birth


def test_crossing_without_embeddings_documents_behaviour() -> None:
    # Straight crossing: constant-velocity prediction alone keeps the identities.
    detections, identities = crossing_scene("straight")
    ids, tracks = run(FaceTracker(), detections)
    assert_tracks_valid(tracks, detections, ids)
    who = ids_by_identity(ids, identities)
    assert len(who[0]) == 1 and len(who[1]) == 1 and who[0] != who[1]
    # Meet-and-turn-back: geometry alone predicts they carry on, so each track follows
    # the other person after the meeting (a swap). Known limitation without `embed`;
    # tracks still cover every detection, so masking is unaffected, only identity.
    detections, identities = crossing_scene("bounce")
    ids, tracks = run(FaceTracker(), detections)
    assert_tracks_valid(tracks, detections, ids)
    who = ids_by_identity(ids, identities)
    assert who[0] & who[1], "expected the documented swap without embeddings"


def test_embedding_gate_splits_a_different_person_at_the_same_place() -> None:
    # Person 0 leaves and person 1 appears at the same spot one frame later: with
    # embeddings given by the caller the gate forbids the link (embed is not needed).
    vecs = identity_vectors(2)
    tracker = FaceTracker()
    a = tracker.update(0, make_faces([box(100, 100)], embeddings=vecs[[0]]))
    b = tracker.update(1, make_faces([box(102, 100)], embeddings=vecs[[1]]))
    assert a.track_id[0] != b.track_id[0]
    c = tracker.update(2, make_faces([box(104, 100)], embeddings=vecs[[1]] + 0.01))
    assert c.track_id[0] == b.track_id[0]


def test_returned_embeddings_have_nan_rows_for_faces_not_embedded() -> None:
    vecs = identity_vectors(3)
    tracker = FaceTracker()
    embedder = FakeEmbedder(vecs, noise=0.0)
    out = tracker.update(0, make_faces([box(100, 100), box(400, 100)]), embed=embedder.for_frame([0, 1]))
    assert out.embedding is not None and np.isfinite(out.embedding).all()  # births embedded
    # Frame 1: both matched unambiguously, a third face is born -> only row 2 embedded.
    out = tracker.update(
        1, make_faces([box(101, 100), box(401, 100), box(700, 100)]), embed=embedder.for_frame([0, 1, 2])
    )
    assert embedder.rows_embedded == 3
    assert out.embedding is not None
    assert np.isnan(out.embedding[:2]).all() and np.allclose(out.embedding[2], vecs[2])


# --------------------------------------------------------------------------- cuts, lifetime, memory


def test_cut_ends_tracks_and_no_track_spans_it() -> None:
    tracker = FaceTracker()
    detections = {f: [box(200 + f, 200)] for f in range(0, 31, 2)}
    tracks: list[Track] = []
    for f in sorted(detections):
        if f == 12:
            tracker.cut(11)
            assert tracker.active_count == 0
            tracks += tracker.pop_finished(11)
            assert len(tracks) == 1 and tracks[0].last == 10
        tracker.update(f, make_faces(detections[f]))
    tracks += tracker.finish()
    assert len(tracks) == 2
    assert all(t.last < 11 or t.first >= 11 for t in tracks)
    assert tracks[1].first == 12
    with pytest.raises(ValueError):
        tracker.reset()
        tracker.cut(3)
        tracker.update(2, make_faces([box(0, 0)]))


def test_pop_finished_returns_expired_tracks_and_forgets_them() -> None:
    tracker = FaceTracker(max_gap=10)
    tracker.update(0, make_faces([box(100, 100), box(400, 100)]))
    tracker.update(5, make_faces([box(100, 100)]))
    assert tracker.pop_finished(10) == []  # second face may still come back
    assert tracker.active_count == 2
    done = tracker.pop_finished(11)
    assert [(t.id, t.first, t.last) for t in done] == [(1, 0, 0)]
    assert tracker.active_count == 1 and tracker.pop_finished(11) == []
    rest = tracker.finish()
    assert [(t.id, t.first, t.last) for t in rest] == [(0, 0, 5)]
    assert tracker.finish() == []


def test_memory_stays_bounded_over_10000_frames() -> None:
    rng = np.random.default_rng(3)
    tracker = FaceTracker(max_gap=15)
    people: list[dict] = []  # on screen: position, velocity, frames left
    detections: dict[int, list[list[float]]] = {}
    ids: dict[int, np.ndarray] = {}
    tracks: list[Track] = []
    max_active = 0
    for f in range(10_000):
        if rng.random() < 0.03 and len(people) < 4:
            people.append({"x": rng.uniform(50, 600), "vx": rng.uniform(-3, 3), "left": int(rng.integers(10, 200))})
        for p in people:
            p["x"] += p["vx"]
            p["left"] -= 1
        people = [p for p in people if p["left"] > 0]
        if f % 3 == 0:
            # Spread people vertically so they never overlap: only lifetime is under test.
            detections[f] = [box(p["x"], 100 + 120 * i) for i, p in enumerate(people)]
            ids[f] = tracker.update(f, make_faces(detections[f])).track_id
        tracks += tracker.pop_finished(f)
        max_active = max(max_active, tracker.active_count)
    tracks += tracker.finish()
    assert max_active <= 10
    assert tracker.active_count == 0
    assert len(tracks) > 50
    assert_tracks_valid(tracks, detections, ids)


# --------------------------------------------------------------------------- extend_track, box_at


def moving_track(vx: float = 5.0, first: int = 30, last: int = 60) -> tuple[Track, Callable[[int], list[float]]]:
    def truth(f: int) -> list[float]:
        return box(300 + vx * f, 200, 60)

    tracker = FaceTracker()
    for f in range(first, last + 1, 3):
        tracker.update(f, make_faces([truth(f)]))
    (t,) = tracker.finish()
    return t, truth


@pytest.mark.parametrize(
    ("before", "after", "lo", "hi", "first", "last"),
    [
        (10, 10, 0, 1000, 20, 70),  # room on both sides
        (10, 10, 25, 65, 25, 65),  # clamped to the shot
        (0, 0, 0, 1000, 30, 60),  # nothing to add
        (10, 10, 30, 60, 30, 60),  # track fills the shot
    ],
)
def test_extend_track_clamps_and_covers_the_extrapolated_path(
    before: int, after: int, lo: int, hi: int, first: int, last: int
) -> None:
    t, truth = moving_track()
    ext = extend_track(t, before=before, after=after, lo=lo, hi=hi)
    assert (ext.first, ext.last) == (first, last)
    assert np.array_equal(ext.frames, np.arange(first, last + 1))
    inner = (ext.frames >= 30) & (ext.frames <= 60)
    np.testing.assert_array_equal(ext.xyxy[inner], t.xyxy)
    np.testing.assert_array_equal(ext.source[inner], t.source)
    assert (ext.source[~inner] == SOURCE_EXTENDED).all()
    for f in ext.frames[~inner]:
        b, want = box_at(ext, int(f)), np.asarray(truth(int(f)))
        assert b is not None
        # The moving face's true box (it kept going) lies inside the extension box...
        assert (b[:2] <= want[:2] + 1e-3).all() and (b[2:] >= want[2:] - 1e-3).all()
        # ...and so does the end box (a face that stopped is covered too).
        end = t.xyxy[0] if f < 30 else t.xyxy[-1]
        assert (b[:2] <= end[:2]).all() and (b[2:] >= end[2:]).all()
    assert len(t) == 31  # the original is not modified


def test_extend_still_track_keeps_its_box() -> None:
    t, _ = moving_track(vx=0.0)
    ext = extend_track(t, before=5, after=5, lo=0, hi=100)
    np.testing.assert_allclose(ext.xyxy[:5], np.repeat(t.xyxy[:1], 5, axis=0))
    np.testing.assert_allclose(ext.xyxy[-5:], np.repeat(t.xyxy[-1:], 5, axis=0))


@pytest.mark.parametrize("start_source", [SOURCE_EXTENDED, SOURCE_DETECTED])
def test_extension_follows_the_motion_at_its_end(start_source: int) -> None:
    """Still at first (extended, or detected), then detected moving right 10 px a frame: the
    extension past the end must follow the motion *at the end*, or a face leaving the frame
    outruns its mask."""
    still = np.tile([100.0, 100.0, 150.0, 150.0], (3, 1))
    moving = np.array([[100.0 + 10 * k, 100.0, 150.0 + 10 * k, 150.0] for k in range(1, 7)])
    source = [start_source] * 3 + [SOURCE_DETECTED] * 6
    track = Track(1, np.arange(9), np.concatenate([still, moving]).astype(np.float32), source)
    out = extend_track(track, before=0, after=4, lo=0, hi=100)
    last = moving[-1]
    for t, box in enumerate(out.xyxy[9:], 1):
        assert box[2] >= last[2] + 10 * t - 1e-3, (t, box)


def test_extension_of_a_growing_face_moves_it_but_keeps_its_size() -> None:
    """A face nearing the camera grows 10 px a frame on each side: extrapolating its edges over
    a second made a 620 px mask on the shared clip. The extension moves the end box with the
    centre's velocity and keeps its size."""
    frames = np.arange(6)
    xyxy = np.array([[200 - 10 * k + 3 * k, 200 - 10 * k, 260 + 10 * k + 3 * k, 260 + 10 * k] for k in frames], np.float32)
    track = Track(1, frames, xyxy, np.full(6, SOURCE_DETECTED, np.uint8))
    out = extend_track(track, before=0, after=30, lo=0, hi=100)
    last = xyxy[-1]
    side = last[2] - last[0]
    for t, b in enumerate(out.xyxy[6:], 1):
        assert b[2] - b[0] == pytest.approx(side + 3 * t, abs=1e-2)  # end box plus its centre's path
        assert b[3] - b[1] == pytest.approx(last[3] - last[1], abs=1e-2)  # no vertical drift, no growth


def test_extend_single_detection_track() -> None:
    t = Track(7, [10], [box(50, 50)], [SOURCE_DETECTED])
    ext = extend_track(t, before=3, after=3, lo=8, hi=100)
    assert ext.frames.tolist() == list(range(8, 14)) and ext.id == 7
    np.testing.assert_allclose(ext.xyxy, np.repeat(t.xyxy, 6, axis=0))
    with pytest.raises(ValueError):
        extend_track(t, before=-1, after=0, lo=0, hi=10)


def test_box_at() -> None:
    t, truth = moving_track()
    np.testing.assert_allclose(box_at(t, 31), truth(31), atol=1e-3)
    assert box_at(t, 29) is None and box_at(t, 61) is None
    holes = Track(1, [3, 5], [box(0, 0), box(10, 0)], [SOURCE_DETECTED] * 2)
    assert box_at(holes, 4) is None
    np.testing.assert_array_equal(box_at(holes, 5), np.asarray(box(10, 0), np.float32))


def test_close_contest_is_settled_by_embeddings_not_geometry() -> None:
    """A bystander's face, lost for a few frames while its prediction drifted, is found beside
    the target whose own face the detector missed: geometry alone gives it to the target's
    track (the measured 3-frame leak on the synthetic 720p clip), embeddings give it back."""
    vecs = identity_vectors(2)
    embedder = FakeEmbedder(vecs, noise=0.0)
    tracker = FaceTracker()
    target = lambda f: [940 + 3 * f, 250, 1120 + 3 * f, 430]  # noqa: E731 - moving right
    bystander = {0: [900, 200, 1100, 400], 2: [880, 170, 1080, 370], 4: [860, 140, 1060, 340]}  # moving up, then lost
    for f in range(0, 11, 2):
        boxes, who = [target(f)], [0]
        if f in bystander:
            boxes.append(bystander[f]), who.append(1)
        out = tracker.update(f, make_faces(boxes), embed=embedder.for_frame(who))
    target_id, bystander_id = int(out.track_id[0]), 1 - int(out.track_id[0])
    # Frame 12: the target is missed; the bystander turns up where it stopped, close to the target.
    out = tracker.update(12, make_faces([[870, 165, 1040, 345]]), embed=embedder.for_frame([1]))
    assert int(out.track_id[0]) == bystander_id != target_id


def test_extension_stops_once_the_face_has_left_the_picture() -> None:
    """Lost at the right edge, moving right 14 px a frame: 30 frames were asked for, but the
    face is wholly out of a 640 px picture after a few; the extension stops there."""
    frames = np.arange(0, 7, 2)
    xyxy = np.array([[500 + 14 * f, 50, 620 + 14 * f, 210] for f in frames], np.float32)
    xyxy[:, 2] = np.minimum(xyxy[:, 2], 640)
    track = Track(1, frames, xyxy, np.full(len(frames), SOURCE_DETECTED, np.uint8))
    free = extend_track(track, before=0, after=30, lo=0, hi=100)
    held = extend_track(track, before=0, after=30, lo=0, hi=100, frame_size=(640, 360))
    assert free.last == track.last + 30
    assert track.last < held.last < track.last + 12
    # Every frame kept still covers the extrapolated face, which is partly in the picture there.
    x1_last = xyxy[-1, 0]
    for f, b in zip(held.frames[len(track):], held.xyxy[len(track):]):
        assert b[2] >= min(640, x1_last + 14 * (f - track.last))
