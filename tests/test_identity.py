"""Who each face is: tracks split where their crops change person, crops spread over a track's life,
galleries tied to the embedder that made them, and a crossing judged from output pixels."""

from __future__ import annotations

import numpy as np
import pytest

from blurface.boxes import iou_matrix
from blurface.cli import main
from blurface.embedders import SFace
from blurface.evaluate import score
from blurface.gallery import Gallery, Person
from blurface.identity import parts, split_track
from blurface.crops import CropBuffer
from blurface.plan import Plan
from blurface.track import box_at
from blurface.types import SOURCE_DETECTED, Track

from people import astronaut_photo, hopper_photo, make_crossing_clip, package_heads

import cv2


def _unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def _two_people(n_a: int, n_b: int, noise: float, seed: int = 0) -> np.ndarray:
    """Unit vectors: ``n_a`` near one person, then ``n_b`` near another, about SFace's 1.3 apart."""
    rng = np.random.default_rng(seed)
    a, b = np.zeros(128, np.float32), np.zeros(128, np.float32)
    a[0], b[1] = 1.0, 1.0
    b = _unit(0.15 * a + b)
    rows = [a + rng.normal(0, noise, 128) for _ in range(n_a)] + [b + rng.normal(0, noise, 128) for _ in range(n_b)]
    return _unit(np.array(rows))


@pytest.mark.parametrize("n_a, n_b", [(3, 3), (7, 3), (3, 7), (5, 5)])
def test_a_track_whose_crops_change_person_is_split_at_the_change(n_a: int, n_b: int) -> None:
    assert parts(_two_people(n_a, n_b, noise=0.03), distance=SFace.split_distance, min_part=3) == [
        (0, n_a), (n_a, n_a + n_b)
    ]


@pytest.mark.parametrize("odd_at", [0, 4, 9])
def test_one_or_two_odd_crops_never_split_a_track(odd_at: int) -> None:
    e = _two_people(10, 0, noise=0.03)
    other = _two_people(0, 2, noise=0.03)
    e[odd_at] = other[0]
    e[min(9, odd_at + 1)] = other[1]
    assert parts(e, distance=SFace.split_distance, min_part=3) == [(0, 10)]


def test_split_track_gives_each_person_a_part_and_the_unseen_switch_its_own() -> None:
    frames = np.arange(100, 200)
    e = _two_people(5, 4, noise=0.02)
    emb_frames = np.array([100, 110, 120, 130, 140, 170, 180, 190, 199])
    track = Track(7, frames, np.tile([10, 10, 50, 50], (100, 1)), np.zeros(100, np.uint8), e, emb_frames)
    pieces = split_track(track, distance=SFace.split_distance, min_part=3, new_ids=[20, 21])
    assert [(p.id, p.first, p.last, len(p.embeddings)) for p in pieces] == [
        (7, 100, 140, 5), (20, 141, 169, 0), (21, 170, 199, 4)
    ]
    # Every frame of the track is in exactly one part.
    assert np.array_equal(np.concatenate([p.frames for p in pieces]), frames)


def test_crops_are_spread_over_the_whole_life_of_a_track() -> None:
    # The face gets sharper towards the end (as when a track slides onto a nearer face):
    # the old buffer kept only the best crops, all from the last frames.
    buf = CropBuffer(10)
    crop, box, marks = np.zeros((4, 4, 3), np.uint8), np.zeros(4, np.float32), np.zeros((5, 2), np.float32)
    for f in range(200, 500):
        quality = float(f)
        if buf.wants(quality, f):
            buf.add(quality, f, crop, box, marks)
    kept = [it[1] for it in buf.in_order()]
    assert len(kept) <= 10
    assert kept[0] < 240 and kept[-1] > 460
    assert max(np.diff(kept)) <= 64, kept


def _identities_in(plan: Plan, clip_truth: list[list[dict]], track: Track) -> set[str]:
    """Truth people whose face the track's box was on at the frames its crops came from."""
    who = set()
    for f in track.embedding_frames:
        box = box_at(track, int(f))
        faces = clip_truth[int(f)]
        if box is None or not faces:
            continue
        iou = iou_matrix(box[None], np.array([x["box"] for x in faces], np.float32))[0]
        if iou.max() >= 0.3:
            who.add(faces[int(np.argmax(iou))]["who"])
    return who


@pytest.mark.slow
@pytest.mark.parametrize(
    "target, passer, stays",
    [
        ("hopper", "astronaut", None),  # he crosses in front of her while she turns away and back
        ("astronaut", "hopper", None),
        # He steps in right in front of her and stays for 3 s, nearer the camera: her track slides
        # onto his face. Before the split, the track was decided as one (from a crop of each).
        ("astronaut", "hopper", 150),
        ("hopper", "astronaut", 150),
    ],
)
def test_a_passer_in_front_of_the_target_leaves_no_track_with_two_identities(tmp_path, target, passer, stays) -> None:
    heads = package_heads()
    clip = make_crossing_clip(tmp_path / "crossing.mp4", heads[target], heads[passer],
                              **({} if stays is None else dict(n_frames=240, stays=stays, passer_scale=1.5,
                                                               face_px=64, away=(40, 60))))
    reference = tmp_path / "reference.png"
    cv2.imwrite(str(reference), hopper_photo() if target == "hopper" else astronaut_photo())
    out, plan_path = tmp_path / "out.mp4", tmp_path / "plan.json"
    assert main([str(clip.path), "--target", str(reference), "-o", str(out), "--plan", str(plan_path), "-q"]) == 0
    # Judged from pixels: every frame where the target's face shows is masked.
    accuracy = score(clip.path, out, clip.truth, [target])
    assert accuracy.target_visible > 60 and accuracy.leaked_frames == [], accuracy.summary()
    if stays is not None:
        # Most of his frames stay unmasked: only where the switch is unseen is he masked with her.
        assert len(accuracy.collateral_frames) < accuracy.other_visible_frames / 3, accuracy.summary()
    # No track was decided from two people's crops.
    plan = Plan.load(plan_path)
    for track in plan.tracks:
        if track.decision in ("target", "other", "unsure") and len(track.embedding_frames):
            assert len(_identities_in(plan, clip.truth, track)) <= 1, (track.id, track.reason)
    # The passer is never decided to be the target.
    for track in plan.tracks:
        detected = track.frames[track.source == SOURCE_DETECTED]
        if track.decision == "target" and len(track.embedding_frames):
            assert _identities_in(plan, clip.truth, track) == {target}, (track.id, track.reason)
        assert len(detected) or track.decision != "target"


def _gallery_file(tmp_path, embedder: str | None, version: int | None = None):
    path = tmp_path / "alice.npz"
    Gallery([Person("alice", np.ones((1, 128), np.float32) / np.sqrt(128), ["x"])], embedder=embedder).save(path)
    if version is not None:  # an older blurface's file: rewrite the version field
        with np.load(path) as data:
            arrays = {k: data[k] for k in data.files if k != "embedder"}
        arrays["version"] = np.int32(version)
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    return path


@pytest.mark.parametrize("embedder, version", [("dlib/resnet_v1", None), (None, 1)])
def test_a_gallery_from_another_embedder_is_refused_with_one_line(tmp_path, capsys, embedder, version) -> None:
    from conftest import make_clip

    clip = make_clip(tmp_path / "clip.mp4")
    npz = _gallery_file(tmp_path, embedder, version)
    out = tmp_path / "out.mp4"
    assert main([str(clip), "--target", str(npz), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "enroll" in err[0] and "alice.npz" in err[0], err
    assert not out.exists()


def test_a_gallery_records_its_embedder_and_round_trips(tmp_path) -> None:
    path = _gallery_file(tmp_path, "sface/2021dec")
    assert Gallery.load(path).embedder == "sface/2021dec"
