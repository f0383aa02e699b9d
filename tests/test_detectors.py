"""The detector and the embedding executors on real pictures (the astronaut; the shared photos and clip)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import signal
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from blurface import boxes, media
from blurface.detectors import CENTERFACE_SHA256, MODELS_DIR, CenterFace, _halvable, make_detector
from blurface.embedding import EmbedJob, InlineExecutor, WorkerExecutor, WorkerGone, embed_now
from blurface.embedders import SFACE_FILE, SFACE_SHA256, SFace
from blurface.faces import model_files as all_model_files
from blurface.types import ProcessingError


@pytest.fixture(scope="module")
def detector() -> CenterFace:
    return CenterFace()


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def test_the_shipped_model_is_the_recorded_file_with_its_licence() -> None:
    path = MODELS_DIR / "centerface.onnx"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == CENTERFACE_SHA256
    assert "MIT" in (MODELS_DIR / "LICENSE-centerface.txt").read_text()
    assert hashlib.sha256((MODELS_DIR / SFACE_FILE).read_bytes()).hexdigest() == SFACE_SHA256
    assert "Apache License" in (MODELS_DIR / "LICENSE-sface.txt").read_text()
    assert "SFace" in (MODELS_DIR / "NOTICE-sface.txt").read_text()
    # The detector, SFace, and dlib's two files for --embedder dlib: every one the report hashes.
    assert all(p.is_file() for _, p in all_model_files()) and len(all_model_files()) == 4


def test_finds_the_astronaut_with_landmarks_inside_the_box(detector: CenterFace, astronaut: np.ndarray) -> None:
    faces = detector.detect(astronaut)
    assert len(faces) == 1
    x1, y1, x2, y2 = faces.xyxy[0]
    assert 150 < x1 < 200 and 40 < y1 < 80 and 80 < x2 - x1 < 110  # her face, not the suit's patches
    marks = faces.landmarks[0]
    assert ((marks[:, 0] > x1) & (marks[:, 0] < x2) & (marks[:, 1] > y1) & (marks[:, 1] < y2)).all()
    assert marks[0, 0] < marks[1, 0]  # left eye left of right eye


@pytest.mark.parametrize("side", [16, 24, 40])
def test_small_faces_are_found_at_full_size(detector: CenterFace, astronaut: np.ndarray, side: int) -> None:
    """The face shrunk to ``side`` px wide, pasted in a larger grey frame, is still found."""
    face = astronaut[20:240, 130:330]  # head with margin, about 95 px of face
    k = side / 95
    small = cv2.resize(face, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
    frame = np.full((360, 640, 3), 90, np.uint8)
    frame[150 : 150 + small.shape[0], 300 : 300 + small.shape[1]] = small
    found = detector.detect(frame)
    assert len(found) >= 1
    assert abs(float(found.width.max()) - side) < side * 0.6


def test_regions_find_what_the_whole_frame_finds(detector: CenterFace, astronaut: np.ndarray) -> None:
    whole = detector.detect(astronaut)
    region = boxes.window(whole.xyxy[0], 2.5, astronaut.shape[1], astronaut.shape[0])
    seen = detector.detect_regions(astronaut, [region, (0, 0, 64, 64)], size=128)
    assert len(seen) == 1
    assert boxes.iou_matrix(whole.xyxy, seen.xyxy)[0, 0] > 0.7


def test_a_large_region_shrunk_by_halvings_finds_the_face_the_whole_frame_finds(
    detector: CenterFace, astronaut: np.ndarray
) -> None:
    """A face 2.5x the size of the astronaut's, in a region of an odd size over 8x the 128 px input: the
    region is trimmed to halve exactly, and the face comes back where the whole frame puts it."""
    big = cv2.resize(astronaut, None, fx=2.5, fy=2.5, interpolation=cv2.INTER_CUBIC)
    region = (3, 0, 3 + 1031, 1031)  # 1031 px: three halvings on the way to 128, 7 px to trim
    assert _halvable(region, 128, big.shape[1], big.shape[0]) == (3, 0, 1027, 1024)
    whole = detector.detect(big, scale=0.4)
    seen = detector.detect_regions(big, [region], size=128)
    assert len(whole) == 1 and len(seen) == 1
    assert boxes.iou_matrix(whole.xyxy, seen.xyxy)[0, 0] > 0.8
    # Placed by the trimmed size: the same pixels cut out beforehand (1024 px, nothing to trim) give the same
    # box, moved by the region's corner. Scaled by the asked 1031 px it would be 4-5 px off on the right.
    alone = detector.detect_regions(np.ascontiguousarray(big[0:1024, 3:1027]), [(0, 0, 1024, 1024)], size=128)
    assert np.abs(alone.xyxy[0] + np.array([3, 0, 3, 0], np.float32) - seen.xyxy[0]).max() < 0.01


def test_a_trimmed_region_keeps_the_frame_edge_of_a_face_cut_by_it(detector: CenterFace, astronaut: np.ndarray) -> None:
    """The frame's right edge cuts through the face; the region reaching that edge is trimmed on its
    inner side (the frame's last 3 columns stay in the picture the detector sees), and the face is found
    reaching the edge."""
    big = cv2.resize(astronaut, None, fx=2.5, fy=2.5, interpolation=cv2.INTER_CUBIC)
    face = detector.detect(big, scale=0.4).xyxy[0]
    cut = int((face[0] + face[2]) / 2 + 0.2 * (face[2] - face[0]))  # through the face, right of its middle
    frame = np.ascontiguousarray(big[:, :cut])
    region = (cut - 515, 0, cut, 515)  # inside the frame; 515 px: two halvings, 3 px to trim
    assert _halvable(region, 128, frame.shape[1], frame.shape[0]) == (cut - 512, 0, cut, 512)
    seen = detector.detect_regions(frame, [region], size=128)
    assert len(seen) == 1
    assert seen.xyxy[0, 2] >= cut - 1
    visible = np.array([face[0], face[1], min(face[2], cut), face[3]], np.float32)
    assert boxes.iou_matrix(visible[None], seen.xyxy)[0, 0] > 0.7


def test_a_region_spanning_the_frame_is_not_trimmed_on_that_axis() -> None:
    # 540 high with 4 halvings to 32 would lose 12 px at an edge of the frame itself: kept whole.
    assert _halvable((0, 0, 300, 540), 32, 1000, 540) == (0, 0, 288, 540)
    assert _halvable((0, 0, 1000, 540), 32, 1000, 540) == (0, 0, 1000, 540)


def test_regions_that_cut_a_face_do_not_return_part_of_it(detector: CenterFace, astronaut: np.ndarray) -> None:
    """A region smaller than a face and cutting through it (a neighbour's region, a junk track's) must not
    return that part as a face: the part took over the whole face's track and the mask shrank to it."""
    whole = detector.detect(astronaut).xyxy[0]
    x1, y1, x2, y2 = (float(v) for v in whole)
    w, h = x2 - x1, y2 - y1
    cy = (y1 + y2) / 2 - 0.2 * h
    partial = tried = 0
    for k in np.arange(0.02, 0.9, 0.02):
        for size in (0.65, 0.8, 1.0):
            side = int(size * w)
            for left in (int(x1 + k * w), int(x2 - k * w) - side):  # cut on its left edge, then on its right
                region = tuple(int(np.clip(v, 0, 512)) for v in (left, cy - side / 2, left + side, cy + side / 2))
                seen = detector.detect_regions(astronaut, [region], size=128)
                tried += 1
                partial += int((boxes.iou_matrix(whole[None], seen.xyxy) < 0.5).sum())
    # 2 of 264 here; with a fixed 2-pixel edge margin, 9.
    assert tried == 264 and partial <= 3


def test_bad_model_file_is_one_clear_error(tmp_path: Path) -> None:
    bad = tmp_path / "centerface.onnx"
    bad.write_bytes(b"not a model")
    with pytest.raises(ProcessingError, match="cannot load face detector model"):
        CenterFace(model=bad)
    with pytest.raises(ProcessingError, match="missing: reinstall"):
        CenterFace(model=tmp_path / "absent.onnx")
    with pytest.raises(ValueError, match="unknown face detector"):
        make_detector("hog")


def test_detector_threads_are_set_and_do_not_spin(detector: CenterFace) -> None:
    """Two intra-op threads that sleep between runs: spinning ones took the cores the decoder and worker need."""
    options = detector._session.get_session_options()
    assert options.intra_op_num_threads == min(2, os.cpu_count() or 1)
    assert options.inter_op_num_threads == 1
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert CenterFace(threads=1)._session.get_session_options().intra_op_num_threads == 1


def _job(astronaut: np.ndarray, detector: CenterFace) -> EmbedJob:
    box = detector.detect(astronaut).xyxy[0]
    return EmbedJob([astronaut], box[None], np.full((1, 5, 2), np.nan, np.float32))


def test_the_worker_process_embeds_as_this_process_does(detector: CenterFace, astronaut: np.ndarray) -> None:
    job = _job(astronaut, detector)
    here = InlineExecutor(SFace()).submit(job).result()
    worker = WorkerExecutor()
    try:
        there = [worker.submit(job) for _ in range(3)]
        results = [f.result(timeout=120) for f in there]
    finally:
        worker.close()
    for r in results:
        np.testing.assert_allclose(r, here, atol=1e-5)


def test_a_killed_worker_fails_its_jobs_instead_of_hanging(detector: CenterFace, astronaut: np.ndarray) -> None:
    worker = WorkerExecutor()
    try:
        worker.submit(_job(astronaut, detector)).result(timeout=120)
        os.kill(worker._proc.pid, signal.SIGKILL)
        worker._proc.wait()
        with pytest.raises(WorkerGone):
            worker.submit(_job(astronaut, detector)).result(timeout=60)
    finally:
        worker.close()


class _Counting:
    """An embedder that counts the faces it was given (to see which ones stayed in this process)."""

    def __init__(self) -> None:
        self.inner, self.faces = SFace(), 0

    def embed(self, image_bgr: np.ndarray, xyxy: np.ndarray, *, landmarks=None, jitters: int = 0) -> np.ndarray:
        self.faces += len(xyxy)
        return self.inner.embed(image_bgr, xyxy, landmarks=landmarks, jitters=jitters)


def test_faces_wanted_at_once_are_shared_with_an_idle_worker_in_order(detector: CenterFace, astronaut: np.ndarray) -> None:
    """The tracker's crossing embeddings: half go to an idle worker, the result is as if all were done here."""
    # Five different crops: the astronaut, mirrored, darker, smaller, and mirrored and darker.
    pictures = [astronaut, astronaut[:, ::-1], (astronaut * 0.6).astype(np.uint8),
                cv2.resize(astronaut, (320, 320)), (astronaut[:, ::-1] * 0.7).astype(np.uint8)]
    pictures = [np.ascontiguousarray(p) for p in pictures]
    found = np.stack([detector.detect(p).xyxy[0] for p in pictures])
    alone = np.stack([SFace().embed(p, b[None])[0] for p, b in zip(pictures, found)])
    marks = np.full((len(pictures), 5, 2), np.nan, np.float32)
    assert len({round(float(v), 4) for v in np.linalg.norm(alone - alone[0], axis=1)}) == 5  # all different

    counting = _Counting()
    assert np.array_equal(embed_now(pictures, found, marks, counting, None), alone) and counting.faces == 5
    worker = WorkerExecutor()
    try:
        counting.faces = 0
        shared = embed_now(pictures, found, marks, counting, worker)
        assert counting.faces == 3  # rows 0, 2, 4 here; 1 and 3 in the worker
        np.testing.assert_allclose(shared, alone, atol=1e-5)
        # A worker busy with a track's decision is not waited for: all five here.
        busy = worker.submit(EmbedJob(pictures, found, marks))
        counting.faces = 0
        np.testing.assert_allclose(embed_now(pictures, found, marks, counting, worker), alone, atol=1e-5)
        assert counting.faces == 5
        busy.result(timeout=120)
        # A killed worker: its share is redone here.
        os.kill(worker._proc.pid, signal.SIGKILL)
        worker._proc.wait()
        np.testing.assert_allclose(embed_now(pictures, found, marks, counting, worker), alone, atol=1e-5)
    finally:
        worker.close()


@pytest.mark.shared
def test_every_labelled_hamilton_face_is_found_at_half_size(shared_media: Path, detector: CenterFace) -> None:
    """Dim, three-quarter audience faces HOG never found, on every 10th frame, at half resolution."""
    truth = json.loads((shared_media / "hamilton_truth.json").read_text())["frames"]
    info = media.probe(shared_media / "hamilton_clip.mp4")
    missed = []
    for frame in media.iter_frames(info):
        if frame.index % 10 or frame.index >= len(truth):
            continue
        found = detector.detect(frame.image, scale=0.5)
        for face in truth[frame.index]:
            best = boxes.iou_matrix(np.array([face["box"]], np.float32), found.xyxy).max(initial=0.0)
            if best < 0.3:
                missed.append((frame.index, face["who"]))
    assert missed == []


def test_a_sliver_of_a_face_is_boxed_as_a_whole_face() -> None:
    """A box 27 wide and 82 tall (a face half behind an occluder) is widened about its centre
    to a face's proportions; a whole face's box is left as it is."""
    from blurface.boxes import whole_face_boxes

    sliver, whole = [810, 245, 837, 327], [800, 245, 863, 327]
    out = whole_face_boxes(np.array([sliver, whole], np.float32))
    assert out[0, 2] - out[0, 0] == pytest.approx(0.77 * 82, abs=0.01)
    assert (out[0, 0] + out[0, 2]) / 2 == pytest.approx((810 + 837) / 2)
    assert out[0, 1] == 245 and out[0, 3] == 327
    np.testing.assert_array_equal(out[1], whole)
    lying = whole_face_boxes(np.array([[0, 0, 100, 50]], np.float32))[0]  # chin cut by the frame
    assert lying[3] - lying[1] == pytest.approx(100 / 0.77, abs=0.01) and lying[2] - lying[0] == 100


def test_loading_the_models_leaves_nothing_in_the_temp_folder(tmp_path: Path) -> None:
    """onnxruntime's telemetry client writes a session file there unless blurface turns it off."""
    env = dict(os.environ, TMPDIR=str(tmp_path))
    env.pop("ORT_DISABLE_TELEMETRY", None)
    code = "import blurface.faces as f; f.FaceEngine()"
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=120)
    assert list(tmp_path.iterdir()) == []
