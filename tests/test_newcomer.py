"""What a newcomer hit following the README (issue #23), each as it should be now.

Review after the quick start, a preview without ``-o``, the audit example's hashes, the progress
bars of excerpts and side files, and ``batch -q``. Real media: generated clips of two real people,
and the sample the README's examples use.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from people import make_people_clip, package_heads, plan_from_truth

from blurface import media
from blurface.cli import main
from blurface.plan import Plan

REPO = Path(__file__).resolve().parents[1]




@pytest.fixture
def clip_and_plan(tmp_path: Path):
    clip = make_people_clip(tmp_path / "two.mp4", package_heads(), n_frames=30, width=384, height=216, face_px=56)
    plan_path = tmp_path / "two.plan.json"
    plan_from_truth(clip, plan_path)
    return clip, plan_path


# --------------------------------------------------------------------------- review after the quick start


def test_review_starts_though_the_output_of_the_quick_start_exists(clip_and_plan, tmp_path: Path, capsys,
                                                                    monkeypatch) -> None:
    """Nothing is written before Render: an existing VIDEO.blurred.EXT must not stop the review from starting."""
    from blurface import server

    clip, plan_path = clip_and_plan
    earlier = tmp_path / "two.blurred.mp4"  # what `blurface two.mp4 --target ...` wrote before
    earlier.write_bytes(b"the quick start's output")
    served = []

    def serve_once(self) -> None:  # noqa: ANN001 - the page was served; the user presses Ctrl-C
        served.append(self.url)
        raise KeyboardInterrupt

    monkeypatch.setattr(server.ReviewServer, "serve_forever", serve_once)
    code = main(["review", str(clip.path), "--plan", str(plan_path), "-q"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert served and "open http://127.0.0.1:" in out, out
    assert earlier.read_bytes() == b"the quick start's output"


def test_render_on_the_page_refuses_an_existing_output_with_one_line_and_overwrite_replaces_it(
        clip_and_plan, tmp_path: Path) -> None:
    from test_server import _get, _post, _rendered

    from blurface.server import ReviewSession, start, stop

    clip, plan_path = clip_and_plan
    out = tmp_path / "two.blurred.mp4"
    out.write_bytes(b"an earlier render")
    for overwrite in (False, True):
        session = ReviewSession(Plan.load(plan_path), clip.path, save_path=plan_path, output=out,
                                people_dir=tmp_path / "people", overwrite=overwrite)
        session.prepare()
        server, thread = start(session)
        try:
            status, answer = _post(server, "/api/render", {})
            if not overwrite:
                # Refused when pressed, with the way out; the earlier file is untouched and nothing runs.
                assert status == 409, answer
                assert f"{out} exists" in answer["error"] and "--overwrite" in answer["error"], answer
                assert json.loads(_get(server, "/api/render")[1])["state"] != "running"
                assert out.read_bytes() == b"an earlier render"
                continue
            assert status == 200, answer
            state = _rendered(server)
            assert state["state"] == "done", state
            assert media.probe(out).frame_count == 30
        finally:
            stop(server, thread)


# --------------------------------------------------------------------------- preview without -o


def test_preview_without_o_writes_video_preview_mp4_beside_the_input(clip_and_plan, tmp_path: Path) -> None:
    clip, plan_path = clip_and_plan
    assert main(["preview", str(clip.path), "--plan", str(plan_path), "--overlay", "-q"]) == 0
    preview = tmp_path / "two.preview.mp4"
    info = media.probe(preview)
    assert info.frame_count == 30 and info.height == 216
    # A second run needs --overwrite, as every output does.
    assert main(["preview", str(clip.path), "--plan", str(plan_path), "-q"]) == 2
    assert main(["preview", str(clip.path), "--plan", str(plan_path), "-q", "--overwrite"]) == 0


# --------------------------------------------------------------------------- progress bars


def _bar_totals(err: str) -> dict[str, tuple[int, int]]:
    """The last state of each tqdm bar on stderr: stage -> (done, total)."""
    found = {}
    for stage, done, total in re.findall(r"(\w[\w ]*): +\d+%\|[^|]*\| (\d+)/(\d+) ", err):
        found[stage.strip()] = (int(done), int(total))
    return found


def test_excerpt_with_side_files_has_bars_with_totals_and_a_step_for_the_side_files(
        clip_and_plan, tmp_path: Path, capsys) -> None:
    clip, _ = clip_and_plan
    times = media.frame_times(media.probe(clip.path))
    in_range = int(((times >= 0.5) & (times < 0.9)).sum())
    assert main([str(clip.path), "--all", "--from", "0.5", "--to", "0.9", "-o", str(tmp_path / "x.mp4"),
                 "--matte", str(tmp_path / "x.matte.mkv"), "--contact-sheet", str(tmp_path / "x.png"),
                 "--report", str(tmp_path / "x.json")]) == 0
    bars = _bar_totals(capsys.readouterr().err)
    # The analysis reads the range and its margins (from the keyframe before), so its total is its own.
    assert bars["analyse"][0] == bars["analyse"][1] > 0, bars
    assert bars["render"] == (in_range, in_range), bars
    assert bars["matte"] == (in_range, in_range), bars
    assert bars["side files"] == (2, 2), bars


def test_whole_file_with_a_report_has_bars_with_totals(clip_and_plan, tmp_path: Path, capsys) -> None:
    clip, plan_path = clip_and_plan
    assert main(["render", str(clip.path), "--plan", str(plan_path), "-o", str(tmp_path / "r.mp4"),
                 "--report", str(tmp_path / "r.json")]) == 0
    bars = _bar_totals(capsys.readouterr().err)
    assert bars["render"] == (30, 30) and bars["side files"] == (1, 1), bars


# --------------------------------------------------------------------------- batch -q


def test_batch_quiet_prints_no_summary_as_the_main_command(tmp_path: Path, capsys) -> None:
    arch = tmp_path / "archive"
    arch.mkdir()
    make_people_clip(arch / "a.mp4", package_heads(), n_frames=8, width=192, height=108, face_px=40)
    (arch / "notes.txt").write_text("not a video\n")
    assert main(["batch", str(arch), "-o", str(tmp_path / "masked"), "--all", "-q"]) == 0
    assert capsys.readouterr().err == ""
    (arch / "b.mp4").write_bytes(b"a video extension, and no video\n")
    assert main(["batch", str(arch), "-o", str(tmp_path / "masked"), "--all", "-q"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("failed  b.mp4: ") and err.count("\n") == 1, err  # a failure is still one line
    assert main(["batch", str(arch), "-o", str(tmp_path / "masked"), "--all"]) == 1
    assert "batch: 0 done, 1 failed, 1 skipped (not video), 1 already up to date" in capsys.readouterr().err


# --------------------------------------------------------------------------- the README's audit example


def _fenced_blocks(text: str) -> list[tuple[str, str]]:
    """``(language, body)`` of every fenced block, fences paired in order (a closing fence opens nothing)."""
    blocks, language, body = [], None, []
    for line in text.splitlines():
        if line.startswith("```"):
            if language is None:
                language, body = line[3:].strip(), []
            else:
                blocks.append((language, "\n".join(body) + "\n"))
                language = None
        elif language is not None:
            body.append(line)
    return blocks


def _audit_example() -> str:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    return next(b for lang, b in _fenced_blocks(readme) if lang == "" and "$ sha256sum" in b)


def test_readme_audit_example_is_what_the_sample_gives(tmp_path: Path) -> None:
    """Its commands run on the sample; the lines, hashes and the audit.json excerpt below it are theirs."""
    import subprocess
    import sys

    readme = (REPO / "README.md").read_text(encoding="utf-8")
    example = _audit_example()
    work = tmp_path / "work"
    shutil.copytree(REPO / "samples", work / "samples")
    env = {"PYTHONPATH": str(REPO), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    lines = example.splitlines()
    shown: dict[str, str] = {}
    for i, line in enumerate(lines):
        if not line.startswith("$ "):
            continue
        argv = shlex.split(line[2:])
        expected = []
        for nxt in lines[i + 1:]:
            if nxt.startswith("$ "):
                break
            expected.append(nxt)
        if argv[0] == "sha256sum":
            for name, want in zip(argv[1:], expected):
                digest = hashlib.sha256((work / name).read_bytes()).hexdigest()
                shown[name] = digest
                assert want == f"{digest}  {name}", f"README shows {want!r}; the build gives {digest}"
            continue
        assert argv[0] == "blurface", line
        done = subprocess.run([sys.executable, "-m", "blurface", *argv[1:]], cwd=work, capture_output=True,
                              text=True, timeout=600, env=env)
        assert done.returncode == 0, done.stderr[-2000:]
        printed = [ln for ln in done.stderr.splitlines() if ln.startswith("wrote ")]
        assert printed == expected, f"README shows {expected}, the command printed {printed}"
    # The audit.json excerpt after the block: its hash, distance and reason are the run's.
    audit = json.loads((work / "audit.json").read_text())
    blocks = _fenced_blocks(readme)
    at = next(i for i, (_, b) in enumerate(blocks) if b == example)
    excerpt = next(b for lang, b in blocks[at + 1:] if lang == "json")
    track = audit["tracks"][0]
    assert f'"sha256": "{audit["output"]["sha256"]}"' in excerpt
    assert audit["output"]["sha256"] == shown[audit["output"]["path"]]
    assert f'"distance": {track["distance"]}' in excerpt, track
    assert json.dumps(track["reason"]) in excerpt, track
    assert json.dumps(track["masked_frames"]) in excerpt, track


# --------------------------------------------------------------------------- every output the README shows


def _shown_runs() -> list[tuple[str, list[str], list[str]]]:
    """``(title, commands, lines shown)`` for every README example on the sample that shows its output.

    A ``sh`` block followed by an output block, or a transcript (``$ command`` then its lines).
    Examples on other files (``talk.mp4``) are illustrations run by tests/test_readme.py; the
    review page's (a server) and the audit example (tested above, hashes and all) are left out.
    """
    blocks = _fenced_blocks((REPO / "README.md").read_text(encoding="utf-8"))
    runs = []
    for i, (language, body) in enumerate(blocks):
        if language == "sh" and i + 1 < len(blocks) and blocks[i + 1][0] == "":
            commands = [c.split("  #")[0].strip() for c in body.splitlines() if c.startswith("blurface ")]
            shown = [ln for ln in blocks[i + 1][1].splitlines() if ln and "%|" not in ln]
            if commands and all("samples/" in c for c in commands):
                runs.append((commands[0], commands, shown))
        elif language == "" and body.startswith("$ ") and "$ sha256sum" not in body:
            command, shown = None, []
            for line in body.splitlines() + ["$ end"]:
                if line.startswith("$ "):
                    if command and not command.startswith("blurface review"):
                        runs.append((command, [command], shown))
                    command, shown = line[2:], []
                elif line:
                    shown.append(line)
    return runs


def _same_but_seconds(line: str) -> str:
    return re.sub(r"\d+\.\d s\b", "N s", line)


@pytest.fixture(scope="module")
def reader_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for all the examples, run in the README's order as a reader runs them (inspect reads the quick start's output)."""
    work = tmp_path_factory.mktemp("reader")
    shutil.copytree(REPO / "samples", work / "samples")
    return work


@pytest.mark.parametrize("title, commands, shown", _shown_runs(), ids=[r[0][:60] for r in _shown_runs()])
def test_readme_shows_what_the_sample_gives(title: str, commands: list[str], shown: list[str], reader_folder: Path) -> None:
    """Every line the README shows under an example is what that example prints today, seconds aside."""
    import subprocess
    import sys

    work = reader_folder
    if title.startswith("blurface batch"):  # the README runs it on a fresh checkout, and says so
        work = reader_folder / "fresh"
        shutil.copytree(REPO / "samples", work / "samples", dirs_exist_ok=True)
    env = {"PYTHONPATH": str(REPO), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    printed: list[str] = []
    for command in commands:
        argv = shlex.split(command)
        done = subprocess.run([sys.executable, "-m", "blurface", *argv[1:]], cwd=work, capture_output=True,
                              text=True, timeout=600, env=env)
        assert done.returncode in (0, 1), f"{command}: {done.stderr[-2000:]}"
        for stream in (done.stderr, done.stdout):
            printed += [ln for ln in re.split(r"[\r\n]", stream) if ln.strip() and "%|" not in ln]
    # stdout and stderr are captured apart: their lines are compared in any order.
    assert sorted(_same_but_seconds(s) for s in printed) == sorted(_same_but_seconds(s) for s in shown), (
        f"README shows {shown}; the commands print {printed}")


def test_the_readme_is_one_screenful_per_topic_and_its_links_resolve() -> None:
    """Under 250 lines (issue #23: it was 789), and every docs/ page it sends a reader to exists."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) < 250
    links = re.findall(r"\]\((docs/[^)#]+)", readme)
    assert links and all((REPO / link).is_file() for link in links), [l for l in links if not (REPO / l).is_file()]
