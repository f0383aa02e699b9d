"""Per-track identity decisions and the plan's JSON round trip."""

from __future__ import annotations

import json
import re
from fractions import Fraction

import numpy as np
import pytest

from blurface.plan import Plan

from blurface.decisions import DecisionSettings, decide, track_distance
from blurface.types import SOURCE_DETECTED, SOURCE_INTERPOLATED, InputError, Track, VideoInfo


def make_track(tid: int, first: int, n: int, *, crops: int = 3) -> Track:
    frames = np.arange(first, first + n)
    xyxy = np.stack([frames * 2.0, frames * 0 + 10, frames * 2.0 + 50, frames * 0 + 60], 1)
    source = np.where(np.arange(n) % 3 == 0, SOURCE_DETECTED, SOURCE_INTERPOLATED)
    rng = np.random.default_rng(tid)
    return Track(tid, frames, xyxy, source, rng.normal(size=(crops, 128)), frames[:crops])


def video_info(frames: int = 100) -> VideoInfo:
    return VideoInfo("in.mp4", "mp4", 640, 360, 0, Fraction(30000, 1001), Fraction(1, 30000), 0.852, 3.3,
                     frames, "h264", "yuv420p", None)


@pytest.mark.parametrize(
    "mode, dists, mask_unsure, decision, masked",
    [
        ("target", [0.45, 0.5, 0.7], True, "target", True),
        ("target", [0.64, 0.66, 0.9], True, "unsure", True),
        ("target", [0.64, 0.66, 0.9], False, "unsure", False),
        ("target", [0.75, 0.8, 0.9], True, "other", False),
        ("keep", [0.45, 0.5, 0.7], True, "keep", False),
        ("keep", [0.64, 0.66, 0.9], False, "unsure", True),  # --keep always masks unsure faces
        ("keep", [0.8, 0.9, 0.9], True, "other", True),
        ("all", [0.1, 0.1, 0.1], True, "all", True),
    ],
)
def test_decide(mode, dists, mask_unsure, decision, masked) -> None:
    track = make_track(1, 0, 10)
    settings = DecisionSettings.for_embedder("dlib", mode=mode, people=("alice",), mask_unsure=mask_unsure)
    decide(track, np.array(dists, np.float32)[:, None], ["alice"], settings)
    assert (track.decision, track.masked) == (decision, masked)
    assert track.reason


@pytest.mark.parametrize(
    "mode, d, decision, masked",
    [
        # Exactly representable numbers, so the edges themselves are tested: "at or below".
        ("target", 0.5, "target", True),
        ("target", 0.75, "unsure", True),
        ("target", 0.8125, "other", False),
        ("keep", 0.5, "keep", False),
        ("keep", 0.75, "unsure", True),
    ],
)
def test_decide_at_the_exact_edges(mode, d, decision, masked) -> None:
    track = make_track(1, 0, 10)
    settings = DecisionSettings.for_embedder("dlib", mode=mode, people=("alice",), tolerance=0.5, unsure_margin=0.25)
    decide(track, np.full((len(track.embeddings), 1), d, np.float32), ["alice"], settings)
    assert (track.decision, track.masked) == (decision, masked), track.reason


def test_track_distance_of_two_crops_is_the_better_one() -> None:
    assert track_distance(np.array([0.3, 0.9])) == pytest.approx(0.3)


def test_track_distance_uses_best_half_not_one_fluke() -> None:
    # One lucky crop among many bad ones does not make a match on its own ...
    assert track_distance(np.array([0.5, 0.8, 0.8, 0.8, 0.8, 0.8])) > 0.6
    # ... but a few bad crops cannot hide several good ones.
    assert track_distance(np.array([0.5, 0.52, 0.55, 0.9, 0.95, 1.0])) < 0.6
    assert track_distance(np.array([])) == float("inf")


def test_only_named_people_count_in_target_mode() -> None:
    track = make_track(1, 0, 10)
    settings = DecisionSettings.for_embedder("dlib", mode="target", people=("alice",))
    decide(track, np.array([[0.9, 0.3]] * 3, np.float32), ["alice", "bob"], settings)
    assert track.identity == "alice" and not track.masked


def test_no_crops_means_unsure_and_masked() -> None:
    track = make_track(1, 0, 10, crops=0)
    decide(track, np.zeros((0, 1)), ["alice"], DecisionSettings.for_embedder("dlib", mode="target", people=("alice",)))
    assert track.decision == "unsure" and track.masked


def make_plan() -> Plan:
    a, b = make_track(1, 0, 30), make_track(2, 20, 40)
    a.masked, a.reason, a.decision, a.identity, a.distance = True, "matches", "target", "alice", 0.41
    b.masked, b.reason = False, "other"
    return Plan(video_info(), "target", {"x": 1}, [a, b], np.arange(100) / 29.97 + 0.852)


def test_iter_frame_masks_masks_only_masked_boxes_on_their_frames() -> None:
    plan = make_plan()
    masks = [masked for masked, _ in plan.iter_frame_masks()]
    assert len(masks) == 100
    assert [len(m) for m in masks[:30]] == [1] * 30 and all(len(m) == 0 for m in masks[30:])
    assert np.allclose(masks[7][0], plan.tracks[0].xyxy[7])
    assert plan.masked_frame_count() == 30


def test_iter_frame_masks_gives_the_masked_and_the_spared_boxes_of_each_frame() -> None:
    plan = make_plan()
    frames = list(plan.iter_frame_masks())
    assert len(frames) == 100
    # The masked boxes are track 1's (frames 0-29); the spared ones are track 2's (unmasked, frames 20-59).
    assert [len(m) for m, _ in frames[:30]] == [1] * 30 and all(len(m) == 0 for m, _ in frames[30:])
    assert np.allclose(frames[7][0][0], plan.tracks[0].xyxy[7])
    assert [len(s) for _, s in frames[:20]] == [0] * 20 and [len(s) for _, s in frames[20:60]] == [1] * 40
    assert all(len(s) == 0 for _, s in frames[60:])
    assert np.allclose(frames[25][1][0], plan.tracks[1].xyxy[5])
    assert frames[25][1].dtype == np.float32 and frames[70][1].shape == (0, 4)


def test_json_round_trip_and_override(tmp_path) -> None:
    plan = make_plan()
    path = tmp_path / "plan.json"
    plan.save(path)
    data = json.loads(path.read_text())
    frame25 = next(f for f in data["frames"] if f["index"] == 25)
    assert {b["track"] for b in frame25["boxes"]} == {1, 2}
    assert next(b for b in frame25["boxes"] if b["track"] == 1)["why"] == "matches"
    assert "\"embeddings\"" not in path.read_text()  # biometric data never leaves memory
    # A reviewer flips track 2 on by editing the file.
    data["tracks"][1]["masked"] = True
    path.write_text(json.dumps(data))
    loaded = Plan.load(path)
    assert [t.masked for t in loaded.tracks] == [True, True]
    assert np.allclose(loaded.tracks[0].xyxy, plan.tracks[0].xyxy, atol=0.06)
    assert loaded.video == plan.video
    assert loaded.masked_frame_count() == 60
    loaded.override(1, masked=False)
    assert loaded.masked_frame_count() == 40
    with pytest.raises(KeyError):
        loaded.override(99, masked=True)


@pytest.mark.parametrize(
    "content",
    ["not json", "[]", json.dumps({"format": "other"}), json.dumps({"format": "blurface-plan", "version": 99})],
)
def test_bad_plan_files_raise_input_error(tmp_path, content: str) -> None:
    path = tmp_path / "plan.json"
    path.write_text(content)
    with pytest.raises(InputError, match="plan"):
        Plan.load(path)


def test_plan_with_box_outside_video_is_rejected(tmp_path) -> None:
    plan = make_plan()
    data = plan.to_json()
    data["frames"][0]["index"] = 1000
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match="outside"):
        Plan.load(path)


def test_unsure_track_beside_a_confident_match_is_someone_else() -> None:
    settings = DecisionSettings.for_embedder("dlib", mode="target", people=("alice",))
    sure, unsure, later = make_track(1, 0, 30), make_track(2, 10, 30), make_track(3, 100, 10)
    unsure.xyxy[:, [1, 3]] += 200  # elsewhere in the frame: another face
    decide(sure, np.array([[0.4], [0.45], [0.5]]), ["alice"], settings)
    decide(unsure, np.array([[0.63], [0.65], [0.66]]), ["alice"], settings)
    decide(later, np.array([[0.63], [0.65], [0.66]]), ["alice"], settings)
    assert [t.decision for t in (sure, unsure, later)] == ["target", "unsure", "unsure"]
    from blurface.decisions import exclude_simultaneous

    assert exclude_simultaneous([sure, unsure, later], settings) == 1
    assert (unsure.decision, unsure.masked) == ("other", False) and "same time" in unsure.reason
    # Seen alone, an unsure track stays masked: the fail-safe holds.
    assert later.masked and sure.masked


def test_unsure_track_on_the_same_face_as_a_confident_match_stays_masked() -> None:
    """Two tracks over one face (e.g. one followed backwards into frames the other covered) are one person."""
    settings = DecisionSettings.for_embedder("dlib", mode="target", people=("alice",))
    sure, twin = make_track(1, 0, 30), make_track(2, 10, 30)
    decide(sure, np.array([[0.4], [0.45], [0.5]]), ["alice"], settings)
    decide(twin, np.array([[0.63], [0.65], [0.66]]), ["alice"], settings)
    from blurface.decisions import exclude_simultaneous

    assert exclude_simultaneous([sure, twin], settings) == 0
    assert twin.masked and twin.decision == "unsure"


def test_a_face_too_small_to_identify_is_unsure_and_masked() -> None:
    settings = DecisionSettings.for_embedder("dlib", mode="target", people=("alice",))
    far = decide(make_track(1, 0, 10), np.array([[0.75], [0.8], [0.9]]), ["alice"], settings, face_px=20.0)
    big = decide(make_track(2, 0, 10), np.array([[0.75], [0.8], [0.9]]), ["alice"], settings, face_px=80.0)
    assert (far.decision, far.masked) == ("unsure", True) and "too small" in far.reason
    assert (big.decision, big.masked) == ("other", False)
    relaxed = DecisionSettings.for_embedder("dlib", mode="target", people=("alice",), mask_unsure=False)
    kept = decide(make_track(3, 0, 10), np.array([[0.75], [0.8], [0.9]]), ["alice"], relaxed, face_px=20.0)
    assert (kept.decision, kept.masked) == ("unsure", False)


# A plan file is untrusted input (plans pass between reviewers): every field is checked on load.
HOSTILE = '<img src=x onerror="fetch(\'/api/track\',{method:\'POST\'})">'


def _set(path: str, value: object):
    """A change to a saved plan's JSON: ``path`` like ``tracks.0.decision``."""
    def change(data: dict) -> None:
        *parents, last = path.split(".")
        for key in parents:
            data = data[int(key)] if key.isdigit() else data[key]
        if value is _DELETE:
            del data[int(last) if last.isdigit() else last]
        else:
            data[int(last) if last.isdigit() else last] = value
    return change


_DELETE = object()


@pytest.mark.parametrize(
    "path, value, field",
    [
        ("tracks.0.decision", HOSTILE, "tracks[0].decision"),
        ("tracks.0.decision", 3, "tracks[0].decision"),
        ("tracks.0.decision", "\x1b]0;owned\x07target", "tracks[0].decision"),
        ("tracks.0.masked", "false", "tracks[0].masked"),
        ("tracks.0.masked", 0, "tracks[0].masked"),
        ("tracks.0.identity", "x" * 5000, "tracks[0].identity"),
        ("tracks.0.identity", ["alice"], "tracks[0].identity"),
        ("tracks.0.reason", {"html": HOSTILE}, "tracks[0].reason"),
        ("tracks.0.distance", float("nan"), "tracks[0].distance"),
        ("tracks.0.distance", -1, "tracks[0].distance"),
        ("tracks.0.id", -5, "tracks[0].id"),
        ("tracks.0.id", 2, "tracks[1].id"),  # the other track's id: the second is refused
        ("tracks.0.id", True, "tracks[0].id"),
        ("tracks.0.embedding_frames", [10**12], "tracks[0].embedding_frames[0]"),
        ("mode", HOSTILE, "mode"),
        ("frame_count", 10**12, "frame_count"),
        ("times.3", float("inf"), "times[3]"),
        ("times.3", "1.0", "times[3]"),
        ("frames.0.index", 1000, "frames[0].index"),
        ("frames.0.index", 1.5, "frames[0].index"),
        ("frames.0.boxes.0.box", [-1e9, -1e9, 1e9, 1e9], "frames[0].boxes[0].box[0]"),
        ("frames.0.boxes.0.box", [1, 2, 3], "frames[0].boxes[0].box"),
        ("frames.0.boxes.0.box", [50, 10, 0, 60], "frames[0].boxes[0].box"),
        ("frames.0.boxes.0.box", [0, 10, "50", 60], "frames[0].boxes[0].box[2]"),
        ("frames.0.boxes.0.source", HOSTILE, "frames[0].boxes[0].source"),
        ("frames.0.boxes.0.track", 77, "frames[0].boxes[0].track"),
        ("frames.0.boxes.0.why", 5, "frames[0].boxes[0].why"),
        ("frames.0.boxes", [{"box": [0, 0, 1, 1], "track": 1}] * 2, "frames[0].boxes[1]"),
        ("video.width", 0, "video.width"),
        ("video.width", "640", "video.width"),
        ("video.fps", "1/0", "video.fps"),
        ("video.rotation", 45, "video.rotation"),
        ("video.duration", float("inf"), "video.duration"),
        ("video.path", 7, "video.path"),
        ("video.streams", [{"index": 0, "kind": HOSTILE, "codec": "h264"}], "video.streams[0].kind"),
        ("warnings", [HOSTILE, 5], "warnings[1]"),
        ("warnings", "one", "warnings"),
        ("metadata_dropped", [None], "metadata_dropped[0]"),
        ("settings", [1], "settings"),
        ("settings", {"a": float("inf")}, "settings.a"),
        ("review", [{"action": HOSTILE}], "review[0].action"),
        ("review", [{"action": "keep", "track": "0"}], "review[0].track"),
        ("review", [{"action": "keep", "reason": 3}], "review[0].reason"),
        ("tracks.0.masked", _DELETE, "'masked'"),
        ("video.height", _DELETE, "'height'"),
    ],
)
def test_every_field_of_a_loaded_plan_is_checked(tmp_path, path: str, value: object, field: str) -> None:
    data = make_plan().to_json()
    _set(path, value)(data)
    plan_file = tmp_path / "plan.json"
    plan_file.write_text(json.dumps(data))
    with pytest.raises(InputError) as e:
        Plan.load(plan_file)
    message = str(e.value)
    assert "\n" not in message and field in message, message
    assert HOSTILE not in message and "\x1b" not in message, "the bad value is shown escaped and cut short"
    assert len(message) < 400, message


def test_numbers_json_cannot_hold_are_refused_with_one_line(tmp_path) -> None:
    data = json.dumps(make_plan().to_json())
    for bad in (data.replace('"distance": 0.41', '"distance": 1e400', 1),
                data.replace('"frame_count": 100', '"frame_count": ' + "9" * 5000, 1)):
        assert bad != data
        path = tmp_path / "plan.json"
        path.write_text(bad)
        with pytest.raises(InputError, match="plan"):
            Plan.load(path)


def test_a_plan_blurface_wrote_loads_unchanged_after_the_checks(tmp_path) -> None:
    plan = make_plan()
    plan.tracks[0].reason = "<b>markup in a reason is only text</b>"
    plan.log_review("keep", 1, "consent <given>", frames=[0, 29])
    plan.log_review("add", 3, "", frame=5, box=[1.0, 2.0, 30.0, 40.0], frames=[0, 9])
    path = tmp_path / "plan.json"
    plan.save(path)
    loaded = Plan.load(path)
    assert loaded.tracks[0].reason == plan.tracks[0].reason
    assert loaded.review == plan.review
    # Saved again, it is the same file (embeddings and their frames stay in memory only).
    again = tmp_path / "again.json"
    loaded.save(again)
    strip = lambda d: {**d, "tracks": [{**t, "embedding_frames": []} for t in d["tracks"]]}  # noqa: E731
    assert strip(json.loads(again.read_text())) == strip(json.loads(path.read_text()))


@pytest.mark.parametrize(
    "settings, field",
    [
        ({"decision": "x"}, "settings.decision"),
        ({"decision": {"mask_unsure": "no"}}, "settings.decision.mask_unsure"),
        ({"scene_cuts": "abc"}, "settings.scene_cuts"),
        ({"scene_cuts": [3, -1]}, "settings.scene_cuts[1]"),
        ({"splits": [{"parts": [0, "1"]}]}, "settings.splits[0].parts[1]"),
    ],
)
def test_settings_other_code_reads_back_are_checked(tmp_path, settings, field) -> None:
    """The audit report reads decision.mask_unsure, follow reads scene_cuts, the report splits' parts."""
    path = tmp_path / "p.json"
    plan = Plan(video=video_info(), mode="target", settings={}, tracks=[make_track(0, 0, 10)],
                times=np.arange(100) / 30.0)
    plan.save(path)
    data = json.loads(path.read_text())
    data["settings"] = settings
    path.write_text(json.dumps(data))
    with pytest.raises(InputError, match=re.escape(field)):
        Plan.load(path)
