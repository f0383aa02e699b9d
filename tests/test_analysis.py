"""The analysis on generated clips: backward following, small faces, and a plan that does not depend on timing."""

from __future__ import annotations

import json
from dataclasses import replace
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from skimage import data

from blurface import evaluate
from blurface.gallery import Gallery
from blurface.analysis import analyse, default_engine
from blurface.settings import AnalysisSettings
from blurface.rendering import render
from blurface.decisions import DecisionSettings
from blurface.types import SOURCE_DETECTED

# The astronaut's head in data.astronaut() pixels, and her face inside that crop.
HEAD = (slice(0, 300), slice(60, 420))
FACE_IN_HEAD = np.array([112.0, 78.0, 206.0, 172.0])


def face_clip(
    path: Path, *, appear: int, n: int = 30, face_px: float = 40, width: int = 640, height: int = 360,
    enter: bool = False,
) -> list:
    """The astronaut's head, scaled so her face is ``face_px`` wide, appearing on frame ``appear`` and drifting.

    ``enter``: she walks in through the left edge from frame ``appear`` (6 px a frame) instead of
    appearing mid-frame. Returns the per-frame truth ``[[{"box": [...], "who": "astronaut"}], ...]``,
    with a box where at least 60% of her face's width is in the frame.
    """
    head = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[HEAD]
    k = face_px / (FACE_IN_HEAD[2] - FACE_IN_HEAD[0])
    head = cv2.resize(head, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    rng = np.random.default_rng(5)
    bg = cv2.resize(rng.integers(40, 160, (height // 8, width // 8, 3), dtype=np.uint8), (width, height))
    truth: list[list[dict]] = []
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=Fraction(30))
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.options = {"crf": "18", "preset": "veryfast"}
        audio = out.add_stream("aac", rate=48000, layout="mono")
        for i in range(n):
            image = bg.copy()
            faces = []
            if i >= appear:
                h, w = head.shape[:2]
                left, top = (-w + 6 * (i - appear)) if enter else 100 + 4 * (i - appear), 120
                shown = head[:, max(0, -left) :]
                image[top : top + h, max(0, left) : max(0, left) + shown.shape[1]] = shown[:, : width - max(0, left)]
                box = FACE_IN_HEAD * k + [left, top, left, top]
                inside = min(box[2], width) - max(box[0], 0)
                if inside >= 0.6 * (box[2] - box[0]):
                    box[0] = max(box[0], 0.0)
                    faces.append({"box": [float(v) for v in box], "who": "astronaut"})
            truth.append(faces)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = i
            frame.time_base = Fraction(1, 30)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        for s in range(0, 48000 * n // 30, 1024):
            a = av.AudioFrame.from_ndarray(np.full((1, 1024), 0.1, np.float32), format="fltp", layout="mono")
            a.sample_rate, a.pts, a.time_base = 48000, s, Fraction(1, 48000)
            out.mux(audio.encode(a))
        out.mux(audio.encode())
    return truth


@pytest.fixture(scope="module")
def engine():
    return default_engine()


def test_a_face_walking_in_is_followed_back_to_where_it_entered(tmp_path: Path, engine) -> None:
    """Whole-frame passes every 12 frames; she walks in from the left edge between two of them.

    The pass that first sees her is frames after she entered: following her backwards
    (detections, not the extension margin, which is off here) covers the frames before.
    """
    src = tmp_path / "enter.mp4"
    truth = face_clip(src, appear=2, n=36, enter=True)
    settings = AnalysisSettings(full_every=12, extend_seconds=0.0, embed_process=False)
    plan = analyse(src, gallery=Gallery(), decision=DecisionSettings(mode="all"), settings=settings, engine=engine)
    assert plan.settings["scene_cuts"] == []
    assert plan.settings["backward_frames"] >= 3
    first_seen = min(i for i, faces in enumerate(truth) if faces)
    # Her first detection is no later than the first frame she is 60% in: found backwards.
    assert min(int(t.frames[t.source == SOURCE_DETECTED][0]) for t in plan.tracks) <= first_seen
    out = tmp_path / "out.mp4"
    render(plan, out)
    acc = evaluate.score(src, out, truth, ["astronaut"])
    assert acc.target_visible == 36 - first_seen and acc.leaked_frames == []


@pytest.mark.parametrize("face_px", [24, 32])
def test_small_faces_at_720p_are_masked_in_every_frame(tmp_path: Path, engine, face_px: int) -> None:
    """Faces of 24 px at 720p are the default's smallest promise (1/30 of the height)."""
    src = tmp_path / "small.mp4"
    truth = face_clip(src, appear=3, n=24, face_px=face_px, width=1280, height=720)
    plan = analyse(src, gallery=Gallery(), decision=DecisionSettings(mode="all"),
                   settings=AnalysisSettings(embed_process=False), engine=engine)
    out = tmp_path / "out.mp4"
    render(plan, out)
    acc = evaluate.score(src, out, truth, ["astronaut"])
    assert acc.target_visible == 21 and acc.leaked_frames == []


def test_all_mode_looks_for_16_px_faces_with_two_tiers_and_follows_a_small_one_back(tmp_path: Path, engine) -> None:
    """``--all`` at 720p: fine passes at full size (1/45 of the height: 16 px faces), one in three.

    An 18 px face appears on frame 3; the coarse passes (frames 8 and 16, at half size) are
    not promised to see it. The fine pass on frame 24 is, and she is followed back to frame 3.
    """
    src = tmp_path / "tiny.mp4"
    truth = face_clip(src, appear=3, n=30, face_px=18, width=1280, height=720)
    plan = analyse(src, gallery=Gallery(), decision=DecisionSettings(mode="all"),
                   settings=AnalysisSettings(embed_process=False, extend_seconds=0.0), engine=engine)
    assert plan.settings["detection_size"] == [1280, 720]
    assert plan.settings["coarse_detection_size"] == [640, 360]
    assert (plan.settings["full_passes"], plan.settings["coarse_passes"]) == (2, 2)
    out = tmp_path / "out.mp4"
    render(plan, out)
    acc = evaluate.score(src, out, truth, ["astronaut"])
    assert acc.target_visible == 27 and acc.leaked_frames == []


def test_target_mode_has_two_tiers_too_and_a_small_target_is_masked_from_her_first_frame(
    tmp_path: Path, engine
) -> None:
    """``--target`` at 720p: fine passes (faces from 24 px) on frames 0 and 24, coarse ones (half size,
    faces from 48 px) on 8 and 16. A 27 px target appears on frame 3, after the first pass: she is found
    later, followed back, and no frame of hers is left unmasked."""
    src = tmp_path / "small_target.mp4"
    truth = face_clip(src, appear=3, n=30, face_px=27, width=1280, height=720)
    photo = tmp_path / "ref.jpg"
    cv2.imwrite(str(photo), cv2.flip(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[0:300, 100:420], 1))
    gallery = Gallery.from_paths([photo], engine)
    plan = analyse(src, gallery=gallery, decision=DecisionSettings(mode="target", people=tuple(gallery.names)),
                   settings=AnalysisSettings(embed_process=False, extend_seconds=0.0), engine=engine)
    assert plan.settings["coarse_detection_size"] == [533, 300]
    assert (plan.settings["full_passes"], plan.settings["coarse_passes"]) == (2, 2)
    assert plan.settings["backward_frames"] > 0 and [t.decision for t in plan.tracks] == ["target"]
    out = tmp_path / "out.mp4"
    render(plan, out)
    acc = evaluate.score(src, out, truth, ["astronaut"])
    assert acc.target_visible == 27 and acc.leaked_frames == []


def test_the_same_input_gives_the_same_plan(tmp_path: Path, engine) -> None:
    """Three analyses with the embedding worker process and threaded detection: one plan."""
    src = tmp_path / "same.mp4"
    face_clip(src, appear=4, n=30)
    photo = tmp_path / "ref.jpg"
    cv2.imwrite(str(photo), cv2.flip(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)[0:300, 100:420], 1))
    gallery = Gallery.from_paths([photo], engine)
    decision = DecisionSettings(mode="target", people=tuple(gallery.names))
    plans = []
    for embed_process in (True, True, False):
        settings = replace(AnalysisSettings(), embed_process=embed_process)
        plan = analyse(src, gallery=gallery, decision=decision, settings=settings, engine=engine)
        data_ = plan.to_json()
        data_["settings"].pop("detection_ms_per_frame")
        data_["settings"]["analysis"].pop("embed_process")
        plans.append(json.dumps(data_, sort_keys=True))
    assert plans[0] == plans[1] == plans[2]
    assert json.loads(plans[0])["tracks"][0]["decision"] == "target"
