"""The accuracy benchmark's synthetic cases (benchmarks/cases.py): truth that the pixel judge can trust.

Rendered frames only (no encode, no detector): the truth boxes hold the pasted faces, a face
hidden behind an occluder leaves the truth, and tuning and held-out sets share no photo.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from blurface.evaluate import box_is_masked
from blurface.mask import Blur, Masker

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
try:
    import cases
finally:
    sys.path.remove(str(REPO / "benchmarks"))


def _files(cast: cases.CastSet) -> set[str]:
    keys = [cast.target_photo, cast.reference] + [photo for _, photo in cast.others]
    return {cases.PHOTOS[k][0] for k in keys}


def test_held_out_set_shares_no_photo_seed_or_target_with_tuning() -> None:
    tuning, heldout = cases.SETS["tuning"], cases.SETS["heldout"]
    assert not _files(tuning) & _files(heldout)
    assert not set(tuning.seeds) & set(heldout.seeds)
    assert tuning.target != heldout.target
    for cast in (tuning, heldout):
        # --target gets another photo of the person than the one pasted into the clip.
        assert cases.PHOTOS[cast.reference][0] != cases.PHOTOS[cast.target_photo][0]
        assert cast.target not in {who for who, _ in cast.others}


@pytest.mark.parametrize(
    "spec, expected",
    [
        ("heldout", [("heldout", s) for s in cases.SETS["heldout"].seeds]),
        ("tuning:7,heldout:8", [("tuning", 7), ("heldout", 8)]),
        ("all", [(n, s) for n in cases.SETS for s in cases.SETS[n].seeds]),
    ],
)
def test_parse_seeds(spec: str, expected: list[tuple[str, int]]) -> None:
    assert cases.parse_seeds(spec) == expected


@pytest.mark.parametrize("spec", ["held-out", "tuning:x", "other:3", ""])
def test_parse_seeds_names_the_bad_item(spec: str) -> None:
    with pytest.raises(ValueError, match="bad seed set"):
        cases.parse_seeds(spec)


@pytest.mark.shared
@pytest.mark.parametrize("case", cases.CASES)
def test_truth_boxes_hold_faces_the_judge_can_see(shared_media: Path, case: str) -> None:
    scene = cases.SCENES[case](cases.SETS["tuning"], 1)
    background = cases._background(7)
    image, truth = cases.render(scene, scene.frames // 2, background)
    assert image.shape == (cases.HEIGHT, cases.WIDTH, 3)
    assert truth, f"{case}: nobody in the middle frame"
    boxes = np.array([f["box"] for f in truth], np.float32)
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= cases.WIDTH).all() and (boxes[:, 3] <= cases.HEIGHT).all()
    # A face, not backdrop: unmasked it reads as intact, blurred at its box it reads as masked.
    masked = Masker(Blur()).apply(image.copy(), boxes)
    for face in truth:
        assert not box_is_masked(image, image.copy(), face["box"]), face
        assert box_is_masked(image, masked, face["box"]), face


@pytest.mark.shared
def test_a_face_behind_an_occluder_leaves_the_truth(shared_media: Path) -> None:
    walker = cases.Walker("kit", "kit_harington", [0, 10], [640, 640], [360, 360], [80, 80])

    def truth_with(panel_width: float) -> list[dict]:
        panel = cases.Occluder([0, 10], [640, 640], panel_width, 0, cases.HEIGHT, (60, 60, 60))
        return cases.render(cases.Scene("t", 10, [walker], [panel]), 5, cases._background(1))[1]

    assert [f["who"] for f in truth_with(0.0)] == ["kit"]
    assert [f["who"] for f in truth_with(30.0)] == ["kit"]  # a thin pole: most of the face shows
    assert truth_with(120.0) == []  # the whole face behind the panel
