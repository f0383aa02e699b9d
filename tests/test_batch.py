"""``blurface batch``: a generated archive, resume after SIGKILL, dead workers, Dask.

Masking is judged from output pixels at the astronaut's known boxes
(:func:`test_e2e.masked_per_frame`), never from the manifest. The manifest is read
only for what it alone can say: how many times each file was processed.
Nothing waits on wall-clock time except generous limits for a stuck run: kills
happen once the manifest (or the Dask scheduler) shows work under way.
"""

from __future__ import annotations

import csv
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

import pytest
from conftest import make_audio_only, make_clip
from test_e2e import FaceClip, make_face_clip, masked_per_frame, write_photo

from blurface import batch, media
from blurface.cli import main
from blurface.manifest import MANIFEST_NAME, REPORT_NAME

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

REPO = Path(__file__).resolve().parents[1]
WAIT = 240.0  # seconds: a limit for a stuck run, never an expectation

# The good videos of the archive, by relative path: nested, with spaces and non-ASCII names.
GOOD = ("one.mp4", "sub/Ünïcode clip.mov", "sub/deep dir/three.mkv")


def small_face_clip(path: Path, n_frames: int = 16) -> FaceClip:
    path.parent.mkdir(parents=True, exist_ok=True)
    return make_face_clip(path, n_frames=n_frames, width=320, height=240)


@pytest.fixture(scope="module")
def archive(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, FaceClip], Path]:
    """(archive folder, face clips by relative path, a reference photo outside it)."""
    root = tmp_path_factory.mktemp("batch")
    arch = root / "archive"
    clips = {rel: small_face_clip(arch / rel) for rel in GOOD}
    (arch / "notes.txt").write_text("not a video, nor any media\n")
    make_audio_only(arch / "sub" / "tone.m4a")
    # A video that probes but is cut in half: it fails during processing.
    whole = make_clip(root / "whole.mp4", n_frames=24, width=320, height=240, audio=("aac",), faststart=True)
    data = whole.read_bytes()
    (arch / "sub" / "broken.mp4").write_bytes(data[: len(data) // 2])
    return arch, clips, write_photo(root / "eileen.jpg")


def copy_archive(archive: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "archive"
    shutil.copytree(archive, dst)  # copy2: same sizes and mtimes
    return dst


def manifest_rows(out: Path) -> dict[str, dict]:
    with sqlite3.connect(out / MANIFEST_NAME, timeout=30) as db:
        db.row_factory = sqlite3.Row
        return {r["path"]: dict(r) for r in db.execute("SELECT * FROM files")}


def report_rows(out: Path) -> dict[str, dict]:
    with open(out / REPORT_NAME, newline="", encoding="utf-8") as f:
        return {r["path"]: r for r in csv.DictReader(f)}


def hidden_leftovers(out: Path) -> list[str]:
    """Temporary or staged files anywhere under ``out`` (the lock file is the batch's own)."""
    return sorted(
        str(p.relative_to(out)) for p in out.rglob(".*") if p.is_file() and p.name != ".blurface-batch.lock"
    )


def assert_masked(clips: dict[str, FaceClip], out: Path, rels: tuple[str, ...] = GOOD) -> None:
    for rel in rels:
        masked = masked_per_frame(clips[rel].path, out / rel, clips[rel].boxes)
        assert masked and all(masked), f"{rel}: unmasked frames {[i for i, m in enumerate(masked) if not m]}"


def wait_until(condition: Callable[[], bool], proc: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():
        if proc.poll() is not None:
            _, err = proc.communicate()
            pytest.fail(f"batch ended (exit {proc.returncode}) before {what}: {err}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.02)


def done_count(out: Path) -> int:
    try:
        return sum(r["status"] == "done" for r in manifest_rows(out).values())
    except sqlite3.Error:  # not created yet, or locked for a moment by the writer
        return 0


def start_batch(*args: object, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "blurface", "batch", *map(str, args)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or worker_env(),
    )


def worker_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


# --------------------------------------------------------------------------- the archive


def test_archive_is_mirrored_masked_and_bad_files_reported(archive, tmp_path, capsys) -> None:
    arch, clips, photo = archive
    out = tmp_path / "masked"
    code = main(["batch", str(arch), "-o", str(out), "--target", str(photo), "--jobs", "2"])
    err = capsys.readouterr().err
    assert code == 1  # one video failed
    assert_masked(clips, out)
    # The tree is mirrored: each good video at its own relative path, nothing else.
    outputs = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and not p.name.startswith("."))
    assert outputs == sorted([*GOOD, MANIFEST_NAME, REPORT_NAME])
    assert hidden_leftovers(out) == []
    for rel in GOOD:  # audio and timing survive as in the single-file command
        assert media.probe(out / rel).frame_count == media.probe(clips[rel].path).frame_count
    report = report_rows(out)
    assert set(report) == {*GOOD, "notes.txt", "sub/tone.m4a", "sub/broken.mp4"}
    assert {report[r]["status"] for r in GOOD} == {"done"}
    assert report["sub/broken.mp4"]["status"] == "failed"
    assert "truncated or damaged" in report["sub/broken.mp4"]["reason"] and report["sub/broken.mp4"]["output"] == ""
    assert report["notes.txt"]["status"] == "skipped" and "not a readable video" in report["notes.txt"]["reason"]
    assert report["sub/tone.m4a"]["status"] == "skipped" and "no video stream" in report["sub/tone.m4a"]["reason"]
    # One line per problem, naming the file; a summary at the end.
    lines = err.splitlines()
    assert [ln for ln in lines if ln.startswith("failed")] == [
        "failed  sub/broken.mp4: " + report["sub/broken.mp4"]["reason"]
    ]
    assert any(ln.startswith("skipped notes.txt: ") for ln in lines)
    assert any(ln.startswith("skipped sub/tone.m4a: ") for ln in lines)
    assert "batch: 3 done, 1 failed, 2 skipped" in lines[-1]
    assert "Traceback" not in err

    # Again: nothing done twice, the failure tried again; --status agrees without running anything.
    before = {rel: (out / rel).stat().st_mtime_ns for rel in GOOD}
    assert main(["batch", str(arch), "-o", str(out), "--target", str(photo), "-q"]) == 1
    assert {rel: (out / rel).stat().st_mtime_ns for rel in GOOD} == before
    rows = manifest_rows(out)
    assert [rows[r]["completions"] for r in GOOD] == [1, 1, 1]
    assert rows["sub/broken.mp4"]["attempts"] == 2
    capsys.readouterr()
    assert main(["batch", "--status", str(out)]) == 1
    status = capsys.readouterr().out
    assert "4 videos: 3 done, 1 failed, 0 not done; 2 other files skipped" in status
    assert "failed  sub/broken.mp4: " in status

    # --retry-failed touches only the failure.
    assert main(["batch", str(arch), "-o", str(out), "--target", str(photo), "-q", "--retry-failed"]) == 1
    rows = manifest_rows(out)
    assert rows["sub/broken.mp4"]["attempts"] == 3 and [rows[r]["attempts"] for r in GOOD] == [1, 1, 1]

    # A changed setting redoes everything.
    assert main(["batch", str(arch), "-o", str(out), "--target", str(photo), "-q", "--mask", "pixelate"]) == 1
    rows = manifest_rows(out)
    assert [rows[r]["completions"] for r in GOOD] == [2, 2, 2]
    assert_masked(clips, out)


def test_a_changed_input_is_redone_and_only_it(archive, tmp_path) -> None:
    arch = copy_archive(archive[0], tmp_path)
    (arch / "sub" / "broken.mp4").unlink()
    out = tmp_path / "masked"
    assert main(["batch", str(arch), "-o", str(out), "--all", "-q", "--jobs", "1"]) == 0
    small_face_clip(arch / "one.mp4", n_frames=20)  # replaced by a longer clip
    assert main(["batch", str(arch), "-o", str(out), "--all", "-q", "--jobs", "1"]) == 0
    rows = manifest_rows(out)
    assert [rows[r]["completions"] for r in GOOD] == [2, 1, 1]
    assert media.probe(out / "one.mp4").frame_count == 20



# --------------------------------------------------------------------------- outputs, unreadable inputs, names


def test_inputs_that_meet_at_one_output_get_distinct_outputs(tmp_path, capsys) -> None:
    """Issue 21 #2: x.avi went to x.avi.mp4, as did a real x.avi.mp4: both "done", one file lost."""
    arch = tmp_path / "archive"
    made = tmp_path / "made"
    # Each input is told apart by its length. x.avi holds MP4 data: videos are found by probing.
    clips = {}
    for rel, n in (("x.avi", 12), ("x.avi.mp4", 16), ("Cam.mp4", 14), ("cam.mp4", 18)):
        clips[rel] = small_face_clip(made / f"{n}.mp4", n_frames=n)
        (arch / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(clips[rel].path, arch / rel)
    out = tmp_path / "masked"
    assert main(["batch", str(arch), "-o", str(out), "--all", "--jobs", "1"]) == 0
    err = capsys.readouterr().err
    # The documented rule: a name kept as it is wins, then sorted order; the others get " (2)".
    expected = {"x.avi.mp4": "x.avi.mp4", "x.avi": "x.avi (2).mp4", "Cam.mp4": "Cam.mp4", "cam.mp4": "cam (2).mp4"}
    report = report_rows(out)
    assert {rel: r["output"] for rel, r in report.items()} == expected
    assert {r["status"] for r in report.values()} == {"done"}
    assert "output named x.avi (2).mp4: x.avi.mp4 is the output of x.avi.mp4" in report["x.avi"]["changes"]
    assert "done    x.avi -> x.avi (2).mp4: 12 frames" in err
    for rel, output in expected.items():
        assert media.probe(out / output).frame_count == media.probe(arch / rel).frame_count
        masked = masked_per_frame(clips[rel].path, out / output, clips[rel].boxes)
        assert masked and all(masked), rel
    # Stable: a rerun plans the same outputs and redoes nothing.
    assert main(["batch", str(arch), "-o", str(out), "--all"]) == 0
    assert "4 already up to date" in capsys.readouterr().err
    assert {rel: r["completions"] for rel, r in manifest_rows(out).items()} == dict.fromkeys(expected, 1)
    # The real x.avi.mp4 leaves the archive: x.avi takes its plain output again, and its "(2)" copy goes.
    (arch / "x.avi.mp4").unlink()
    assert main(["batch", str(arch), "-o", str(out), "--all", "-q"]) == 0
    assert report_rows(out)["x.avi"]["output"] == "x.avi.mp4"
    assert media.probe(out / "x.avi.mp4").frame_count == 12 and not (out / "x.avi (2).mp4").exists()
    assert main(["batch", str(arch), "-o", str(out), "--all"]) == 0
    assert "3 already up to date" in capsys.readouterr().err
    assert manifest_rows(out)["x.avi"]["completions"] == 2


def test_plan_outputs_rule() -> None:
    out = Path("/m")
    plan = batch.plan_outputs(out, ["a.avi", "a.avi.mp4", "a.avi (2)", "d.mkv", "d.MKV", "f.avi", "f.avi.mp4/g.mp4"])
    assert {rel: final.relative_to(out).as_posix() for rel, (final, _) in plan.items()} == {
        "a.avi.mp4": "a.avi.mp4",  # its own name: kept
        "a.avi (2)": "a.avi (2).mp4",  # a natural name is never taken by a renamed one
        "a.avi": "a.avi (3).mp4",
        "d.MKV": "d.MKV",  # same name but for case: the first in sorted order keeps it
        "d.mkv": "d (2).mkv",
        "f.avi": "f.avi (2).mp4",  # f.avi.mp4 is a folder other outputs need
        "f.avi.mp4/g.mp4": "f.avi.mp4/g.mp4",
    }
    assert "f.avi.mp4 is the folder f.avi.mp4" in plan["f.avi"][1]


def test_an_input_that_becomes_unreadable_fails_and_loses_its_output(tmp_path, capsys) -> None:
    """Issue 21 #7: a truncated input was "skipped (not video)", its old output kept, exit 0, --status "done"."""
    arch = tmp_path / "archive"
    small_face_clip(arch / "one.mp4")
    shutil.copy2(arch / "one.mp4", arch / "two.mp4")
    (arch / "notes.txt").write_text("not media at all\n")
    make_audio_only(arch / "tone.m4a")
    out = tmp_path / "masked"
    assert main(["batch", str(arch), "-o", str(out), "--all", "-q", "--jobs", "1"]) == 0
    assert (out / "one.mp4").is_file()
    capsys.readouterr()

    data = (arch / "one.mp4").read_bytes()
    (arch / "one.mp4").write_bytes(data[: len(data) // 2])  # the index is at the end: probing fails
    (arch / "fake.mp4").write_text("a video extension, and no video\n")
    # A Matroska signature, cut short, under a name that says nothing.
    mkv = make_clip(tmp_path / "c.mkv", n_frames=24, width=64, height=48).read_bytes()
    (arch / "card_dump").write_bytes(mkv[:40])
    assert main(["batch", str(arch), "-o", str(out), "--all"]) == 1  # not -q: it hides the summary
    err = capsys.readouterr().err
    report = report_rows(out)
    assert {rel: r["status"] for rel, r in report.items()} == {
        "one.mp4": "failed", "fake.mp4": "failed", "card_dump": "failed",
        "two.mp4": "done", "notes.txt": "skipped", "tone.m4a": "skipped",
    }
    assert report["one.mp4"]["output"] == "" and not (out / "one.mp4").exists()  # the stale output is removed
    assert "not a readable video" in report["one.mp4"]["reason"]
    assert [ln.split(":")[0] for ln in err.splitlines() if ln.startswith("failed")] == [
        "failed  card_dump", "failed  fake.mp4", "failed  one.mp4"]
    assert "batch: 0 done, 3 failed, 2 skipped (not video), 1 already up to date" in err
    assert main(["batch", "--status", str(out)]) == 1
    status = capsys.readouterr().out
    assert "4 videos: 1 done, 3 failed, 0 not done; 2 other files skipped" in status
    assert "failed  one.mp4: " in status

    # Mended: done again, with no other file redone.
    small_face_clip(arch / "one.mp4")
    for rel in ("fake.mp4", "card_dump"):
        (arch / rel).unlink()
    assert main(["batch", str(arch), "-o", str(out), "--all", "-q"]) == 0
    rows = manifest_rows(out)
    assert rows["one.mp4"]["status"] == "done" and (out / "one.mp4").is_file()
    assert rows["two.mp4"]["completions"] == 1


def test_file_names_are_escaped_in_every_line(tmp_path, capsys) -> None:
    """Issue 21 #12: names with terminal escape codes were printed raw; a newline split a skipped line."""
    arch = tmp_path / "archive"
    small_face_clip(arch / "cam\x1b[2J.mp4")
    (arch / "red\x1b[31m.txt").write_text("not media\n")
    (arch / "two\nlines.txt").write_text("not media\n")
    (arch / "bad\x1b]0;pwned\x07.mp4").write_text("not a video\n")
    out = tmp_path / "masked"
    code = main(["batch", str(arch), "-o", str(out), "--all", "--jobs", "1"])
    err = capsys.readouterr().err
    assert "\x1b" not in err and "\x07" not in err
    lines = err.splitlines()
    assert "skipped two\\nlines.txt: is not a readable video (FFmpeg: invalid data): the file is damaged, " \
           "incomplete, or not a media file" in lines
    assert any(ln.startswith("skipped red\\x1b[31m.txt: ") for ln in lines)
    assert any(ln.startswith("done    cam\\x1b[2J.mp4 -> cam\\x1b[2J.mp4: 16 frames") for ln in lines)
    assert any(ln.startswith("failed  bad\\x1b]0;pwned\\x07.mp4: ") for ln in lines)
    assert code == 1
    assert main(["batch", "--status", str(out)]) == 1
    status = capsys.readouterr().out
    assert "\x1b" not in status and "failed  bad\\x1b]0;pwned\\x07.mp4: " in status


def test_printable_escapes_controls_and_keeps_letters() -> None:
    from blurface.text import one_line, printable

    assert printable("Ünïcode clip 名前.mov") == "Ünïcode clip 名前.mov"
    assert printable("a\x1b[2Jb\x07\x7f\x9b\u202ec\u200bd\te") == "a\\x1b[2Jb\\x07\\x7f\\x9b\\u202ec\\u200bd\\te"
    assert one_line(" first\nsecond \x1b[0m\n") == "first\\nsecond \\x1b[0m"


@pytest.mark.parametrize(
    "argv, words",
    [
        (["batch", "{arch}", "--all"], "give the archive folder and the output folder"),
        (["batch", "{arch}", "-o", "{out}"], "exactly one of --target, --keep or --all"),
        (["batch", "{arch}", "-o", "{arch}", "--all"], "is the archive itself"),
        (["batch", "{arch}/one.mp4", "-o", "{out}", "--all"], "is not a folder"),
        (["batch", "{arch}", "-o", "{out}", "--all", "--jobs", "0"], "--jobs 0"),
        (["batch", "--status", "{out}"], "holds no batch manifest"),
    ],
)
def test_usage_errors_are_one_line_exit_2(argv, words, archive, tmp_path, capsys) -> None:
    arch = archive[0]
    code = main([a.format(arch=arch, out=tmp_path / "masked") for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and words in err[0], err


def test_default_jobs_rule() -> None:
    assert batch.default_jobs(cores=2, available_bytes=8 * 2**30) == 1
    assert batch.default_jobs(cores=16, available_bytes=64 * 2**30) == 8
    assert batch.default_jobs(cores=16, available_bytes=3 * batch.WORKER_MEMORY_BYTES) == 3
    assert batch.default_jobs(cores=1, available_bytes=0) == 1


# --------------------------------------------------------------------------- resume and dead workers


@pytest.fixture
def four_clips(tmp_path: Path) -> tuple[Path, dict[str, FaceClip]]:
    arch = tmp_path / "archive"
    rels = ("a.mp4", "b/b.mp4", "c/c d.mp4", "d.mp4")
    return arch, {rel: small_face_clip(arch / rel, n_frames=30) for rel in rels}


def test_sigkill_then_rerun_loses_nothing_and_does_nothing_twice(four_clips, tmp_path) -> None:
    arch, clips = four_clips
    out = tmp_path / "masked"
    proc = start_batch(arch, "-o", out, "--all", "-q", "--jobs", "1")
    wait_until(lambda: done_count(out) >= 1, proc, "the first file was done")
    import psutil

    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=WAIT)
    # The orphaned worker notices its client is gone and stops (removing its temp file).
    _, alive = psutil.wait_procs(workers, timeout=WAIT)
    assert alive == []
    finished = {rel for rel, r in manifest_rows(out).items() if r["status"] == "done"}
    assert finished and finished != set(clips), "the kill should land mid-batch"
    # Every output present is complete; none is half-written.
    for rel in clips:
        if (out / rel).exists():
            assert rel in finished
            assert media.probe(out / rel).frame_count == 30
    assert main(["batch", str(arch), "-o", str(out), "--all", "-q", "--jobs", "1"]) == 0
    rows = manifest_rows(out)
    assert {rel: r["completions"] for rel, r in rows.items()} == dict.fromkeys(clips, 1)
    assert hidden_leftovers(out) == []
    assert_masked(clips, out, tuple(clips))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_stops_workers_keeps_finished_outputs_and_resumes(sig, four_clips, tmp_path) -> None:
    arch, clips = four_clips
    out = tmp_path / "masked"
    proc = start_batch(arch, "-o", out, "--all", "-q", "--jobs", "1")
    wait_until(lambda: done_count(out) >= 1, proc, "the first file was done")
    import psutil

    workers = psutil.Process(proc.pid).children(recursive=True)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "finished outputs are kept: run the same command again to resume" in lines[0], lines
    _, alive = psutil.wait_procs(workers, timeout=WAIT)
    assert alive == []
    assert hidden_leftovers(out) == []
    finished = {rel for rel, r in manifest_rows(out).items() if r["status"] == "done"}
    assert finished and all((out / rel).is_file() for rel in finished)
    assert main(["batch", str(arch), "-o", str(out), "--all", "-q", "--jobs", "1"]) == 0
    assert {rel: r["completions"] for rel, r in manifest_rows(out).items()} == dict.fromkeys(clips, 1)


def test_a_worker_killed_mid_file_is_retried(four_clips, tmp_path) -> None:
    arch, clips = four_clips
    out = tmp_path / "masked"
    proc = start_batch(arch, "-o", out, "--all", "--jobs", "1")
    # A file is under way once its temporary output exists.
    wait_until(lambda: any(out.rglob(".*.blurface-tmp-*")), proc, "a worker rendered")
    import psutil

    victims = [p for p in psutil.Process(proc.pid).children(recursive=True) if "spawn" in " ".join(p.cmdline())]
    assert victims
    for p in victims:
        p.send_signal(signal.SIGKILL)
    _, err = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0, err
    assert [ln for ln in err.splitlines() if ln.startswith("retry")], err
    rows = manifest_rows(out)
    assert {rel: r["completions"] for rel, r in rows.items()} == dict.fromkeys(clips, 1)
    assert max(r["attempts"] for r in rows.values()) == 2
    assert hidden_leftovers(out) == []
    assert_masked(clips, out, tuple(clips))



class _FakePool:
    """A one-slot pool for tests: subclasses say what ``submit`` gives back and whether a failure lost the job."""

    capacity = 1

    def __init__(self, jobs: int, work: batch.WorkSettings) -> None:
        pass

    def wait(self, futures):  # noqa: ANN001, ANN202
        return set(futures)

    def retries(self, future: Future) -> int:
        return 0

    def close(self, *, cancel: bool = False) -> None:
        pass


def test_a_file_whose_worker_dies_twice_is_marked_failed(archive, tmp_path, monkeypatch) -> None:
    """The retry rule on its own: a pool whose every worker dies (as if the file killed it)."""
    from concurrent.futures.process import BrokenProcessPool

    submitted: list[str] = []

    class DyingPool(_FakePool):

        def submit(self, job: batch.Job) -> Future:
            submitted.append(job.rel)
            future: Future = Future()
            future.set_exception(BrokenProcessPool("a child process terminated abruptly"))
            return future

        def lost(self, future: Future, error: BaseException) -> bool:
            return True

    monkeypatch.setattr(batch.client, "LocalPool", DyingPool)
    arch = tmp_path / "archive"
    arch.mkdir()
    shutil.copy2(archive[0] / "one.mp4", arch / "one.mp4")
    out = tmp_path / "masked"
    summary = batch.run_batch(arch, out, batch.prepare(all_faces=True))
    assert submitted == ["one.mp4", "one.mp4"]
    assert (summary.done, summary.failed, summary.exit_code) == (0, 1, 1)
    row = manifest_rows(out)["one.mp4"]
    assert row["status"] == "failed" and row["attempts"] == 2
    assert row["reason"].startswith("a worker died while processing it (BrokenProcessPool")
    assert not (out / "one.mp4").exists() and hidden_leftovers(out) == []


# --------------------------------------------------------------------------- Dask


def test_dask_local_cluster_with_relative_paths(archive, tmp_path, monkeypatch) -> None:
    """Issue 21 #4: relative paths failed every file with "not found on worker ... shared storage"."""
    distributed = pytest.importorskip("distributed")
    copy_archive(archive[0], tmp_path)
    clips = {rel: archive[1][rel] for rel in GOOD}
    work = batch.prepare(targets=[archive[2]])
    with distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, host="127.0.0.1"
    ) as cluster:
        # The workers started elsewhere, as on a cluster: their working folder is not the client's.
        monkeypatch.chdir(tmp_path)
        summary = batch.run_batch("archive", "masked", work, scheduler=cluster.scheduler_address)
    out = tmp_path / "masked"
    reasons = {r.path: r.reason for r in summary.rows if r.status == "failed"}
    assert (summary.done, summary.failed, summary.skipped) == (3, 1, 2), reasons
    assert list(reasons) == ["sub/broken.mp4"] and "truncated or damaged" in reasons["sub/broken.mp4"]
    assert summary.exit_code == 1
    assert_masked(clips, out)
    assert hidden_leftovers(out) == []


def test_a_worker_that_cannot_see_a_file_says_so(archive, tmp_path, monkeypatch) -> None:
    """A worker without the shared storage: the file is there for the client, not for it."""

    class BlindPool(_FakePool):

        def submit(self, job: batch.Job) -> Future:
            assert os.path.isabs(job.src) and os.path.isabs(job.staged)  # resolved by the client
            away = Path(job.src).with_name(".elsewhere")
            os.rename(job.src, away)  # while the worker looks, the file is not where the client sees it
            try:
                outcome = batch.process_file(job)
            finally:
                os.rename(away, job.src)
            future: Future = Future()
            future.set_result(outcome)
            return future

        def lost(self, future: Future, error: BaseException) -> bool:
            return False

    monkeypatch.setattr(batch.client, "LocalPool", BlindPool)
    arch = tmp_path / "archive"
    arch.mkdir()
    shutil.copy2(archive[0] / "one.mp4", arch / "one.mp4")
    monkeypatch.chdir(tmp_path)
    summary = batch.run_batch("archive", "masked", batch.prepare(all_faces=True))
    assert summary.failed == 1
    reason = manifest_rows(tmp_path / "masked")["one.mp4"]["reason"]
    assert reason.startswith(f"{arch / 'one.mp4'}: not found on worker ")
    assert "though the machine running 'blurface batch' sees it: every worker must see the archive" in reason


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_on_a_dask_scheduler_survives_a_killed_worker(four_clips, tmp_path) -> None:
    distributed = pytest.importorskip("distributed")
    arch, clips = four_clips
    out = tmp_path / "masked"
    address = f"tcp://127.0.0.1:{_free_port()}"
    env = worker_env()
    dask = [sys.executable, "-m", "distributed.cli.dask_scheduler"]
    started = [subprocess.Popen([*dask, "--host", "127.0.0.1", "--port", address.rsplit(":", 1)[1],
                                 "--no-dashboard"], env=env, stderr=subprocess.DEVNULL)]
    try:
        for _ in range(2):
            started.append(subprocess.Popen(
                [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-nanny",
                 "--host", "127.0.0.1", "--no-dashboard"], env=env, stderr=subprocess.DEVNULL,
            ))
        with distributed.Client(address, timeout=WAIT) as watcher:
            watcher.wait_for_workers(2, timeout=WAIT)
            pids = watcher.run(os.getpid)
            proc = start_batch(arch, "-o", out, "--all", "--scheduler", address)

            victim: dict[str, object] = {}

            def rendering() -> bool:
                # A worker's temporary output names its pid: that worker is mid-file.
                for tmp in out.rglob(".*.blurface-tmp-*"):
                    pid = int(re.search(r"blurface-tmp-(\d+)", tmp.name).group(1))
                    if pid in pids.values():
                        final = tmp.parent / tmp.name[2:].split(".blurface-batch-")[0]
                        victim.update(pid=pid, rel=final.relative_to(out).as_posix())
                        return True
                return False

            wait_until(rendering, proc, "a Dask worker was rendering")
            os.kill(victim["pid"], signal.SIGKILL)
            _, err = proc.communicate(timeout=WAIT)
        survivor = next(pid for pid in pids.values() if pid != victim["pid"])
        assert proc.returncode == 0, err
        rows = manifest_rows(out)
        assert {rel: r["completions"] for rel, r in rows.items()} == dict.fromkeys(clips, 1)
        # The file the killed worker was rendering was finished by the other one, and both tries count.
        assert rows[victim["rel"]]["worker"].endswith(f":{survivor}")
        assert rows[victim["rel"]]["attempts"] == 2
        assert report_rows(out)[victim["rel"]]["attempts"] == "2"
        assert hidden_leftovers(out) == []
        assert_masked(clips, out, tuple(clips))
    finally:
        for p in reversed(started):
            p.kill()
            p.wait()


def test_an_interrupt_while_a_finished_file_is_recorded_waits_for_the_record() -> None:
    """Ctrl-C between taking a finished job and recording it left its staged output behind."""
    steps: list[str] = []
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            with batch.client.interrupts_deferred():
                signal.raise_signal(signal.SIGINT)  # arrives mid-record ...
                steps.append("recorded")  # ... and the record still completes
            steps.append("after the block")  # never: the interrupt is delivered on leaving it
        assert steps == ["recorded"]
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        with batch.client.interrupts_deferred():  # nothing caught: nothing delivered
            steps.append("quiet")
    finally:
        signal.signal(signal.SIGINT, before)
    assert steps == ["recorded", "quiet"]


def test_a_render_that_changed_its_pixels_redoes_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Outputs of an earlier render (pixelate's 8 blocks, say) are not up to date: the fingerprint holds its revision."""
    import blurface.rendering

    work = batch.prepare(all_faces=True)
    before = work.fingerprint()
    assert work.fingerprint() == before
    monkeypatch.setattr(blurface.rendering, "RENDER_REVISION", blurface.rendering.RENDER_REVISION + 1)
    assert work.fingerprint() != before
