"""Interruption: Ctrl-C and SIGTERM leave nothing behind; SIGKILL leaves a temp file the next run removes.

blurface runs in a subprocess. To interrupt the render reliably (not before it,
not after it) without timing guesses, a small wrapper slows each rendered frame
down and the test waits until the temporary output file appears: from then on
the render is known to be under way for several seconds. One test interrupts
the real ``python -m blurface`` during its analysis, once it has opened the input.
No assertion depends on how long anything takes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from blurface import media

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# ``python -c SLOW_RENDER args``: blurface's CLI with every rendered frame 50 ms slower.
SLOW_RENDER = r"""
import sys, time
from blurface import media

real_transcode = media.transcode

def slow_transcode(info, dst, process=None, *, masks=None, **kwargs):
    if masks is not None:  # the render passes masks (drawn in the planes), not a callback
        boxes = masks.boxes
        def slow_boxes(index):
            time.sleep(0.05)
            return boxes(index)
        masks.boxes = slow_boxes
        return real_transcode(info, dst, masks=masks, **kwargs)
    def slow(frame):
        time.sleep(0.05)
        return process(frame)
    return real_transcode(info, dst, slow, **kwargs)

media.transcode = slow_transcode
from blurface.cli import main
sys.exit(main(sys.argv[1:]))
"""

WAIT = 120.0  # seconds: generous limits for slow machines; no test relies on them being short


def temp_files(folder: Path) -> list[Path]:
    return sorted(folder.glob(".*blurface-tmp*"))


def wait_for(condition: Callable[[], bool], proc: subprocess.Popen, what: str) -> None:
    """Poll ``condition`` until true; fail if ``proc`` ends first or after :data:`WAIT` seconds."""
    deadline = time.monotonic() + WAIT
    while not condition():
        if proc.poll() is not None:
            out, err = proc.communicate()
            pytest.fail(f"blurface ended (exit {proc.returncode}) before {what}: {err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


def finish(proc: subprocess.Popen) -> tuple[int, list[str]]:
    _, err = proc.communicate(timeout=WAIT)
    return proc.returncode, [line for line in err.splitlines() if line.strip()]


def start_slow_render(src: Path, dst: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", SLOW_RENDER, str(src), "--all", "-q", "-o", str(dst)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


@pytest.fixture
def clip(video_factory) -> Path:
    # 100 frames at 50 ms each: the render lasts about 5 s once the temp file exists.
    return video_factory("in.mp4", width=64, height=48, n_frames=100, audio=("aac",))


@pytest.mark.parametrize(
    ("sig", "name"), [(signal.SIGINT, "Ctrl-C (SIGINT)"), (signal.SIGTERM, "SIGTERM")], ids=["SIGINT", "SIGTERM"]
)
def test_signal_during_render_exits_130_and_leaves_nothing(sig, name, clip, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dst = out_dir / "out.mp4"
    before = clip.read_bytes(), clip.stat().st_mtime_ns
    proc = start_slow_render(clip, dst)
    wait_for(lambda: bool(temp_files(out_dir)), proc, "the temporary output appeared")
    proc.send_signal(sig)
    code, lines = finish(proc)
    assert code == 130, lines
    assert len(lines) == 1 and "Traceback" not in lines[0], lines
    assert lines[0] == f"blurface: interrupted by {name}; no output video was written"
    assert list(out_dir.iterdir()) == [], "no output and no temporary file"
    assert (clip.read_bytes(), clip.stat().st_mtime_ns) == before


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_during_analysis_of_the_real_cli(sig, video_factory, tmp_path):
    """``python -m blurface`` as a user runs it, interrupted once it has opened the input."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc to see the input being read")
    # Long enough that the analysis is still running when the signal lands (about 4 s here).
    src = video_factory("long.mp4", width=320, height=240, n_frames=300)
    dst = tmp_path / "out.mp4"
    proc = subprocess.Popen(
        [sys.executable, "-m", "blurface", str(src), "--all", "-q", "-o", str(dst)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )

    def reading_input() -> bool:
        try:
            return any(os.readlink(f"/proc/{proc.pid}/fd/{fd}") == str(src) for fd in os.listdir(f"/proc/{proc.pid}/fd"))
        except OSError:  # a descriptor closed while we looked
            return False

    wait_for(reading_input, proc, "the input was opened")
    proc.send_signal(sig)
    code, lines = finish(proc)
    assert code == 130, lines
    assert len(lines) == 1 and "Traceback" not in lines[0] and "interrupted" in lines[0], lines
    assert sorted(p.name for p in tmp_path.iterdir()) == ["long.mp4"]


def test_sigkill_leaves_a_temp_file_that_the_next_run_removes(clip, tmp_path):
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dst = out_dir / "out.mp4"
    proc = start_slow_render(clip, dst)
    wait_for(lambda: bool(temp_files(out_dir)), proc, "the temporary output appeared")
    proc.kill()
    proc.communicate(timeout=WAIT)
    stale = temp_files(out_dir)
    # SIGKILL cannot be caught: the half-written temp file stays, hidden, never at the output path.
    assert len(stale) == 1 and str(proc.pid) in stale[0].name
    assert not dst.exists()

    done = subprocess.run(
        [sys.executable, "-m", "blurface", str(clip), "--all", "-q", "-o", str(dst)],
        capture_output=True, text=True, timeout=WAIT,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == ""
    assert sorted(p.name for p in out_dir.iterdir()) == ["out.mp4"], "the stale temp file is gone"
    assert media.probe(dst).frame_count == 100


def test_stale_temp_of_another_output_is_left_alone(clip, tmp_path):
    """Cleanup only touches temp files of the output being written, and only of dead processes."""
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    other = out_dir / f".other.mp4.blurface-tmp-{dead.pid}.mp4"
    alive = out_dir / f".out.mp4.blurface-tmp-{os.getpid()}.mp4"
    for p in (other, alive):
        p.write_bytes(b"partial")
    media.cleanup_stale_temps(out_dir / "out.mp4")
    assert other.exists() and alive.exists()
