"""The plan's own edits (trim, add a track, new ids, scene cuts) and the review session's, without a socket.

The review server only speaks HTTP (tests/test_server.py); every change it makes goes
through :class:`~blurface.session.ReviewSession` to these :class:`~blurface.plan.Plan` methods,
so they are tested here directly, on plans saved and loaded back as a reviewer's would be.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from blurface.follow import shot_of
from blurface.plan import Plan
from blurface.plan_check import MAX_ID
from blurface.session import ReviewSession
from blurface.types import SOURCE_DETECTED, SOURCE_INTERPOLATED, InputError

from people import make_people_clip, package_heads, plan_from_truth
from test_plan import make_plan, video_info


def _reloaded(plan: Plan, path: Path) -> Plan:
    plan.save(path)
    return Plan.load(path)


@pytest.fixture
def session(tmp_path: Path):
    """A review session on a made plan (tracks 1: frames 0-29 masked, 2: frames 20-59 kept), never served."""
    s = ReviewSession(make_plan(), tmp_path / "in.mp4", save_path=tmp_path / "plan.json",
                      output=tmp_path / "out.mp4", people_dir=tmp_path / "people")
    s.groups = [[1], [2]]
    yield s
    s.close()


# ----- new ids ----------------------------------------------------------------------------------


def test_a_new_track_id_is_one_past_the_highest_and_split_and_add_take_theirs_from_it() -> None:
    plan = make_plan()
    plan.tracks[1].id = 7  # ids need not be dense
    assert plan.new_track_id() == 8
    middle = plan.split(1, 10, 19)
    assert [(t.id, t.first, t.last) for t in plan.tracks] == [(1, 0, 9), (8, 10, 19), (9, 20, 29), (7, 20, 59)]
    assert middle.id == 8 and plan.new_track_id() == 10
    added = plan.add_track(np.arange(3, 6), np.tile([0, 0, 20, 20], (3, 1)), np.zeros(3))
    assert added.id == 10
    assert Plan(video_info(), "all", {}, [], np.arange(5) / 30.0).new_track_id() == 0


def test_an_id_past_the_largest_a_plan_file_may_hold_is_never_made(tmp_path: Path, session: ReviewSession) -> None:
    """A plan whose highest id is MAX_ID (it loads): a split's new piece takes a free id, so the saved plan loads again."""
    session.plan.tracks[1].id = MAX_ID
    session.groups = [[1], [MAX_ID]]
    session.plan = _reloaded(session.plan, tmp_path / "edge.json")
    piece = session.set_track(1, False, "consent", first=0, last=9)
    rest = [t.id for t in session.plan.tracks if t.id not in (1, MAX_ID)]
    assert piece == 1 and rest == [0] and session.plan.track(0).frames.tolist() == list(range(10, 30))
    session.save()
    loaded = Plan.load(session.save_path)  # with MAX_ID + 1 this was refused: "tracks[1].id is 2147483648"
    assert sorted(t.id for t in loaded.tracks) == [0, 1, MAX_ID]
    assert loaded.track(1).masked is False and loaded.track(0).masked is True


# ----- trim -------------------------------------------------------------------------------------


def test_trim_keeps_only_the_range_with_its_boxes_and_sources(tmp_path: Path) -> None:
    plan = make_plan()
    before = plan.track(2)
    boxes, sources = before.xyxy[5:11].copy(), before.source[5:11].copy()  # frames 25-30
    trimmed = plan.trim(2, 25, 30)
    assert trimmed is plan.track(2) and trimmed.frames.tolist() == list(range(25, 31))
    assert np.array_equal(trimmed.xyxy, boxes) and np.array_equal(trimmed.source, sources)
    assert (trimmed.masked, trimmed.reason, trimmed.decision) == (False, "other", "other")
    loaded = _reloaded(plan, tmp_path / "p.json")
    assert (loaded.track(2).first, loaded.track(2).last) == (25, 30)
    assert loaded.track(1).frames.tolist() == list(range(30)), "other tracks are left alone"
    # A range reaching past the track keeps what is inside it.
    assert plan.trim(2, 0, 27).frames.tolist() == [25, 26, 27]


def test_trim_refuses_a_range_without_the_tracks_frames_and_changes_nothing() -> None:
    plan = make_plan()
    with pytest.raises(ValueError, match="frames 60-70 hold no frame of track 2: it runs 20-59"):
        plan.trim(2, 60, 70)
    with pytest.raises(ValueError, match="hold no frame"):
        plan.trim(2, 40, 30)  # an empty range
    with pytest.raises(KeyError, match="no track 5"):
        plan.trim(5, 0, 10)
    assert plan.track(2).frames.tolist() == list(range(20, 60))


def test_the_sessions_trim_logs_it_and_refuses_an_empty_range_as_input(session: ReviewSession) -> None:
    session.trim(2, 30, 39, "ran past the face")
    assert session.plan.track(2).frames.tolist() == list(range(30, 40))
    entry = session.plan.review[-1]
    assert (entry["action"], entry["track"], entry["reason"], entry["frames"]) == ("trim", 2, "ran past the face", [30, 39])
    with pytest.raises(InputError, match="it runs 30-39"):
        session.trim(2, 0, 5)
    assert len(session.plan.review) == 1, "a refused trim is not logged"


# ----- add a track ------------------------------------------------------------------------------


def test_add_track_gives_a_new_id_keeps_the_plans_order_and_saves(tmp_path: Path) -> None:
    plan = make_plan()
    frames = np.arange(10, 15)
    boxes = np.stack([frames * 1.0, frames * 0 + 5, frames + 40.0, frames * 0 + 45], 1)
    source = np.full(5, SOURCE_INTERPOLATED)
    source[2] = SOURCE_DETECTED
    added = plan.add_track(frames, boxes, source, reason="drawn by hand")
    assert added.id == 3 and (added.decision, added.masked, added.reason) == ("manual", True, "drawn by hand")
    assert [t.id for t in plan.tracks] == [1, 3, 2], "sorted by first frame, then id"
    assert plan.masked_frame_count() == 30  # frames 10-14 were already masked by track 1
    loaded = _reloaded(plan, tmp_path / "p.json")
    got = loaded.track(3)
    assert got.frames.tolist() == list(range(10, 15)) and np.allclose(got.xyxy, boxes)
    assert got.detected_count == 1 and got.decision == "manual" and got.masked


@pytest.mark.parametrize(
    "frames, box, message",
    [
        ([], [0, 0, 10, 10], "at least one frame"),
        ([98, 99, 100], [0, 0, 10, 10], "not ascending frames of the video"),
        ([-1, 0], [0, 0, 10, 10], "not ascending frames"),
        ([5, 4], [0, 0, 10, 10], "not ascending frames"),
        ([5, 5], [0, 0, 10, 10], "not ascending frames"),
        ([5], [0, 0, float("nan"), 10], "finite"),
    ],
)
def test_add_track_refuses_rows_that_are_no_track_of_this_video(frames, box, message) -> None:
    plan = make_plan()
    with pytest.raises(ValueError, match=message):
        plan.add_track(np.array(frames, np.int64), np.tile(box, (len(frames), 1)), np.zeros(len(frames)))
    assert [t.id for t in plan.tracks] == [1, 2], "nothing added"


# ----- scene cuts -------------------------------------------------------------------------------


def test_cuts_are_typed_and_the_saved_file_keeps_its_bytes(tmp_path: Path) -> None:
    """Plans keep the cuts in settings.scene_cuts, where analyses have always written them."""
    plan = make_plan()
    for t in plan.tracks:  # embeddings stay in memory only: a loaded plan has none to write
        t.embeddings, t.embedding_frames = t.embeddings[:0], t.embedding_frames[:0]
    plan.settings = {"analysis": {"fps": 30}, "scene_cuts": [40, 10], "after": True}
    assert plan.cuts == (10, 40) and all(type(c) is int for c in plan.cuts)
    first = tmp_path / "a.json"
    plan.save(first)
    assert list(json.loads(first.read_text())["settings"]) == ["analysis", "scene_cuts", "after"]
    loaded = Plan.load(first)
    assert loaded.cuts == (10, 40)
    again = tmp_path / "b.json"
    loaded.save(again)
    assert again.read_bytes() == first.read_bytes()
    # Shots as follow() sees them: from the typed cuts, frame 0 and past-the-end ones ignored.
    loaded.cuts = [0, 10, 40, 500]
    assert [shot_of(loaded, f) for f in (0, 9, 10, 39, 40, 99)] == [(0, 9), (0, 9), (10, 39), (10, 39), (40, 99), (40, 99)]
    assert _reloaded(loaded, tmp_path / "c.json").cuts == (0, 10, 40, 500)
    assert make_plan().cuts == () and shot_of(make_plan(), 50) == (0, 99)


def test_cuts_set_out_of_order_or_negative_are_refused() -> None:
    plan = make_plan()
    for bad in ([30, 10], [10, 10], [-5]):
        with pytest.raises(ValueError, match="ascending frame numbers"):
            plan.cuts = bad
    assert "scene_cuts" not in plan.settings


@pytest.mark.parametrize(
    "cuts, field",
    [([True], "settings.scene_cuts[0]"), ([1.5], "settings.scene_cuts[0]"), (["3"], "settings.scene_cuts[0]"),
     ([10, 10**12], "settings.scene_cuts[1]"), ({"0": 3}, "settings.scene_cuts")],
)
def test_a_plan_with_hostile_cuts_is_refused_on_load_with_one_line(tmp_path: Path, cuts, field) -> None:
    path = tmp_path / "p.json"
    data = make_plan().to_json()
    data["settings"] = {"scene_cuts": cuts}
    path.write_text(json.dumps(data))
    with pytest.raises(InputError) as e:
        Plan.load(path)
    assert field in str(e.value) and "\n" not in str(e.value)


# ----- the session's edits on a real clip ---------------------------------------------------------


@pytest.mark.slow
def test_a_hand_box_is_followed_within_its_shot_and_added_under_a_new_id(tmp_path: Path) -> None:
    clip = make_people_clip(tmp_path / "two.mp4", package_heads(), n_frames=30, width=384, height=216, face_px=56)
    plan = plan_from_truth(clip, tmp_path / "two.plan.json")
    plan.cuts = [15]
    session = ReviewSession(plan, clip.path, save_path=tmp_path / "two.plan.json", output=tmp_path / "out.mp4",
                            people_dir=tmp_path / "people")
    try:
        session.groups = [[t.id] for t in plan.tracks]
        who = clip.names.index("astronaut")
        box = [float(v) for v in clip.truth[20][who]["box"]]
        tid = session.add_box(20, box, "missed")
        track = session.plan.track(tid)
        assert tid == len(clip.names) and (track.decision, track.masked) == ("manual", True)
        # Followed to the end of its shot and not back across the cut at frame 15.
        assert (track.first, track.last) == (15, 29), (track.first, track.last)
        assert session.groups[-1] == [tid] and f"{tid}-0" in session.thumbs
        entry = session.plan.review[-1]
        assert (entry["action"], entry["track"], entry["frame"], entry["frames"]) == ("add", tid, 20, [15, 29])
        with pytest.raises(InputError, match="not on the 384x216 picture"):
            session.add_box(20, [-1e9, -1e9, 1e9, 1e9])
        session.save()
        assert Plan.load(session.save_path).track(tid).frames.tolist() == list(range(15, 30))
    finally:
        session.close()
    assert not session.workdir.exists()
