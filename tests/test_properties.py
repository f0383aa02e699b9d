"""Property tests (hypothesis) of the box and track maths that decide where masks go.

Each property is one a mask depends on: the assignment really is the cheapest, an
extended track never uncovers the face it extends, a plan yields exactly the masked
tracks' boxes on their frames.
"""

from __future__ import annotations

import itertools
from fractions import Fraction

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from blurface.plan import Plan
from blurface.boxes import iou_matrix as _iou_matrix
from blurface.assignment import linear_assignment
from blurface.track import _velocity, box_at, extend_track
from blurface.types import SOURCE_DETECTED, Track, VideoInfo

coord = st.floats(min_value=0, max_value=500, allow_nan=False, width=32)


@st.composite
def boxes(draw, n: int | None = None) -> np.ndarray:  # noqa: ANN001
    n = draw(st.integers(1, 4)) if n is None else n
    out = []
    for _ in range(n):
        x, y = draw(coord), draw(coord)
        w, h = draw(st.floats(1, 200)), draw(st.floats(1, 200))
        out.append([x, y, x + w, y + h])
    return np.array(out, np.float32)


@given(boxes(), boxes())
def test_iou_is_symmetric_bounded_and_one_on_itself(a: np.ndarray, b: np.ndarray) -> None:
    m = _iou_matrix(a, b)
    assert m.shape == (len(a), len(b))
    assert np.allclose(m, _iou_matrix(b, a).T)
    assert ((m >= 0) & (m <= 1 + 1e-9)).all()
    assert np.allclose(np.diag(_iou_matrix(a, a)), 1.0)


@given(st.integers(1, 4), st.integers(1, 4), st.data())
def test_assignment_is_the_cheapest(n: int, m: int, data: st.DataObject) -> None:
    cost = np.array(data.draw(st.lists(st.lists(st.floats(0, 10), min_size=m, max_size=m), min_size=n, max_size=n)))
    pairs = linear_assignment(cost)
    assert len(pairs) == min(n, m)
    rows, cols = zip(*pairs)
    assert len(set(rows)) == len(rows) and len(set(cols)) == len(cols)
    total = sum(cost[r, c] for r, c in pairs)
    if n <= m:
        best = min(sum(cost[r, c] for r, c in enumerate(p)) for p in itertools.permutations(range(m), n))
    else:
        best = min(sum(cost[r, c] for c, r in enumerate(p)) for p in itertools.permutations(range(n), m))
    assert total <= best + 1e-9


@given(boxes(1), st.lists(st.floats(-5, 5), min_size=4, max_size=4), st.sets(st.integers(0, 60), min_size=2, max_size=8))
def test_velocity_of_straight_motion_is_exact(start: np.ndarray, v: list[float], frames: set[int]) -> None:
    f = np.array(sorted(frames))
    path = start[0][None, :].astype(np.float64) + f[:, None] * np.array(v)[None, :]
    assert np.allclose(_velocity(f, path), v, atol=1e-6)


@settings(max_examples=60)
@given(
    boxes(1),
    st.lists(st.floats(-8, 8), min_size=2, max_size=2),
    st.integers(2, 12),
    st.integers(0, 10),
    st.integers(0, 10),
    st.integers(0, 30),
)
def test_extension_keeps_the_track_and_covers_its_ends(
    start: np.ndarray, v: list[float], n: int, before: int, after: int, first: int
) -> None:
    frames = np.arange(first, first + n)
    step = np.array([v[0], v[1], v[0], v[1]])
    xyxy = (start[0][None, :] + (frames - first)[:, None] * step[None, :]).astype(np.float32)
    track = Track(1, frames, xyxy, np.full(n, SOURCE_DETECTED, np.uint8))
    lo, hi = max(0, first - 5), first + n + 5
    out = extend_track(track, before=before, after=after, lo=lo, hi=hi)
    # Contiguous, inside the shot, and the original rows untouched.
    assert (np.diff(out.frames) == 1).all()
    assert out.first == max(lo, first - before) and out.last == min(hi, track.last + after)
    for f, box in zip(track.frames, track.xyxy):
        assert np.array_equal(box_at(out, int(f)), box)
    # Every added box contains the end box it grew from: extending never uncovers the face.
    for f in range(out.first, out.last + 1):
        end = track.xyxy[0] if f < track.first else track.xyxy[-1] if f > track.last else None
        if end is not None:
            box = box_at(out, f)
            assert box[0] <= end[0] + 1e-3 and box[1] <= end[1] + 1e-3
            assert box[2] >= end[2] - 1e-3 and box[3] >= end[3] - 1e-3


@st.composite
def plans(draw) -> Plan:  # noqa: ANN001
    count = draw(st.integers(1, 30))
    tracks = []
    for tid in range(draw(st.integers(0, 5))):
        first = draw(st.integers(0, count - 1))
        last = draw(st.integers(first, count - 1))
        frames = np.arange(first, last + 1)
        xyxy = np.tile(draw(boxes(1)), (len(frames), 1)) + frames[:, None].astype(np.float32)
        t = Track(tid, frames, xyxy, np.zeros(len(frames), np.uint8))
        t.masked = draw(st.booleans())
        tracks.append(t)
    info = VideoInfo(path="x.mp4", container="mp4", width=640, height=360, rotation=0, fps=Fraction(30),
                     time_base=Fraction(1, 30), start_time=0.0, duration=count / 30, frame_count=count,
                     codec="h264", pix_fmt="yuv420p", bit_rate=None)
    return Plan(video=info, mode="target", settings={}, tracks=tracks, times=np.arange(count) / 30.0)


@settings(max_examples=80)
@given(plans())
def test_plan_yields_exactly_the_masked_boxes_of_each_frame(plan: Plan) -> None:
    frames = [masked for masked, _ in plan.iter_frame_masks()]
    assert len(frames) == plan.frame_count
    for i, got in enumerate(frames):
        want = [box_at(t, i) for t in plan.tracks if t.masked and box_at(t, i) is not None]
        assert len(got) == len(want)
        assert sorted(map(tuple, got.tolist())) == sorted(tuple(w.tolist()) for w in want)
    covered = sum(1 for boxes_ in frames if len(boxes_))
    assert plan.masked_frame_count() == covered
