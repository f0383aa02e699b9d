"""Previews, overlays, contact sheets, mattes, audit reports and reproducible renders.

Most tests build a plan by hand for a generated clip (flat grey frames with audio), so
they know exactly where every box is and need no detector. One test analyses the
project's own sample, and one the shared clip against its hand-checked truth.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import level_of, make_image

from blurface import evaluate, media, overlay, review
from blurface.cli import main
from blurface.mask import padded_boxes
from blurface.pipeline import RenderSettings
from blurface.plan import Plan
from blurface.types import Track

REPO = Path(__file__).resolve().parents[1]
W, H, FPS, N = 640, 360, 30, 60

# Three tracks, one per overlay colour: masked target, kept stranger, unsure (masked).
TRACKS = [
    # id, first, last, box at first frame, dx per frame, decision, masked
    (1, 0, 59, (100, 80, 180, 170), 2, "target", True),
    (2, 10, 49, (400, 60, 470, 140), -1, "other", False),
    (3, 20, 59, (300, 220, 360, 290), 0, "unsure", True),
]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _make_plan(clip: Path, path: Path) -> Plan:
    info = media.probe(clip)
    tracks = []
    n = info.frame_count
    for tid, first, last, box, dx, decision, masked in TRACKS:
        frames = np.arange(first, min(last, n - 1) + 1)
        if len(frames) == 0:
            continue
        xyxy = np.array([[box[0] + dx * (f - first), box[1], box[2] + dx * (f - first), box[3]] for f in frames])
        tracks.append(Track(id=tid, frames=frames, xyxy=xyxy, source=np.zeros(len(frames)), identity="alice",
                            distance={"target": 0.41, "other": 0.82, "unsure": 0.63}[decision],
                            decision=decision, masked=masked, reason=f"{decision} for the test"))
    settings = {"decision": {"mode": "target", "people": ["alice"], "tolerance": 0.6, "mask_unsure": True}}
    plan = Plan(video=info, mode="target", settings=settings, tracks=tracks, times=media.frame_times(info))
    plan.save(path)
    return Plan.load(path)


@pytest.fixture
def clip_and_plan(video_factory, tmp_path: Path) -> tuple[Path, Path, Plan]:
    clip = video_factory("c.mp4", width=W, height=H, n_frames=N, fps=Fraction(FPS), audio=("aac",), video_start=0.25)
    plan_path = tmp_path / "c.plan.json"
    return clip, plan_path, _make_plan(clip, plan_path)


def _decode(path: Path) -> tuple[list[float], list[np.ndarray]]:
    with av.open(str(path)) as c:
        frames = [(float(f.pts * f.time_base), f.to_ndarray(format="bgr24")) for f in c.decode(video=0)]
    frames.sort(key=lambda x: x[0])
    return [t for t, _ in frames], [im for _, im in frames]


def _near(image: np.ndarray, bgr: tuple[int, int, int], tol: int = 90) -> np.ndarray:
    return np.abs(image.astype(np.int16) - np.array(bgr, np.int16)).max(axis=2) < tol


def _band(shape: tuple[int, int], box: np.ndarray, width: int) -> np.ndarray:
    """Pixels within ``width`` of the outline of ``box`` (xyxy, rounded)."""
    outer = np.zeros(shape, bool)
    x1, y1, x2, y2 = np.round(box).astype(int)
    outer[max(0, y1 - width) : y2 + width + 1, max(0, x1 - width) : x2 + width + 1] = True
    inner = np.zeros(shape, bool)
    inner[y1 + width + 1 : max(y1 + width + 1, y2 - width), x1 + width + 1 : max(x1 + width + 1, x2 - width)] = True
    return outer & ~inner


def _outline(shape: tuple[int, int], box: np.ndarray) -> np.ndarray:
    line = np.zeros(shape, np.uint8)
    x1, y1, x2, y2 = np.round(box).astype(int)
    cv2.rectangle(line, (x1, y1), (x2, y2), 1, 1)
    return line.astype(bool)


# --------------------------------------------------------------------------- range decoding


@pytest.mark.parametrize("spec", [dict(), dict(vfr=True), dict(video_start=0.5)])
def test_range_decode_numbers_frames_as_a_full_decode(video_factory, spec: dict) -> None:
    clip = video_factory("r.mp4", width=64, height=48, n_frames=50, **spec)
    info = media.probe(clip)
    full = list(media.iter_frames(info))
    times = media.frame_times(info)
    assert np.allclose(times, [f.time for f in full])
    start, end = full[17].time, full[41].time
    got = list(media.iter_frames(info, start=start, end=end))
    assert [f.index for f in got] == list(range(17, 41))
    for f in got:
        assert f.time == pytest.approx(full[f.index].time)
        assert np.array_equal(f.image, full[f.index].image)
    assert np.array_equal(media.frame_at(info, 33, times=times), full[33].image)
    assert np.array_equal(media.frame_at(info, 0), full[0].image)


def test_range_decode_with_b_frames_matches_a_full_decode() -> None:
    """The sample is x264 veryfast: B-frames, so decode order differs from presentation order."""
    info = media.probe(REPO / "samples/astronaut.mp4")
    with av.open(info.path) as c:
        pts = [packet.pts for packet in c.demux(video=0) if packet.size]
    assert pts != sorted(pts)  # packets arrive out of presentation order
    full = list(media.iter_frames(info))
    got = list(media.iter_frames(info, start=full[45].time, end=full[100].time))
    assert [f.index for f in got] == list(range(45, 100))
    assert all(np.array_equal(f.image, full[f.index].image) for f in got)


# --------------------------------------------------------------------------- preview


def test_preview_has_the_range_duration_and_audio(clip_and_plan, tmp_path: Path) -> None:
    clip, plan_path, plan = clip_and_plan
    out = tmp_path / "p.mp4"
    assert main(["preview", str(clip), "--plan", str(plan_path), "--from", "0.5", "--to", "1.5", "-o", str(out), "-q"]) == 0
    times, images = _decode(out)
    # Frames in [0.5, 1.5): the clip starts at 0.25 s, so frames 8..37.
    assert len(times) == 30
    assert times[0] == pytest.approx(0.0, abs=1e-6)
    duration = times[-1] + 1 / FPS - times[0]
    assert abs(duration - 1.0) <= 1 / FPS
    with av.open(str(out)) as c:
        audio = c.streams.audio[0]
        samples = np.concatenate([f.to_ndarray().reshape(-1) for f in c.decode(audio)])
        rate = audio.codec_context.sample_rate
    assert abs(len(samples) / rate - 1.0) <= 1 / FPS + 2048 / rate  # AAC pads the last frame
    assert np.sqrt(np.mean(samples[rate // 10 : -rate // 10] ** 2)) > 0.1  # the 0.3-amplitude tone, not silence
    # The right frames, in order: each generated frame has its own grey level.
    assert [level_of(im) for im in images] == [level_of(make_image(i, W, H)) for i in range(8, 38)]


def test_overlay_boxes_sit_where_the_plan_boxes_are(clip_and_plan, tmp_path: Path) -> None:
    clip, plan_path, plan = clip_and_plan
    out = tmp_path / "o.mp4"
    assert main(["preview", str(clip), "--plan", str(plan_path), "--overlay", "--height", "270",
                 "-o", str(out), "-q"]) == 0
    times, images = _decode(out)
    assert len(images) == N and images[0].shape == (270, 480, 3)
    scale = 270 / H
    colours = {"masked": overlay.MASKED, "kept": overlay.KEPT, "unsure": overlay.UNSURE}
    checked = 0
    for index, boxes in overlay.iter_frame_boxes(plan):
        image = images[index]
        bands = np.zeros(image.shape[:2], bool)
        for fb in boxes:
            box = fb.box * scale
            bands |= _band(image.shape[:2], box, 3)
        for name, bgr in colours.items():
            found = _near(image, bgr)
            mine = [fb for fb in boxes if overlay.category(fb.track) == name]
            for fb in mine:
                line = _outline(image.shape[:2], fb.box * scale)
                # The outline's own pixels have its colour (x264's 4:2:0 softens the edges only).
                hit = np.mean(found[line])
                assert hit > 0.8, f"frame {index} track {fb.track.id}: {hit:.0%} of the outline is {name}"
                checked += 1
            # ... and no pixel of that colour lies away from every box outline.
            stray = found & ~bands
            assert stray.sum() <= 20, f"frame {index}: {stray.sum()} {name} pixels away from the boxes"
        assert not any(_near(image, bgr)[bands].any() for bgr in colours.values()) or boxes
    assert checked == sum(t.last - t.first + 1 for t in plan.tracks)


# --------------------------------------------------------------------------- contact sheet


def test_contact_sheet_has_one_row_per_track(clip_and_plan, tmp_path: Path) -> None:
    clip, plan_path, plan = clip_and_plan
    sheet_path = tmp_path / "sheet.png"
    assert review.write_contact_sheet(plan, sheet_path) == len(plan.tracks)
    sheet = cv2.imread(str(sheet_path))
    row_h = overlay.TILE + 8
    assert sheet.shape[0] == overlay.HEADER + len(plan.tracks) * row_h
    # Each row's colour strip says its decision, in plan order.
    for k, t in enumerate(plan.tracks):
        strip = sheet[overlay.HEADER + k * row_h + row_h // 2, 3]
        assert np.abs(strip.astype(int) - overlay.OUTLINE_COLOURS[overlay.category(t)]).max() < 5
    # A preview's sheet lists only the tracks seen in its range (track 2 is on frames 10-49, track 3 from 20).
    n = review.write_contact_sheet(plan, sheet_path, start=float(plan.times[0]), end=float(plan.times[12]))
    assert n == 2
    assert cv2.imread(str(sheet_path)).shape[0] == overlay.HEADER + 2 * row_h


# --------------------------------------------------------------------------- matte


def _expected_box_matte(plan_json: dict, index: int, pad: float) -> np.ndarray:
    """White where a masked track's padded box is, computed from the plan file alone."""
    matte = np.zeros((H, W), bool)
    masked = {t["id"] for t in plan_json["tracks"] if t["masked"]}
    frame = next((f for f in plan_json["frames"] if f["index"] == index), None)
    for box in frame["boxes"] if frame else []:
        if box["track"] in masked:
            x1, y1, x2, y2 = padded_boxes(np.array([box["box"]]), pad)[0]
            matte[max(0, int(np.floor(y1))) : int(np.ceil(y2)), max(0, int(np.floor(x1))) : int(np.ceil(x2))] = True
    return matte


def test_matte_white_is_exactly_the_masked_regions(clip_and_plan, tmp_path: Path) -> None:
    clip, plan_path, plan = clip_and_plan
    out, mkv, mov = tmp_path / "out.mp4", tmp_path / "m.mkv", tmp_path / "m.mov"
    assert main(["render", str(clip), "--plan", str(plan_path), "-o", str(out), "--shape", "box",
                 "--matte", str(mkv), "-q"]) == 0
    assert main(["render", str(clip), "--plan", str(plan_path), "-o", str(tmp_path / "o2.mp4"), "--shape", "box",
                 "--matte", str(mov), "-q"]) == 0
    out_times, _ = _decode(out)
    plan_json = json.loads(plan_path.read_text())
    for path in (mkv, mov):
        with av.open(str(path)) as c:
            stream = c.streams.video[0]
            assert stream.codec_context.name == ("ffv1" if path == mkv else "prores")
            frames = [(float(f.pts * f.time_base), f.to_ndarray(format="gray")) for f in c.decode(stream)]
        # Frame-aligned: one matte frame per output frame, at the same time (Matroska keeps milliseconds).
        assert len(frames) == len(out_times) == N
        assert np.allclose([t for t, _ in frames], out_times, atol=0.0011)
        for index, (_, gray) in enumerate(frames):
            if path == mkv:
                assert set(np.unique(gray)) <= {0, 255}
            white = gray >= 128
            expected = _expected_box_matte(plan_json, index, RenderSettings().pad)
            assert np.array_equal(white, expected), f"{path.name} frame {index}: {np.sum(white != expected)} pixels differ"


def test_matte_matches_the_pixels_the_render_changes(video_factory, tmp_path: Path) -> None:
    """Ellipses: the matte's white is where a solid mask changed the (flat) picture."""
    clip = video_factory("e.mp4", width=W, height=H, n_frames=24, fps=Fraction(FPS))
    plan_path = tmp_path / "e.plan.json"
    _make_plan(clip, plan_path)
    out, matte = tmp_path / "e_out.mkv", tmp_path / "e.mkv"
    assert main(["render", str(clip), "--plan", str(plan_path), "-o", str(out), "--mask", "solid", "--crf", "0",
                 "--matte", str(matte), "-q"]) == 0
    _, src_images = _decode(clip)
    _, out_images = _decode(out)
    _, mattes = _decode(matte)
    for index, (a, b, m) in enumerate(zip(src_images, out_images, mattes, strict=True)):
        changed = np.abs(a.astype(int) - b.astype(int)).max(axis=2) > 8
        white = m[:, :, 0] >= 128
        # Solid black on flat grey: every masked pixel changes; 4:2:0 chroma may blur one pixel at the rim.
        differ = changed != white
        assert differ.sum() <= 0.03 * max(1, white.sum()), f"frame {index}: {differ.sum()} of {white.sum()} differ"
        assert white.any() == bool(any(t.masked and t.first <= index <= t.last for t in Plan.load(plan_path).tracks))


def test_excerpt_and_its_matte_share_frames_and_times(clip_and_plan, tmp_path: Path) -> None:
    clip, plan_path, _ = clip_and_plan
    out, matte = tmp_path / "x.mov", tmp_path / "x_matte.mov"
    assert main(["render", str(clip), "--plan", str(plan_path), "--from", "0.6", "--to", "1.2", "-o", str(out),
                 "--matte", str(matte), "-q"]) == 0
    out_times, _ = _decode(out)
    matte_times, _ = _decode(matte)
    assert len(out_times) == len(matte_times) == 18
    assert out_times == pytest.approx(matte_times, abs=1e-6)
    assert out_times[0] == pytest.approx(0.0, abs=1e-6)


# --------------------------------------------------------------------------- report


def test_report_hashes_match_the_files(clip_and_plan, tmp_path: Path) -> None:
    clip, plan_path, _ = clip_and_plan
    # A reviewer unmasks the unsure track.
    data = json.loads(plan_path.read_text())
    for t in data["tracks"]:
        if t["id"] == 3:
            t["masked"] = False
    plan_path.write_text(json.dumps(data))
    out, matte, report = tmp_path / "out.mp4", tmp_path / "m.mkv", tmp_path / "audit.json"
    sheet = tmp_path / "sheet.png"
    before = _sha(clip)
    assert main(["render", str(clip), "--plan", str(plan_path), "-o", str(out), "--matte", str(matte),
                 "--contact-sheet", str(sheet), "--report", str(report), "-q"]) == 0
    r = json.loads(report.read_text())
    assert r["format"] == "blurface-report" and r["blurface_version"]
    assert r["input"]["sha256"] == before == _sha(clip) and r["input"]["unchanged"] is True
    assert r["output"]["sha256"] == _sha(out)
    assert r["side_files"]["matte"]["sha256"] == _sha(matte)
    assert r["side_files"]["contact_sheet"]["sha256"] == _sha(sheet)
    assert r["models"] and all(m["sha256"] == _sha(Path(m["path"])) for m in r["models"])
    assert r["settings"]["render"]["encode"]["threads"] == media.EncodeSettings().threads
    by_id = {t["id"]: t for t in r["tracks"]}
    assert by_id[1]["masked_frames"] == [[0, 59]] and by_id[2]["masked_frames"] == []
    assert by_id[3]["reviewer_override"] is True and by_id[1]["reviewer_override"] is False
    assert [o["track"] for o in r["reviewer_overrides"]] == [3]
    _assert_no_embeddings(r)
    page = (tmp_path / "audit.html").read_text()
    assert r["output"]["sha256"] in page and "Reviewer overrides" in page
    # Written atomically: nothing else is left in the folder.
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]


def _assert_no_embeddings(value: object) -> None:
    """No key names embeddings, and no list of 128 numbers (a face descriptor) appears anywhere."""
    if isinstance(value, dict):
        assert not any(k in ("embedding", "embeddings") for k in value)
        for v in value.values():
            _assert_no_embeddings(v)
    elif isinstance(value, list):
        assert not (len(value) >= 128 and all(isinstance(v, float) for v in value))
        for v in value:
            _assert_no_embeddings(v)


# --------------------------------------------------------------------------- reproducible renders


def _render_in_child(clip: Path, plan: Path, out: Path, cpus: set[int] | None) -> None:
    code = (
        "import os, sys\n"
        f"if {cpus!r} is not None: os.sched_setaffinity(0, {cpus!r})\n"
        "from blurface.cli import main\n"
        f"sys.exit(main(['render', {str(clip)!r}, '--plan', {str(plan)!r}, '-o', {str(out)!r}, '-q']))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    subprocess.run([sys.executable, "-c", code], check=True, env=env)


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_render_of_a_plan_is_reproducible(clip_and_plan, tmp_path: Path, ext: str) -> None:
    """Same plan, same bytes: twice, and with the encoder's process limited to one CPU.

    With x264's automatic thread count the one-CPU render differed (its thread count
    follows the CPUs a process may use), and Matroska wrote random UIDs on every run.
    """
    clip, plan_path, _ = clip_and_plan
    a, b, c = (tmp_path / f"render_{k}{ext}" for k in "abc")
    assert main(["render", str(clip), "--plan", str(plan_path), "-o", str(a), "-q"]) == 0
    assert main(["render", str(clip), "--plan", str(plan_path), "-o", str(b), "-q"]) == 0
    assert _sha(a) == _sha(b)
    if hasattr(os, "sched_setaffinity") and len(os.sched_getaffinity(0)) > 1:
        _render_in_child(clip, plan_path, c, {min(os.sched_getaffinity(0))})
        assert _sha(c) == _sha(a)


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--matte", "m.mp4"], "--matte 'm.mp4' must end in .mov or .mkv"),
        (["--from", "2", "--to", "1"], "--to 1 is not after --from 2"),
        (["--from", "1:x"], "--from '1:x' is not a time"),
        (["--from", "50"], "--from/--to select no frame"),
        (["--contact-sheet", "s.jpg"], "must end in .png"),
    ],
)
def test_bad_editor_options_are_one_line_and_exit_2(
    clip_and_plan, tmp_path: Path, capsys, monkeypatch, extra, message
) -> None:
    clip, plan_path, _ = clip_and_plan
    monkeypatch.chdir(tmp_path)
    code = main(["render", str(clip), "--plan", str(plan_path), "-o", "out.mp4", "-q", *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out.mp4").exists()


def test_preview_needs_exactly_one_source_of_decisions(clip_and_plan, tmp_path: Path, capsys) -> None:
    clip, plan_path, _ = clip_and_plan
    code = main(["preview", str(clip), "--plan", str(plan_path), "--all", "-o", str(tmp_path / "p.mp4")])
    assert code == 2 and "exactly one of --target, --keep, --all or --plan" in capsys.readouterr().err


# --------------------------------------------------------------------------- real detection


@pytest.mark.slow
def test_preview_and_excerpt_without_a_plan_analyse_the_range(tmp_path: Path) -> None:
    """The project's sample: the astronaut is the target, outlined in the masked colour."""
    sample, target = REPO / "samples/astronaut.mp4", REPO / "samples/astronaut_target.jpg"
    out = tmp_path / "a.mp4"
    code = main(["preview", str(sample), "--target", str(target), "--from", "1", "--to", "2", "--overlay",
                 "-o", str(out), "-q"])
    assert code == 0
    times, images = _decode(out)
    assert len(images) == 30 and abs(times[-1] + 1 / 30 - 1.0) <= 1 / 30
    red = [int(_near(im, overlay.MASKED, 60).sum()) for im in images]
    assert min(red) > 200  # an outline around her face on every frame (a 60 px box has ~240 outline pixels)
    # A full-quality excerpt with its report: the plan's embeddings stay out of it.
    excerpt, report, plan = tmp_path / "x.mp4", tmp_path / "x.json", tmp_path / "x.plan.json"
    code = main([str(sample), "--target", str(target), "--from", "1", "--to", "2", "-o", str(excerpt),
                 "--report", str(report), "--plan", str(plan), "-q"])
    assert code == 0
    r = json.loads(report.read_text())
    _assert_no_embeddings(r)
    assert r["output"]["sha256"] == _sha(excerpt) and r["output"]["frames"] == 30
    assert [t["decision"] for t in r["tracks"]] == ["target"]
    assert r["tracks"][0]["masked_frames"] == [[0, 119]]  # analysed with the margin: the whole 4 s sample
    assert r["settings"]["analysis"]["analysed_range"] == {"from": 0.0, "to": 4.0, "margin": 5.0}
    # The excerpt is the full render's frames 30-59, masked the same way, at full size.
    _, frames = _decode(excerpt)
    assert frames[0].shape == (360, 640, 3)


@pytest.mark.shared
@pytest.mark.slow
def test_hamilton_preview_marks_lin_masked_and_others_kept(shared_media: Path, tmp_path: Path) -> None:
    src = shared_media / "hamilton_clip.mp4"
    out = tmp_path / "h.mp4"
    code = main(["preview", str(src), "--target", str(shared_media / "lin_manuel_miranda.png"),
                 "--from", "4", "--to", "7", "--overlay", "-o", str(out), "-q"])
    assert code == 0
    times, images = _decode(out)
    full_times = media.frame_times(media.probe(src))
    first = int(np.searchsorted(full_times, 4.0 - 1e-6))
    assert abs(len(images) / 29.97 - 3.0) <= 1 / 29.97
    truth = evaluate.load_truth(shared_media / "hamilton_truth.json")
    lin_frames = lin_marked = 0
    for k, image in enumerate(images):
        red, green = _near(image, overlay.MASKED, 70), _near(image, overlay.KEPT, 70)
        for face in truth[first + k]:
            x1, y1, x2, y2 = face["box"]
            mx, my = 0.5 * (x2 - x1), 0.5 * (y2 - y1)
            area = np.zeros(red.shape, bool)
            area[max(0, int(y1 - my)) : int(y2 + my), max(0, int(x1 - mx)) : int(x2 + mx)] = True
            if face["who"] == "lin":
                lin_frames += 1
                lin_marked += red[area].sum() > 40 and green[area].sum() < 10
            else:
                assert red[area].sum() < 10, f"frame {first + k}: {face['who']} is marked masked"
    assert lin_frames >= 80
    assert lin_marked >= 0.95 * lin_frames, f"Lin marked masked on {lin_marked} of {lin_frames} frames"
