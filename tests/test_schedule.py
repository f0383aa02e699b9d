"""The detection schedule on synthetic track boxes: no video, no detector."""

from __future__ import annotations

import numpy as np
import pytest

from blurface.schedule import DetectionSchedule

FULL = 1280 * 720


def schedule(**kw: object) -> DetectionSchedule:
    args: dict = {"full_every": 8, "full_pixels": FULL}
    args.update(kw)
    return DetectionSchedule(1280, 720, **args)


def test_whole_frame_on_first_frame_after_cuts_and_every_n_frames() -> None:
    s = schedule()
    none = np.zeros((0, 4))
    fulls = [i for i in range(40) if s.step(i, cut=i in (0, 13), predicted=none).full]
    assert fulls == [0, 8, 13, 21, 29, 37]


def test_followed_faces_are_searched_in_regions_between_whole_frame_passes() -> None:
    s = schedule()
    face = np.array([[600, 300, 640, 350]], np.float32)
    assert s.step(0, cut=True, predicted=face).full
    step = s.step(1, cut=False, predicted=face)
    assert not step.full and len(step.regions) == 1
    x1, y1, x2, y2 = step.regions[0]
    # The region holds the face with context on every side.
    assert x1 < 600 and y1 < 300 and x2 > 640 and y2 > 350
    assert x2 - x1 == pytest.approx(2.5 * 50, abs=2)


def test_follow_every_skips_frames() -> None:
    s = schedule(follow_every=2)
    faces = np.array([[100, 100, 140, 150], [600, 300, 640, 350]], np.float32)
    s.step(0, cut=True, predicted=faces)
    assert not s.step(1, cut=False, predicted=faces).runs
    step = s.step(2, cut=False, predicted=faces)
    assert len(step.regions) == 2 and step.regions[1][0] > 400
    assert not s.step(3, cut=False, predicted=faces).runs
    # A face predicted outside the frame is not looked for.
    gone = np.array([[100, 100, 140, 150], [1300, 300, 1340, 350]], np.float32)
    assert len(s.step(4, cut=False, predicted=gone).regions) == 1


def test_a_crowd_gets_a_whole_frame_pass_instead_of_many_regions() -> None:
    s = schedule(full_pixels=640 * 360)
    crowd = np.array([[x, 100, x + 20, 125] for x in range(0, 600, 40)], np.float32)
    s.step(0, cut=True, predicted=crowd)
    assert s.step(1, cut=False, predicted=crowd).full


def test_the_schedule_is_a_function_of_its_inputs() -> None:
    rng = np.random.default_rng(3)
    boxes = [rng.uniform(0, 600, (rng.integers(0, 4), 1)) @ np.ones((1, 4)) + [0, 0, 40, 50] for _ in range(50)]
    runs = []
    for _ in range(2):
        s = schedule()
        runs.append([(st.full, st.regions) for st in (s.step(i, cut=i == 0, predicted=b) for i, b in enumerate(boxes))])
    assert runs[0] == runs[1]


def test_two_tiers_one_fine_pass_in_three_and_coarse_passes_search_the_followed_faces() -> None:
    s = schedule(fine_every=3)
    face = np.array([[600, 300, 624, 330]], np.float32)
    steps = {i: s.step(i, cut=i in (0, 53), predicted=face) for i in range(80)}
    fine = [i for i, st in steps.items() if st.full and not st.coarse]
    coarse = [i for i, st in steps.items() if st.full and st.coarse]
    # A cut starts a fine pass and the count again.
    assert fine == [0, 24, 48, 53, 77]
    assert coarse == [8, 16, 32, 40, 61, 69]
    # A coarse pass may miss a small face: its region is searched too, so it is followed as on other frames.
    assert len(steps[8].regions) == 1 and steps[8].regions[0][0] < 600 < 624 < steps[8].regions[0][2]
    assert all(not steps[i].regions for i in fine)


def test_a_crowd_gets_a_fine_pass_instead_of_a_coarse_pass_and_many_regions() -> None:
    s = schedule(full_pixels=640 * 360, fine_every=3)
    crowd = np.array([[x, 100, x + 20, 125] for x in range(0, 600, 40)], np.float32)
    s.step(0, cut=True, predicted=crowd)
    st = s.step(8, cut=False, predicted=crowd)
    assert st.full and not st.coarse and not st.regions


@pytest.mark.parametrize("kw", [{"full_every": 0}, {"follow_every": 0}, {"fine_every": 0}])
def test_bad_settings_are_refused(kw: dict) -> None:
    with pytest.raises(ValueError):
        schedule(**kw)
