"""End to end: run the CLI on real faces and judge the output from its pixels.

Whether a face is masked is decided by :func:`blurface.evaluate.box_is_masked`
(the output lost the detail the input had at the truth box), never from the
program's log or its plan. Audio must come back packet for packet, and the
video must keep its frame count, duration and start offset.

Generated clips (fast): the astronaut from ``skimage.data.astronaut()`` (public
domain) drifting over a textured background, with an AAC tone and a video start
offset, and exact truth boxes computed from where she was pasted.

Shared clip (``slow``, ``shared``): ``../shared/media/hamilton_clip.mp4`` with
its hand-checked ``hamilton_truth.json``; each mode runs once per module.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import decoded_images, level_of, packet_bytes, video_pts_seconds
from people import write_tone
from skimage import data

from blurface.decisions import DEFAULT_TOLERANCE
from blurface import evaluate, media
from blurface.cli import main
from blurface.gallery import Gallery

# --------------------------------------------------------------------------- a face clip

# The astronaut's face in data.astronaut() pixels (dlib HOG: 179,83,267,171; CNN: 165,73,264,172).
ASTRONAUT_FACE = np.array([172.0, 78.0, 266.0, 172.0])
# Head and shoulders only: HOG sees a false "face" on her suit below y=330.
HEAD = (slice(0, 300), slice(60, 420))


def astronaut() -> np.ndarray:
    """``(512, 512, 3) uint8`` BGR."""
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def write_photo(path: Path, variant: int = 0) -> Path:
    """A reference photo of the astronaut framed differently from the clip (mirrored for variant 0)."""
    image = astronaut()
    photo = cv2.flip(image[0:300, 100:420], 1) if variant == 0 else cv2.resize(image[10:320, 40:380], None, fx=0.8, fy=0.8)
    cv2.imwrite(str(path), photo, [cv2.IMWRITE_JPEG_QUALITY, 92])
    return path


def _background(width: int, height: int) -> np.ndarray:
    """A gradient with fixed blotchy texture, so masked and unmasked regions differ in detail."""
    rng = np.random.default_rng(7)
    x = np.linspace(40, 140, width, dtype=np.float32)[None, :, None]
    y = np.linspace(0, 60, height, dtype=np.float32)[:, None, None]
    texture = cv2.resize(rng.normal(0, 10, (height // 8, width // 8, 3)).astype(np.float32), (width, height))
    return np.clip(x + y * np.float32([0.3, 0.6, 1.0]) + texture, 0, 255).astype(np.uint8)


@dataclass
class FaceClip:
    path: Path
    boxes: list[np.ndarray | None]  # per frame: the astronaut's face xyxy, or None when not shown
    fps: Fraction
    video_start: float


def make_face_clip(
    path: Path,
    *,
    n_frames: int = 36,
    width: int = 480,
    height: int = 270,
    fps: Fraction = Fraction(30000, 1001),
    video_start: float = 0.5,
    audio: bool = True,
    face: bool = True,
) -> FaceClip:
    """Write the astronaut drifting right and growing (H.264, optional AAC from t=0).

    The video starts ``video_start`` seconds after the audio (an MP4 edit list), like
    the hamilton clip. Returns exact per-frame face boxes.
    """
    head = astronaut()[HEAD]
    face_in_head = ASTRONAUT_FACE - np.array([HEAD[1].start, HEAD[0].start] * 2)
    bg = _background(width, height)
    tb = Fraction(1, 90000)
    start = round(Fraction(video_start).limit_denominator(10**6) / tb)
    boxes: list[np.ndarray | None] = []
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=fps)
        video.width, video.height, video.pix_fmt = width, height, "yuv420p"
        video.time_base = video.codec_context.time_base = tb
        video.options = {"crf": "20", "preset": "veryfast"}
        video.codec_context.gop_size = 12
        astream = out.add_stream("aac", rate=48000, layout="mono") if audio else None
        for i in range(n_frames):
            t = i / max(1, n_frames - 1)
            image = bg.copy()
            if face:
                k = 0.55 + 0.15 * t  # face 52 -> 66 px wide
                scaled = cv2.resize(head, None, fx=k, fy=k, interpolation=cv2.INTER_AREA)
                h, w = scaled.shape[:2]
                left, top = int(10 + (width - w - 20) * t), int((height - h) * 0.4)
                image[top : top + h, left : left + w] = scaled
                boxes.append(face_in_head * k + np.array([left, top, left, top]))
            else:
                boxes.append(None)
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.pts = start + round(i / fps / tb)
            frame.time_base = tb
            out.mux(video.encode(frame))
        out.mux(video.encode())
        if astream is not None:
            write_tone(out, astream, float(video_start + n_frames / fps), 440)
    return FaceClip(path, boxes, fps, video_start)


def masked_per_frame(src: Path, out: Path, boxes: list[np.ndarray | None]) -> list[bool]:
    """For each frame with a box: whether the output hides it (pixels only)."""
    before, after = decoded_images(src), decoded_images(out)
    assert len(before) == len(after)
    return [evaluate.box_is_masked(a, b, box) for a, b, box in zip(before, after, boxes) if box is not None]


def assert_same_timing(src: Path, out: Path) -> None:
    """Same frame count, first frame time (start offset) and duration, within half a frame."""
    a, b = video_pts_seconds(src), video_pts_seconds(out)
    assert len(b) == len(a)
    half = 0.5 * (a[1] - a[0])
    assert abs(b[0] - a[0]) < half, f"video start moved: {a[0]:.4f} s -> {b[0]:.4f} s"
    assert abs((b[-1] - b[0]) - (a[-1] - a[0])) < half
    info_a, info_b = media.probe(src), media.probe(out)
    assert info_b.frame_count == info_a.frame_count
    assert abs(info_b.duration - info_a.duration) < 2 * half


def assert_same_audio(src: Path, out: Path) -> None:
    """Every audio packet of every audio stream, byte for byte."""
    a, b = packet_bytes(src, "audio"), packet_bytes(out, "audio")
    assert len(b) == len(a)
    for k, (pa, pb) in enumerate(zip(a, b)):
        assert len(pb) == len(pa) and pa == pb, f"audio stream {k} differs"


def run(*argv: object) -> int:
    return main([str(a) for a in argv] + ["-q"])


# --------------------------------------------------------------------------- generated clips


@pytest.fixture(scope="module")
def work(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="module")
def clip(work: Path) -> FaceClip:
    return make_face_clip(work / "astronaut.mp4")


@pytest.fixture(scope="module")
def photo(work: Path) -> Path:
    return write_photo(work / "eileen.jpg")


@pytest.fixture(scope="module")
def target_run(clip: FaceClip, photo: Path, work: Path) -> tuple[Path, Path]:
    """``blurface CLIP --target PHOTO --plan plan.json``: the output and the plan."""
    out, plan = work / "target.mp4", work / "plan.json"
    assert run(clip.path, "--target", photo, "-o", out, "--plan", plan) == 0
    return out, plan


def test_target_is_masked_in_every_frame(clip: FaceClip, target_run: tuple[Path, Path]) -> None:
    masked = masked_per_frame(clip.path, target_run[0], clip.boxes)
    assert all(masked), f"unmasked frames: {[i for i, m in enumerate(masked) if not m]}"


def test_target_keeps_audio_and_timing(clip: FaceClip, target_run: tuple[Path, Path]) -> None:
    out = target_run[0]
    assert_same_audio(clip.path, out)
    assert_same_timing(clip.path, out)
    assert video_pts_seconds(out)[0] == pytest.approx(clip.video_start, abs=0.5 / float(clip.fps))


def test_plan_explains_every_box(clip: FaceClip, target_run: tuple[Path, Path]) -> None:
    plan = json.loads(target_run[1].read_text())
    assert plan["frame_count"] == len(clip.boxes)
    assert len(plan["tracks"]) >= 1
    assert any(t["masked"] and t["identity"] == "eileen" for t in plan["tracks"])
    track_ids = {t["id"] for t in plan["tracks"]}
    assert {f["index"] for f in plan["frames"]} == set(range(len(clip.boxes)))
    for frame in plan["frames"]:
        for box in frame["boxes"]:
            assert box["track"] in track_ids
            assert box["identity"] == "eileen"
            assert isinstance(box["distance"], float) and 0 <= box["distance"] <= DEFAULT_TOLERANCE
            assert box["why"] and "eileen" in box["why"]
            assert len(box["box"]) == 4


def test_render_replays_the_plan_and_honours_edits(
    clip: FaceClip, target_run: tuple[Path, Path], work: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, plan_path = target_run

    def no_detection(*args: object, **kwargs: object) -> None:
        raise AssertionError("render must not load face models")

    monkeypatch.setattr("blurface.faces.FaceEngine.__init__", no_detection)
    again = work / "rendered.mp4"
    assert run("render", clip.path, "--plan", plan_path, "-o", again) == 0
    assert all(masked_per_frame(clip.path, again, clip.boxes))
    assert_same_audio(clip.path, again)
    assert_same_timing(clip.path, again)

    # A reviewer decides the face may stay: flip the track's "masked" and render again.
    plan = json.loads(plan_path.read_text())
    for track in plan["tracks"]:
        track["masked"] = False
    edited = work / "edited.json"
    edited.write_text(json.dumps(plan))
    kept = work / "kept_by_review.mp4"
    assert run("render", clip.path, "--plan", edited, "-o", kept) == 0
    masked = masked_per_frame(clip.path, kept, clip.boxes)
    assert not any(masked), f"masked after the track was flipped off: {[i for i, m in enumerate(masked) if m]}"


def test_no_audio_input(work: Path, photo: Path) -> None:
    silent = make_face_clip(work / "silent.mp4", n_frames=15, audio=False, video_start=0.0)
    out = work / "silent.out.mp4"
    assert run(silent.path, "--target", photo, "-o", out) == 0
    assert all(masked_per_frame(silent.path, out, silent.boxes))
    assert packet_bytes(out, "audio") == []
    assert_same_timing(silent.path, out)


def test_enrolled_gallery_as_target(clip: FaceClip, work: Path) -> None:
    photos = [write_photo(work / "p1.jpg", 0), write_photo(work / "p2.png", 1)]
    gallery = work / "eileen.npz"
    assert run("enroll", *photos, "-o", gallery) == 0
    saved = Gallery.load(gallery)
    assert saved.names == ["eileen"] and saved.people[0].embeddings.shape == (2, 128)
    out = work / "enrolled.mp4"
    plan = work / "enrolled.json"
    assert run(clip.path, "--target", gallery, "-o", out, "--plan", plan) == 0
    assert all(masked_per_frame(clip.path, out, clip.boxes))
    assert {t["identity"] for t in json.loads(plan.read_text())["tracks"]} == {"eileen"}


def test_keep_leaves_the_kept_person_unmasked(clip: FaceClip, photo: Path, work: Path) -> None:
    out = work / "keep.mp4"
    assert run(clip.path, "--keep", photo, "-o", out) == 0
    masked = masked_per_frame(clip.path, out, clip.boxes)
    assert not any(masked), f"kept face masked in frames {[i for i, m in enumerate(masked) if m]}"
    assert_same_audio(clip.path, out)


def test_all_masks_her_too(clip: FaceClip, work: Path) -> None:
    out, plan = work / "all.mp4", work / "all.json"
    assert run(clip.path, "--all", "-o", out, "--plan", plan) == 0
    assert all(masked_per_frame(clip.path, out, clip.boxes))
    tracks = json.loads(plan.read_text())["tracks"]
    assert tracks and all(t["masked"] for t in tracks)


@pytest.mark.parametrize(
    "look", [["--mask", "pixelate"], ["--mask", "solid"], ["--shape", "box"], ["--mask", "solid", "--shape", "box"]]
)
def test_mask_effects_and_shapes_hide_the_face(look: list[str], photo: Path, tmp_path: Path) -> None:
    short = make_face_clip(tmp_path / "short.mp4", n_frames=12, video_start=0.0)
    out = tmp_path / "out.mp4"
    assert run(short.path, "--target", photo, "-o", out, *look) == 0
    masked = masked_per_frame(short.path, out, short.boxes)
    assert all(masked), f"{look}: unmasked frames {[i for i, m in enumerate(masked) if not m]}"


def test_all_on_faceless_multi_audio_mkv_keeps_every_stream(video_factory, tmp_path: Path) -> None:
    src = video_factory("two_tracks.mkv", audio=("aac", "pcm_s16le"), languages=("eng", "fra"), n_frames=24)
    out = tmp_path / "two_tracks.out.mkv"
    assert run(src, "--all", "-o", out) == 0
    assert_same_audio(src, out)
    assert [s.language for s in media.probe(out).streams if s.kind == "audio"] == ["eng", "fra"]
    assert_same_timing(src, out)
    # Nothing to mask: every frame comes back in order, unchanged but for the re-encode.
    images = decoded_images(out)
    assert [level_of(im) for im in images] == [level_of(im) for im in decoded_images(src)]


# --------------------------------------------------------------------------- the shared hamilton clip

LIN_PHOTO = "lin_manuel_miranda.png"


@dataclass
class HamiltonRun:
    output: Path
    plan: dict
    accuracy: evaluate.Accuracy


def _hamilton(media_dir: Path, work: Path, name: str, *args: object, targets: list[str]) -> HamiltonRun:
    src = media_dir / "hamilton_clip.mp4"
    out, plan = work / f"{name}.mp4", work / f"{name}.json"
    assert run(src, *args, "-o", out, "--plan", plan) == 0
    truth = evaluate.load_truth(media_dir / "hamilton_truth.json")
    return HamiltonRun(out, json.loads(plan.read_text()), evaluate.score(src, out, truth, targets))


def masked_share(acc: evaluate.Accuracy, who: str) -> float:
    return acc.masked.get(who, 0) / acc.visible[who]


@pytest.fixture(scope="module")
def ham_cache(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Module-wide store, so each hamilton run happens once however many tests read it.

    (``shared_media`` is function-scoped, so module-scoped fixtures cannot use it; the
    function-scoped fixtures below do, and fill this cache on first use.)
    """
    return {"work": tmp_path_factory.mktemp("hamilton")}


def _once(cache: dict, key: str, make) -> HamiltonRun:  # noqa: ANN001
    if key not in cache:
        try:
            cache[key] = make()
        except BaseException as e:  # a failed run fails every test that needs it, without rerunning
            cache[key] = e
            raise
    if isinstance(cache[key], BaseException):
        pytest.fail(f"the hamilton {key!r} run failed earlier: {cache[key]!r}")
    return cache[key]


@pytest.fixture
def ham_target(shared_media: Path, ham_cache: dict) -> HamiltonRun:
    return _once(ham_cache, "target", lambda: _hamilton(
        shared_media, ham_cache["work"], "target", "--target", shared_media / LIN_PHOTO, targets=["lin"]))


@pytest.fixture
def ham_keep(shared_media: Path, ham_cache: dict) -> HamiltonRun:
    others = ["alex", "obama", "michelle", "aud_a", "aud_b"]
    return _once(ham_cache, "keep", lambda: _hamilton(
        shared_media, ham_cache["work"], "keep", "--keep", shared_media / LIN_PHOTO, targets=others))


@pytest.fixture
def ham_all(shared_media: Path, ham_cache: dict) -> HamiltonRun:
    everyone = ["lin", "alex", "obama", "michelle", "aud_a", "aud_b"]
    return _once(ham_cache, "all", lambda: _hamilton(shared_media, ham_cache["work"], "all", "--all", targets=everyone))


@pytest.mark.slow
@pytest.mark.shared
def test_hamilton_target_lin(ham_target: HamiltonRun) -> None:
    acc = ham_target.accuracy
    summary = acc.summary()
    assert masked_share(acc, "lin") >= 0.995, summary
    assert acc.longest_leak_run <= 1, summary
    # Obama and Michelle are other people: at most 2% of their frames masked.
    for who in ("obama", "michelle"):
        assert masked_share(acc, who) <= 0.02, summary


@pytest.mark.slow
@pytest.mark.shared
def test_hamilton_target_keeps_audio_and_timing(shared_media: Path, ham_target: HamiltonRun) -> None:
    src = shared_media / "hamilton_clip.mp4"
    out = ham_target.output
    assert_same_audio(src, out)
    assert_same_timing(src, out)
    first = video_pts_seconds(out)[0]
    assert first == pytest.approx(0.852, abs=0.5 / 29.97)
    assert len(video_pts_seconds(out)) == 275


@pytest.mark.slow
@pytest.mark.shared
def test_hamilton_keep_lin(ham_keep: HamiltonRun) -> None:
    """``--keep lin``: Lin stays visible; the audience faces the default detector sees are masked.

    Default mode (HOG only) cannot see Obama, Michelle, aud_b or Alex's profile (dim,
    three-quarter or turned faces; measured 0 of their frames masked), so this test
    asserts nothing about them; ``test_hamilton_keep_lin_thorough`` does, with the CNN sweeps.
    """
    acc = ham_keep.accuracy
    summary = acc.summary()
    assert 1 - masked_share(acc, "lin") >= 0.95, summary
    assert masked_share(acc, "aud_a") >= 0.9, summary
    kept = [t for t in ham_keep.plan["tracks"] if not t["masked"]]
    assert kept and all(t["decision"] == "keep" and t["identity"] == "lin_manuel_miranda" for t in kept)


@pytest.mark.slow
@pytest.mark.shared
def test_hamilton_keep_lin_thorough(shared_media: Path, ham_cache: dict) -> None:
    """``--keep lin --thorough`` (~85 s on 2 cores): the CNN sweeps find the audience; all are masked.

    aud_b's dark hair sits at x264's noise floor; since ``evaluate.FLAT_DETAIL`` is 6 the
    pixel judge measures her 64/64 (it was 39/64 with a floor of 1.0), so she is held to
    the same 0.9 as the others. The plan check below covers every face too.
    """
    others = ["alex", "obama", "michelle", "aud_a", "aud_b"]
    run_ = _once(ham_cache, "keep_thorough", lambda: _hamilton(
        shared_media, ham_cache["work"], "keep_thorough", "--keep", shared_media / LIN_PHOTO, "--thorough",
        targets=others))
    acc = run_.accuracy
    summary = acc.summary()
    assert 1 - masked_share(acc, "lin") >= 0.95, summary
    for who in ("obama", "michelle", "aud_a", "aud_b", "alex"):
        assert masked_share(acc, who) >= 0.9, (who, summary)
    # Every face but Lin's is inside a masked box of the plan on every frame it shows.
    truth = evaluate.load_truth(shared_media / "hamilton_truth.json")
    boxes = {f["index"]: [b["box"] for b in f["boxes"] if b["masked"]] for f in run_.plan["frames"]}
    for i, faces in enumerate(truth):
        for face in faces:
            if face["who"] != "lin":
                assert any(_covers(b, face["box"]) for b in boxes.get(i, [])), (i, face)


def _covers(mask_box: list[float], face: list[float]) -> bool:
    """Whether ``mask_box`` overlaps at least half of ``face`` (before the mask's padding)."""
    ix = max(0.0, min(mask_box[2], face[2]) - max(mask_box[0], face[0]))
    iy = max(0.0, min(mask_box[3], face[3]) - max(mask_box[1], face[1]))
    return ix * iy >= 0.5 * (face[2] - face[0]) * (face[3] - face[1])


@pytest.mark.slow
@pytest.mark.shared
def test_hamilton_all(ham_all: HamiltonRun) -> None:
    """``--all``: every track the default detector found is masked, and the pixels agree."""
    tracks = ham_all.plan["tracks"]
    assert tracks and all(t["masked"] and t["decision"] == "all" for t in tracks)
    for frame in ham_all.plan["frames"]:
        assert all(b["masked"] for b in frame["boxes"])
    acc = ham_all.accuracy
    summary = acc.summary()
    assert masked_share(acc, "lin") >= 0.99, summary
    assert masked_share(acc, "aud_a") >= 0.9, summary
