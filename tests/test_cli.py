"""The command line's surface: help, version, and exit code 2 for usage errors."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from blurface import __version__
from blurface.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_help_lists_the_three_modes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for option in ("--target", "--keep", "--all", "--plan", "--output"):
        assert option in out
    assert "enroll" in out and "verify" in out and "render" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"blurface {__version__}"


@pytest.mark.parametrize(
    ("command", "mentions"),
    [
        ("verify", ["--target", "--report", "--tolerance"]),
        ("enroll", ["--output", "--name", "photos"]),
        ("render", ["--plan", "--output", "--mask"]),
    ],
)
def test_subcommand_help(command: str, mentions: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert f"blurface {command}" in out
    for word in mentions:
        assert word in out


@pytest.fixture
def clip(video_factory) -> Path:
    return video_factory("c.mp4", n_frames=6)


@pytest.mark.parametrize(
    "args",
    [
        [],  # no mode
        ["--target", "X", "--all"],
        ["--target", "X", "--keep", "X"],
        ["--keep", "X", "--all"],
        ["--all", "--fast", "--thorough"],
        ["--all", "--mask", "sparkles"],
        ["--all", "--no-such-option"],
        ["--all", "--tolerance", "0"],
        ["--all", "--crf", "99"],
    ],
    ids=["no-mode", "target+all", "target+keep", "keep+all", "fast+thorough", "bad-mask", "unknown", "tolerance",
         "crf"],
)
def test_usage_errors_exit_2(args: list[str], clip: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # "X" is a photo that does not exist: the usage check must come first and say so.
    out = tmp_path / "out.mp4"
    assert main([str(clip), *args, "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.strip() and "Traceback" not in err
    assert not out.exists()


def test_no_video_argument_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--all"]) == 2
    assert "video" in capsys.readouterr().err


@pytest.mark.parametrize("argv", [["verify", "v.mp4"], ["render", "v.mp4"], ["enroll", "p.jpg"]])
def test_subcommand_missing_required_option_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert capsys.readouterr().err.strip()


def test_python_dash_m_version() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "blurface", "--version"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"blurface {__version__}"


def test_python_dash_m_usage_error_exits_2() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "blurface", "nothing.mp4"], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert done.returncode == 2
    assert "exactly one of --target, --keep or --all" in done.stderr


def test_each_input_is_probed_once(video_factory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI probes the video and hands the VideoInfo on: analysis and render do not probe it again."""
    from blurface import media

    src = video_factory("once.mp4", n_frames=6, audio=("aac",))
    real_probe = media.probe
    probed: list[str] = []

    def counting_probe(path):  # noqa: ANN001, ANN202
        probed.append(str(path))
        return real_probe(path)

    monkeypatch.setattr(media, "probe", counting_probe)
    plan = tmp_path / "once.plan.json"
    assert main([str(src), "--all", "-q", "-o", str(tmp_path / "a.mp4"), "--plan", str(plan)]) == 0
    assert probed.count(str(src)) == 1, probed
    probed.clear()
    assert main(["render", str(src), "--plan", str(plan), "-q", "-o", str(tmp_path / "b.mp4")]) == 0
    assert probed.count(str(src)) == 1, probed
    assert real_probe(tmp_path / "b.mp4").frame_count == 6
