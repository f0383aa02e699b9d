"""pipeline.run: one composer for every entry point. Probes once, writes all its outputs or none."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest
from people import astronaut_photo, make_people_clip, package_heads
from test_metadata import make_tagged

from blurface import media, review
from blurface.cli import main
from blurface.pipeline import Outputs, Request, Who, run
from blurface.plan import Plan
from blurface.types import InputError, OutputError, ProcessingError


@pytest.fixture
def clip(tmp_path: Path) -> Path:
    return make_people_clip(tmp_path / "two.mp4", package_heads(), n_frames=10, width=256, height=144,
                            face_px=44).path


@pytest.fixture
def target(tmp_path: Path) -> Path:
    path = tmp_path / "astronaut.jpg"
    cv2.imwrite(str(path), astronaut_photo())
    return path


def _count_calls(monkeypatch: pytest.MonkeyPatch, name: str) -> dict[str, int]:
    """Calls of ``media.<name>`` per file, wherever blurface makes them (every module calls it through ``media``)."""
    calls: dict[str, int] = {}
    real = getattr(media, name)

    def counted(arg, *args, **kwargs):  # noqa: ANN001, ANN002, ANN003, ANN202
        path = str(Path(getattr(arg, "path", arg)).resolve())
        calls[path] = calls.get(path, 0) + 1
        return real(arg, *args, **kwargs)

    monkeypatch.setattr(media, name, counted)
    return calls


@pytest.mark.parametrize("extra", [[], ["--from", "0.35", "--to", "0.5"]], ids=["whole", "range"])
def test_the_main_command_probes_its_input_once_with_every_side_file(
    clip: Path, target: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: list[str],
) -> None:
    probes = _count_calls(monkeypatch, "probe")
    times = _count_calls(monkeypatch, "frame_times")
    out = tmp_path / "out.mp4"
    side = [tmp_path / "plan.json", tmp_path / "matte.mov", tmp_path / "sheet.png", tmp_path / "report.json"]
    code = main([str(clip), "--target", str(target), "-o", str(out), "--plan", str(side[0]), "--matte", str(side[1]),
                 "--contact-sheet", str(side[2]), "--report", str(side[3]), "-q", *extra])
    assert code == 0
    assert out.is_file() and all(p.is_file() for p in side)
    key = str(clip.resolve())
    assert probes[key] == 1, probes
    assert times.get(key, 0) <= 1, times
    # Everything was about the one input (the report's HTML and the outputs are not probed as inputs).
    report = json.loads(side[3].read_text())
    assert report["input"]["unchanged"] is True and report["settings"]["plan_given"] is False


def test_a_plan_saved_with_side_files_records_the_dropped_metadata(tmp_path: Path) -> None:
    # The editor path once saved its plan before anyone filled this in: reviewers saw nothing dropped.
    src = make_tagged(tmp_path / "phone.mp4", rotation=0)
    plan_path = tmp_path / "plan.json"
    code = main([str(src), "--all", "-q", "-o", str(tmp_path / "out.mp4"), "--plan", str(plan_path),
                 "--report", str(tmp_path / "report.json")])
    assert code == 0
    dropped = Plan.load(plan_path).metadata_dropped
    assert "com.apple.quicktime.location.ISO6709" in dropped, dropped


def test_a_side_file_that_fails_takes_every_output_of_the_run_with_it(
    clip: Path, target: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    def full_disk(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise OutputError("sheet.png: no space left on device")

    monkeypatch.setattr(review, "write_contact_sheet", full_disk)
    outputs = Outputs(video=tmp_path / "out.mp4", plan=tmp_path / "plan.json", matte=tmp_path / "matte.mov",
                      contact_sheet=tmp_path / "sheet.png")
    with pytest.raises(OutputError, match="no space"):
        run(Request(source=clip, outputs=outputs, who=Who.from_args([target])))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["astronaut.jpg", "two.mp4"]


def test_who_is_exactly_one_of_target_keep_or_all(target: Path) -> None:
    assert Who.from_args([target]) == Who("target", (target,))
    assert Who.from_args(keep=[target]).mode == "keep"
    assert Who.from_args(all_faces=True) == Who("all")
    with pytest.raises(InputError, match="give exactly one of targets, keep or all_faces"):
        Who.from_args()
    with pytest.raises(InputError, match="give exactly one of --target, --keep or --all"):
        Who.from_args([target], all_faces=True, names=("--target", "--keep", "--all"))


def test_a_request_renders_either_a_plan_or_an_analysis(clip: Path, target: Path, tmp_path: Path) -> None:
    outputs = Outputs(video=tmp_path / "out.mp4")
    with pytest.raises(InputError, match="exactly one of who"):
        run(Request(source=clip, outputs=outputs))
    plan_path = tmp_path / "plan.json"
    run(Request(source=clip, outputs=Outputs(video=tmp_path / "first.mp4", plan=plan_path),
                who=Who.from_args([target])))
    plan = Plan.load(plan_path)
    with pytest.raises(InputError, match="rendered as it is"):
        run(Request(source=clip, outputs=Outputs(video=tmp_path / "again.mp4", plan=tmp_path / "p2.json"), plan=plan))
    # The saved plan renders to the same bytes as the run that made it.
    run(Request(source=clip, outputs=outputs, plan=plan))
    assert (tmp_path / "out.mp4").read_bytes() == (tmp_path / "first.mp4").read_bytes()


def test_an_input_changed_during_the_run_removes_the_outputs_and_keeps_the_report(
    clip: Path, target: Path, tmp_path: Path,
) -> None:
    # The file changes on disk between the render and the report (another program writing to it).
    original = clip.read_bytes()

    def progress(stage: str, n: int) -> None:
        if stage == "side files":
            with open(clip, "ab") as f:
                f.write(b"\0appended")

    outputs = Outputs(video=tmp_path / "out.mp4", contact_sheet=tmp_path / "sheet.png", report=tmp_path / "audit.json")
    with pytest.raises(ProcessingError, match="input changed while blurface ran.*outputs were removed"):
        run(Request(source=clip, outputs=outputs, who=Who.from_args([target])), progress)
    assert not outputs.video.exists() and not (tmp_path / "sheet.png").exists()
    report = json.loads((tmp_path / "audit.json").read_text())
    assert report["input"]["unchanged"] is False and (tmp_path / "audit.html").is_file()
    assert clip.read_bytes().startswith(original)


def test_run_refuses_unusable_side_outputs_before_the_analysis(
    clip: Path, target: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    import blurface.pipeline as pipeline

    def analysed(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("analysed before the outputs were checked")

    monkeypatch.setattr(pipeline, "make_plan", analysed)
    who = Who.from_args([target])
    existing = tmp_path / "plan.json"
    existing.write_text("{}")
    cases = [
        (Outputs(video=tmp_path / "a.mp4", plan=existing), "exists"),
        (Outputs(video=tmp_path / "a.mp4", matte=tmp_path / "m.mp4"), r"outputs.matte must end in \.mov or \.mkv"),
        (Outputs(video=tmp_path / "a.mp4", contact_sheet=tmp_path / "a.mp4.png", report=tmp_path / "a.mp4.png"),
         "outputs.report must end in .json"),
        (Outputs(video=tmp_path / "a.mp4", plan=clip), "outputs.plan would replace"),
        (Outputs(video=tmp_path / "a.mp4", report=tmp_path / "a.json", plan=tmp_path / "a.json"), "outputs.report would replace"),
    ]
    for outputs, message in cases:
        with pytest.raises(OutputError, match=message):
            run(Request(source=clip, outputs=outputs, who=who))
    assert existing.read_text() == "{}" and not (tmp_path / "a.mp4").exists()


def _clip_with_a_cut(path: Path, *, cut: int, n_frames: int, fps: int = 10) -> Path:
    """The astronaut in the middle; at frame ``cut`` the picture changes (another shot): H.264 + AAC."""
    import av
    import numpy as np
    from fractions import Fraction
    from people import add_streams, paste_head, write_tone

    head = package_heads()["astronaut"]
    tb = Fraction(1, 90000)
    with av.open(str(path), "w") as out:
        video, audio = add_streams(out, 320, 180, Fraction(fps), tb)
        for i in range(n_frames):
            image = np.full((180, 320, 3), (200, 180, 150) if i < cut else (30, 60, 20), np.float32)
            paste_head(image, head, 160 + (i % 7), 85, 52)
            frame = av.VideoFrame.from_ndarray(np.clip(image, 0, 255).astype(np.uint8), format="bgr24")
            frame.pts, frame.time_base = round(Fraction(i, fps) / tb), tb
            out.mux(video.encode(frame))
        out.mux(video.encode())
        write_tone(out, audio, n_frames / fps, 440)
    return path


def test_a_range_analysis_numbers_its_cuts_as_the_source(target: Path, tmp_path: Path) -> None:
    # The range is copied from a keyframe seconds before it and analysed there: the copy's frame
    # numbers are not the source's. A cut recorded in the copy's numbers sent a box drawn on the
    # review page into the wrong shot.
    src = _clip_with_a_cut(tmp_path / "cut.mp4", cut=70, n_frames=90)
    whole = tmp_path / "whole.json"
    run(Request(source=src, outputs=Outputs(video=tmp_path / "whole.mp4", plan=whole), who=Who.from_args(all_faces=True)))
    assert Plan.load(whole).cuts == (70,)
    ranged = tmp_path / "range.json"
    run(Request(source=src, outputs=Outputs(video=tmp_path / "range.mp4", plan=ranged), who=Who.from_args(all_faces=True),
                start=7.5, end=8.5))
    plan = Plan.load(ranged)
    assert plan.settings["analysed_range"]["from"] > 1.0  # the copy did not start at the source's first frame
    assert plan.cuts == (70,)
