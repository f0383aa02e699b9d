"""Every claim of the README has a test: its code blocks run as written, and its options do what it says.

The code blocks are read from ``README.md`` and ``docs/*.md`` themselves, so an edited example is tested as
edited. Each runs in a fresh folder holding the files it names (``talk.mp4`` is a clip
of two real people, Eileen Collins and Grace Hopper, with audio; ``alice.jpg`` is a
photo of Eileen, ``bob.jpg`` of Grace), as a separate process, the way a user runs it.
stderr may hold the progress bar and warnings, never a traceback.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import decoded_images, make_clip
from people import PeopleClip, astronaut_photo, hopper_photo, make_people_clip, package_heads

from blurface import evaluate, media

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text(encoding="utf-8")
# The README and the pages it links: their examples are run alike (issue #23 moved most of them to docs/).
PAGES = {"README.md": README} | {
    f"docs/{p.name}": p.read_text(encoding="utf-8") for p in sorted((REPO / "docs").glob("*.md"))}


def code_blocks(language: str, text: str = README) -> list[str]:
    return re.findall(rf"^ *```{language}\n(.*?)^ *```", text, flags=re.S | re.M)


def page_blocks(language: str) -> list[tuple[str, str]]:
    """``(page, block)`` for every ``language`` block of the README and of docs/*.md."""
    return [(page, block) for page, text in PAGES.items() for block in code_blocks(language, text)]


def blurface_cmd(*args: object) -> list[str]:
    return [sys.executable, "-m", "blurface", *map(str, args)]


def run_process(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(REPO), "PATH": str(Path(sys.executable).parent) + ":/usr/bin:/bin"}
    return subprocess.run(argv, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


def assert_clean_stderr(done: subprocess.CompletedProcess, what: str) -> None:
    assert "Traceback" not in done.stderr and "Error" not in done.stderr.replace("error: ", ""), (
        f"{what}: stderr has a traceback:\n{done.stderr[-3000:]}"
    )


# --------------------------------------------------------------------------- the files the examples name


def _write_eileen(path: Path, variant: int) -> None:
    image = astronaut_photo()
    photo = cv2.flip(image[0:300, 100:420], 1) if variant == 0 else cv2.resize(image[10:320, 40:380], None, fx=0.8, fy=0.8)
    cv2.imwrite(str(path), photo)


@pytest.fixture(scope="module")
def stage(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder with every file the README's examples name, made once."""
    root = tmp_path_factory.mktemp("readme_stage")
    clip = make_people_clip(root / "talk.mp4", package_heads(), n_frames=20)
    (root / "truth.json").write_text(json.dumps({"frames": clip.truth}))
    for name, variant in (("alice.jpg", 0), ("host.jpg", 0), ("alice1.jpg", 0), ("alice2.jpg", 1)):
        _write_eileen(root / name, variant)
    for folder in ("alice", "alice_photos"):
        (root / folder).mkdir()
        _write_eileen(root / folder / "a.jpg", 0)
        _write_eileen(root / folder / "b.png", 1)
    cv2.imwrite(str(root / "bob.jpg"), cv2.flip(hopper_photo()[60:480, 60:460], 1))
    # The batch examples: an archive with one video, and the target's photo.
    (root / "archive").mkdir()
    shutil.copy(root / "talk.mp4", root / "archive" / "talk.mp4")
    _write_eileen(root / "eileen.jpg", 1)
    # `verify` examines a finished file and `render` replays a plan: the first examples' outputs.
    done = run_process(blurface_cmd("talk.mp4", "--target", "alice.jpg", "--plan", "talk.plan.json", "-q"), root)
    assert done.returncode == 0, done.stderr
    shutil.copytree(REPO / "samples", root / "samples")
    return root


def fresh(stage: Path, tmp_path: Path) -> Path:
    work = tmp_path / "work"
    shutil.copytree(stage, work)
    return work


def sh_commands(block: str) -> list[str]:
    """The block's commands, less comments and the install steps (the test runs in the installed env)."""
    out = []
    for line in block.splitlines():
        for part in line.split("&&"):
            part = part.split("  #")[0].strip()
            if not part or part.startswith(("#", "python3 -m venv", "pip install", ".")):
                continue
            out.append(part)
    return out


# The cluster example needs a cluster on another machine; tests/test_batch.py runs the same
# commands against a scheduler and two workers it starts on 127.0.0.1.
SH_BLOCKS = [
    (page, b) for page, b in page_blocks("sh")
    if any(c.startswith("blurface") for c in sh_commands(b)) and not any(c.startswith("dask ") for c in sh_commands(b))
]
# The staged talk.mp4 is under a second long: the README's minute marks map into it.
TIMES = {"1:20": "0:00.1", "1:35": "0:00.5"}


def test_docs_pages_have_shell_examples_to_run() -> None:
    """The moved examples are collected: the README and at least the review and batch pages have blocks here."""
    pages = {page for page, _ in SH_BLOCKS}
    assert {"README.md", "docs/review.md", "docs/batch.md"} <= pages, pages


@pytest.mark.parametrize("block", [b for _, b in SH_BLOCKS], ids=[f"{p}:{sh_commands(b)[0][:50]}" for p, b in SH_BLOCKS])
def test_readme_shell_example_runs(block: str, stage: Path, tmp_path: Path) -> None:
    work = fresh(stage, tmp_path)
    for command in sh_commands(block):
        argv = [TIMES.get(a, a) for a in shlex.split(command)]
        assert argv[0] == "blurface", f"README example runs {argv[0]!r}, which this test does not know"
        # Each line of "Whom to mask" is an alternative writing the same default output.
        default_out = work / "talk.blurred.mp4"
        if default_out.exists() and "talk.blurred.mp4" not in argv and argv[1] not in ("render", "enroll"):
            default_out.unlink()
        # Lines of one block are alternatives: a later one may write the same -o file.
        if "-o" in argv and argv[1] != "batch" and (work / argv[argv.index("-o") + 1]).is_file():
            (work / argv[argv.index("-o") + 1]).unlink()
        # A plan the line writes (not one it reads) is an output too, refused if it exists (issue #21).
        if "--plan" in argv and argv[1] not in ("render", "preview", "review", "people"):
            (work / argv[argv.index("--plan") + 1]).unlink(missing_ok=True)
        done = run_process(blurface_cmd(*argv[1:]), work)
        assert done.returncode == 0, f"{command}: exit {done.returncode}\n{done.stderr[-3000:]}"
        assert_clean_stderr(done, command)


def test_readme_pytest_line_is_the_one_ci_runs() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    line = next(c for b in code_blocks("sh") for c in b.splitlines() if "pytest" in c)
    assert line.strip() in ci


@pytest.mark.parametrize("index", range(len(page_blocks("python"))))
def test_readme_python_example_runs_as_a_plain_script(index: int, stage: Path, tmp_path: Path) -> None:
    """Saved as a script with no ``if __name__ == "__main__":`` guard, as library users write them."""
    work = fresh(stage, tmp_path)
    # The example's outputs, which the library refuses to replace as the command does (issue #21).
    (work / "talk.blurred.mp4").unlink()
    (work / "talk.plan.json").unlink(missing_ok=True)
    script = work / "example.py"
    script.write_text(page_blocks("python")[index][1])
    done = run_process([sys.executable, str(script)], work)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stderr.strip() == "", f"stderr is not empty:\n{done.stderr[-3000:]}"
    truth = evaluate.load_truth(work / "truth.json")
    acc = evaluate.score(work / "talk.mp4", work / "talk.blurred.mp4", truth, ["astronaut"])
    assert acc.leaked_frames == [], acc.summary()


# --------------------------------------------------------------------------- options say what they do


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> PeopleClip:
    return make_people_clip(tmp_path_factory.mktemp("opts") / "two.mp4", package_heads(), n_frames=12)


@pytest.fixture(scope="module")
def eileen(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ref") / "eileen.jpg"
    _write_eileen(path, 0)
    return path


def blur(clip_path: Path, out: Path, *args: object) -> Path:
    from blurface.cli import main

    assert main([str(clip_path), *map(str, args), "-o", str(out), "-q"]) == 0
    return out


@pytest.mark.parametrize("speed", ["--fast", "--thorough"])
def test_speed_presets_mask_the_target(speed: str, clip: PeopleClip, eileen: Path, tmp_path: Path) -> None:
    out = blur(clip.path, tmp_path / "out.mp4", "--target", eileen, "--unsure", "keep", speed)
    acc = evaluate.score(clip.path, out, clip.truth, ["astronaut"])
    assert acc.leaked_frames == [] and acc.visible["astronaut"] == len(clip.truth), acc.summary()
    assert media.probe(out).frame_count == media.probe(clip.path).frame_count


def x264_settings(path: Path) -> str:
    """The settings x264 writes into the stream (an SEI message in the first packet)."""
    with av.open(str(path)) as c:
        for packet in c.demux(video=0):
            text = bytes(packet).decode("latin-1")
            if "x264" in text:
                return text[text.index("x264") :]
    raise AssertionError("no x264 settings in the stream")


def test_crf_and_preset_reach_the_encoder(clip: PeopleClip, tmp_path: Path) -> None:
    default = x264_settings(blur(clip.path, tmp_path / "d.mp4", "--all"))
    assert "crf=18.0" in default and "subme=2" in default  # README: --crf 18, --preset veryfast
    tuned = x264_settings(blur(clip.path, tmp_path / "t.mp4", "--all", "--crf", "30", "--preset", "ultrafast"))
    assert "crf=30.0" in tuned and "subme=0" in tuned and "cabac=0" in tuned


def test_crf_changes_quality(clip: PeopleClip, tmp_path: Path) -> None:
    """Lower CRF, better picture: PSNR against the source on frames with nothing masked."""
    faceless = make_clip(tmp_path / "plain.mp4", n_frames=8, width=320, height=240, audio=("aac",))
    src = decoded_images(faceless)

    def psnr(crf: int) -> float:
        out = decoded_images(blur(faceless, tmp_path / f"crf{crf}.mp4", "--all", "--crf", crf))
        return float(np.mean([cv2.PSNR(a, b) for a, b in zip(src, out)]))

    assert psnr(10) > psnr(40) + 3


def test_pad_grows_the_mask(clip: PeopleClip, eileen: Path, tmp_path: Path) -> None:
    """``--pad F``: each side grows by F of the box. Read from the pixels around Eileen's face."""
    before = decoded_images(clip.path)

    def changed_beside_face(pad: float) -> float:
        after = decoded_images(blur(clip.path, tmp_path / f"pad{pad}.mp4", "--target", eileen, "--unsure", "keep",
                                    "--pad", pad, "--shape", "box", "--mask", "solid"))
        shares = []
        for a, b, faces in zip(before, after, clip.truth):
            x1, y1, x2, y2 = next(f["box"] for f in faces if f["who"] == "astronaut")
            w = x2 - x1
            # A strip left of the face, from 0.1 to 0.3 box widths out, at eye height.
            ys = slice(int(y1 + 0.3 * (y2 - y1)), int(y1 + 0.6 * (y2 - y1)))
            xs = slice(int(x1 - 0.3 * w), int(x1 - 0.1 * w))
            diff = np.abs(a[ys, xs].astype(int) - b[ys, xs].astype(int)).max(axis=2)
            shares.append(float((diff > 30).mean()))
        return float(np.mean(shares))

    assert changed_beside_face(0.0) < 0.1  # the box itself only
    assert changed_beside_face(0.5) > 0.9  # half a box further on each side covers the strip


def _top_level_atoms(path: Path) -> list[str]:
    data = path.read_bytes()
    atoms, pos = [], 0
    while pos + 8 <= len(data):
        size = int.from_bytes(data[pos : pos + 4], "big")
        atoms.append(data[pos + 4 : pos + 8].decode("latin-1"))
        if size == 1:
            size = int.from_bytes(data[pos + 8 : pos + 16], "big")
        if size < 8:
            break
        pos += size
    return atoms


@pytest.mark.parametrize("ext", [".mp4", ".mov"])
def test_output_is_faststart(ext: str, video_factory, tmp_path: Path) -> None:
    src = video_factory(f"in{ext}", n_frames=6, audio=("aac",))  # moov at the end, as cameras write it
    assert _top_level_atoms(src).index("moov") > _top_level_atoms(src).index("mdat")
    atoms = _top_level_atoms(blur(src, tmp_path / f"out{ext}", "--all"))
    assert atoms.index("moov") < atoms.index("mdat"), atoms


@pytest.mark.parametrize("ext", [".mp4", ".mkv"])
def test_chapters_are_kept(ext: str, video_factory, tmp_path: Path) -> None:
    plain = video_factory(f"plain{ext}", n_frames=30, audio=("aac",))
    src = tmp_path / f"chapters{ext}"
    chapters = [
        {"id": 1, "start": 0, "end": 500, "time_base": Fraction(1, 1000), "metadata": {"title": "Opening"}},
        {"id": 2, "start": 500, "end": 1000, "time_base": Fraction(1, 1000), "metadata": {"title": "Q&A"}},
    ]
    with av.open(str(plain)) as inp, av.open(str(src), "w") as out:
        streams = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        out.set_chapters(chapters)
        for packet in inp.demux():
            if packet.dts is not None:
                packet.stream = streams[packet.stream.index]
                out.mux(packet)

    def titles(path: Path) -> list[tuple[str, float]]:
        with av.open(str(path)) as c:
            return [(ch["metadata"].get("title"), float(ch["start"] * ch["time_base"])) for ch in c.chapters()]

    assert titles(src) == [("Opening", 0.0), ("Q&A", 0.5)]
    # Chapter times are kept; their titles are metadata, dropped unless --keep-metadata.
    assert [(t or None, start) for t, start in titles(blur(src, tmp_path / f"out{ext}", "--all"))] == [
        (None, 0.0), (None, 0.5)]
    assert titles(blur(src, tmp_path / f"kept{ext}", "--all", "--keep-metadata")) == titles(src)


def test_rotated_phone_video_is_masked_upright(tmp_path: Path, eileen: Path) -> None:
    """Stored sideways with a 90-degree display rotation, as phones record portrait video."""
    upright = make_people_clip(tmp_path / "upright.mp4", package_heads(), n_frames=12, width=288, height=512)
    src = tmp_path / "phone.mp4"
    with av.open(str(upright.path)) as inp, av.open(str(src), "w") as out:
        a_in = inp.streams.audio[0]
        video = out.add_stream("libx264", rate=inp.streams.video[0].average_rate)
        video.width, video.height, video.pix_fmt = 512, 288, "yuv420p"
        video.set_display_rotation(-90)  # PyAV's degrees are counter-clockwise: this is 90 clockwise
        audio = out.add_stream_from_template(a_in)
        for frame in inp.decode(video=0):
            # np.rot90 turns counter-clockwise: the display's clockwise turn puts it back upright.
            stored = av.VideoFrame.from_ndarray(np.ascontiguousarray(np.rot90(frame.to_ndarray(format="bgr24"))),
                                                format="bgr24")
            stored.pts, stored.time_base = frame.pts, frame.time_base
            out.mux(video.encode(stored))
        out.mux(video.encode())
        inp.seek(0)
        for packet in inp.demux(a_in):
            if packet.dts is not None:
                packet.stream = audio
                out.mux(packet)
    assert media.probe(src).rotation == 90
    out = blur(src, tmp_path / "phone.out.mp4", "--target", eileen, "--unsure", "keep")
    info = media.probe(out)
    assert (info.width, info.height, info.rotation) == (288, 512, 0)
    acc = evaluate.score(upright.path, out, upright.truth, ["astronaut"])
    assert acc.leaked_frames == [] and acc.collateral_frames == [], acc.summary()
