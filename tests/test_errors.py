"""Hard and hostile inputs through the command line, as a user runs it (issue #5).

Every bad input must give exit code 2 (usage or input), 1 (processing) or 130
(interrupted: see test_signals.py), exactly ONE line on stderr that names the
file and the problem, no traceback, no output and no temporary file, and must
leave the input untouched. Odd but valid inputs must simply work.

Each case makes its own small files in ``tmp_path``; the CLI runs with ``-q``
so stderr holds only what blurface says.
"""

from __future__ import annotations

import ast
import errno
import functools
import hashlib
import json
import os
import re
import subprocess
import sys
import zlib
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import make_audio_only, video_pts_seconds

from blurface import media
from blurface.cli import main

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------- helpers


def fingerprint(path: Path) -> tuple[str, int] | None:
    """Content hash and mtime of a file (``None`` for anything else): to prove an input was not touched."""
    if not path.is_file():
        return None
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, list[str]]:
    """``main(argv)``: the exit code and the non-empty lines of stderr."""
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.strip()]


def run_module(*argv: object, cwd: Path) -> tuple[int, list[str]]:
    """``python -m blurface argv`` in a subprocess: the exit code and the non-empty lines of stderr."""
    done = subprocess.run(
        [sys.executable, "-m", "blurface", *map(str, argv)], capture_output=True, text=True, cwd=cwd, timeout=300
    )
    return done.returncode, [line for line in done.stderr.splitlines() if line.strip()]


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if ".blurface-tmp" in p.name)


def assert_one_clean_line(lines: list[str], *words: str) -> str:
    """Exactly one line on stderr, no traceback, mentioning every word (file names, the problem)."""
    assert len(lines) == 1, lines
    line = lines[0]
    assert "Traceback" not in line
    for word in words:
        assert word in line, (word, line)
    return line


def assert_refused(
    code: int, lines: list[str], expected: int, words: list[str], out_dir: Path, before: dict[Path, object]
) -> str:
    """The common checks of a refused run; returns the message."""
    assert code == expected, lines
    line = assert_one_clean_line(lines, *words)
    assert sorted(p.name for p in out_dir.iterdir()) == [], "no output and no temporary file"
    for path, print_ in before.items():
        assert fingerprint(path) == print_, f"{path} was changed"
    return line


def snapshot(*paths: Path) -> dict[Path, object]:
    return {p: fingerprint(p) for p in paths}


@pytest.fixture
def out_dir(tmp_path: Path) -> Path:
    """An empty folder for outputs: after a refused run it must still be empty."""
    folder = tmp_path / "out"
    folder.mkdir()
    return folder


def stream_kinds(path: Path) -> list[str]:
    return [s.kind for s in media.probe(path).streams]


def assert_valid_output(src: Path, dst: Path) -> None:
    """``dst`` is a complete, upright video of every frame of ``src`` with the same timing."""
    a, b = media.probe(src), media.probe(dst)
    assert b.rotation == 0
    assert (b.width, b.height) == (a.width + a.width % 2, a.height + a.height % 2)
    assert b.frame_count == a.frame_count
    assert np.allclose(video_pts_seconds(dst), video_pts_seconds(src), atol=1e-3)
    assert leftovers(dst.parent) == []


# --------------------------------------------------------------------------- face photos


@functools.cache
def _astronaut() -> np.ndarray:
    from skimage import data

    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def face_photo(scale: int) -> np.ndarray:
    """The astronaut's head, cropped from her portrait resized to ``scale`` px: the face is about scale/5.8 px wide."""
    image = cv2.resize(_astronaut(), (scale, scale), interpolation=cv2.INTER_AREA)
    k = scale / 512
    return np.ascontiguousarray(image[0 : int(230 * k), int(120 * k) : int(320 * k)])


def write_image(path: Path, image: np.ndarray) -> Path:
    assert cv2.imwrite(str(path), image)
    return path


def face_clip(path: Path, n_frames: int = 6, size: int = 256) -> Path:
    """A short clip of the astronaut's portrait (a face about 45 px wide)."""
    image = cv2.resize(_astronaut(), (size, size), interpolation=cv2.INTER_AREA)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=10)
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        for _ in range(n_frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="bgr24")))
        out.mux(stream.encode())
    return path


# --------------------------------------------------------------------------- bad inputs: exit 2


def _truncated(video_factory, tmp_path: Path, faststart: bool) -> Path:
    src = video_factory("whole.mp4", n_frames=24, audio=("aac",), faststart=faststart)
    data = src.read_bytes()
    path = tmp_path / "cut.mp4"
    path.write_bytes(data[: len(data) // 2])
    src.unlink()
    return path


def _write(path: Path, data: bytes | str) -> Path:
    if isinstance(data, str):
        path.write_text(data)
    else:
        path.write_bytes(data)
    return path


def _folder(path: Path) -> Path:
    path.mkdir()
    return path


def _png(tmp_path: Path) -> Path:
    return write_image(tmp_path / "picture.png", np.full((48, 64, 3), 128, np.uint8))


BAD_INPUTS: dict[str, tuple[Callable[..., Path], str]] = {
    "missing": (lambda vf, tmp: tmp / "missing.mp4", "no such file"),
    "directory": (lambda vf, tmp: _folder(tmp / "folder.mp4"), "is a directory"),
    "zero-bytes": (lambda vf, tmp: _write(tmp / "empty.mp4", b""), "is empty (0 bytes)"),
    "random-bytes": (
        lambda vf, tmp: _write(tmp / "noise.mp4", np.random.default_rng(0).bytes(20_000)), "not a readable video"
    ),
    "text-named-mp4": (lambda vf, tmp: _write(tmp / "notes.mp4", "not a video\n" * 100), "not a readable video"),
    "audio-only": (lambda vf, tmp: make_audio_only(tmp / "song.m4a"), "has no video stream (it holds audio only)"),
    "png-image": (lambda vf, tmp: _png(tmp), "is a still image, not a video"),
    "truncated-moov-at-end": (lambda vf, tmp: _truncated(vf, tmp, faststart=False), "not a readable video"),
    "truncated-faststart": (lambda vf, tmp: _truncated(vf, tmp, faststart=True), "decoded only"),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_refused_in_one_line(case, video_factory, tmp_path, out_dir, capsys):
    make, problem = BAD_INPUTS[case]
    src = make(video_factory, tmp_path)
    before = snapshot(src)
    code, lines = run_cli(capsys, src, "--all", "-q", "-o", out_dir / "out.mp4")
    line = assert_refused(code, lines, 2, [src.name, problem], out_dir, before)
    assert line.startswith("blurface: error: ")
    # No default output beside the input either.
    assert not list(tmp_path.glob("*.blurred.*")) and leftovers(tmp_path) == []


@pytest.mark.parametrize("case", ["missing", "random-bytes", "truncated-faststart"])
def test_bad_input_via_python_dash_m(case, video_factory, tmp_path, out_dir):
    make, problem = BAD_INPUTS[case]
    src = make(video_factory, tmp_path)
    before = snapshot(src)
    code, lines = run_module(src, "--all", "-q", "-o", out_dir / "out.mp4", cwd=tmp_path)
    assert_refused(code, lines, 2, [src.name, problem], out_dir, before)


def _damage_middle(src: Path, dst: Path, *, keyframe: bool, want: Callable[[int, int], bool]) -> Path:
    """Overwrite the payload of two video packets in the middle of ``mdat`` with random bytes.

    ``keyframe``: damage the mid-clip keyframe (FFmpeg then conceals: frames come out
    flagged corrupt) or two P-frames (FFmpeg then rejects packets: frames are lost).
    Tries seeds until PyAV itself sees what ``want(errors, corrupt_frames)`` asks for.
    """
    with av.open(str(src)) as container:
        packets = [(p.pos, p.size, p.is_keyframe) for p in container.demux(video=0) if p.size]
    if keyframe:
        targets = [(pos, size) for pos, size, key in packets[1:] if key][:1]
    else:
        mid = len(packets) // 2
        targets = [(pos, size) for pos, size, key in packets[mid - 3 : mid] if not key][:2]
    assert targets
    clean = src.read_bytes()
    for seed in range(20):
        data = bytearray(clean)
        rng = np.random.default_rng(seed)
        for pos, size in targets:
            # Keep the 4-byte length and the NAL header so the damage is in the picture data.
            data[pos + 8 : pos + size] = rng.bytes(size - 8)
        dst.write_bytes(bytes(data))
        errors = corrupt = 0
        with av.open(str(dst)) as container:
            for packet in container.demux(video=0):
                try:
                    corrupt += sum(f.is_corrupt for f in packet.decode())
                except av.error.FFmpegError:
                    errors += 1
        if want(errors, corrupt):
            return dst
    pytest.skip("this FFmpeg build decodes the damaged clip differently")


def test_damaged_frames_that_are_lost_give_a_clean_media_error(video_factory, tmp_path, out_dir, capsys):
    """Decision: when the decoder has to DROP damaged frames, the output would lose frames
    (and shift the timing), so blurface refuses with exit 2 and one line naming the file.
    """
    src = _damage_middle(
        video_factory("whole.mp4", n_frames=24), tmp_path / "damaged.mp4", keyframe=False,
        want=lambda errors, corrupt: errors > 0,
    )
    before = snapshot(src)
    code, lines = run_cli(capsys, src, "--all", "-q", "-o", out_dir / "out.mp4")
    line = assert_refused(code, lines, 2, ["damaged.mp4", "decoded only", "damaged video packet"], out_dir, before)
    assert "the file is truncated or damaged" in line


def test_damaged_frames_the_decoder_conceals_give_output_and_one_warning(video_factory, tmp_path, out_dir, capsys):
    """Decision: when FFmpeg CONCEALS the damage (every frame still comes out, flagged
    corrupt), blurface writes the output (exit 0) and says so in one warning line, once,
    although both passes (analysis and render) decode the damaged frames.
    """
    src = _damage_middle(
        video_factory("whole.mp4", n_frames=24), tmp_path / "damaged.mp4", keyframe=True,
        want=lambda errors, corrupt: errors == 0 and corrupt > 0,
    )
    before = snapshot(src)
    dst = out_dir / "out.mp4"
    code, lines = run_cli(capsys, src, "--all", "-q", "-o", dst)
    assert code == 0, lines
    line = assert_one_clean_line(lines, "damaged.mp4", "damaged and patched up by the decoder", "frame 12")
    assert line.startswith("blurface: warning: ")
    assert media.probe(dst).frame_count == 24 and leftovers(out_dir) == []
    assert snapshot(src) == before


# --------------------------------------------------------------------------- geometry: must work


GEOMETRY: dict[str, dict] = {
    "odd-width-and-height": dict(width=63, height=47, pix_fmt="yuv444p"),
    "odd-width": dict(width=33, height=48, pix_fmt="yuv444p"),
    "2x2": dict(width=2, height=2),
    "16x16": dict(width=16, height=16),
    "1x1": dict(width=1, height=1, pix_fmt="yuv444p"),  # PyAV encodes it as 4:4:4; the output is padded to 2x2
    "portrait": dict(width=48, height=64),
    "rotated-90": dict(rotation=90, audio=("aac",)),
    "rotated-270": dict(rotation=270),
    "variable-frame-rate": dict(vfr=True, n_frames=12),
    "non-zero-start": dict(video_start=0.5, audio=("aac",)),
    "ntsc-rate-mov": dict(fps=Fraction(30000, 1001)),
}


@pytest.mark.parametrize("case", list(GEOMETRY))
def test_unusual_geometry_and_timing_work(case, video_factory, out_dir, capsys):
    kwargs = {"n_frames": 6, **GEOMETRY[case]}
    src = video_factory("ntsc.mov" if case == "ntsc-rate-mov" else "in.mp4", **kwargs)
    before = snapshot(src)
    dst = out_dir / "out.mp4"
    code, lines = run_cli(capsys, src, "--all", "-q", "-o", dst)
    assert code == 0 and lines == []
    assert_valid_output(src, dst)
    assert snapshot(src) == before


def test_huge_frame_keeps_memory_bounded(video_factory, tmp_path):
    """8K frames (3 of them): the whole run stays under 2.5 GB resident."""
    src = video_factory("8k.mp4", width=7680, height=4320, n_frames=3)
    dst = tmp_path / "out.mp4"
    # A wrapper process measures only its own child, not the test session's earlier ones.
    measure = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run([sys.executable, '-m', 'blurface', *sys.argv[1:]])\n"
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", measure, str(src), "--all", "-q", "-o", str(dst)],
        capture_output=True, text=True, timeout=300,
    )
    code, max_rss_kb = map(int, done.stdout.split())
    assert code == 0, done.stderr
    assert done.stderr.strip() == ""
    assert max_rss_kb * 1024 < 2.5 * 1024**3, f"peak RSS {max_rss_kb / 1024:.0f} MiB"
    out = media.probe(dst)
    assert (out.width, out.height, out.frame_count) == (7680, 4320, 3)


# --------------------------------------------------------------------------- streams


def _with_attachment(plain: Path, dst: Path) -> Path:
    with av.open(str(plain)) as inp, av.open(str(dst), "w") as out:
        mapping = {s.index: out.add_stream_from_template(s) for s in inp.streams}
        out.add_attachment("notes.txt", "text/plain", b"an attached file")
        for packet in inp.demux():
            if packet.dts is None:
                continue
            packet.stream = mapping[packet.stream.index]
            out.mux(packet)
    return dst


def assert_no_stream_dropped_silently(src: Path, dst: Path, lines: list[str]) -> None:
    """Each input stream but the video is in the output, or a warning line names it."""
    kept = stream_kinds(dst)
    for s in media.probe(src).streams[1:]:
        warned = any(f"stream #{s.index}" in line for line in lines)
        assert warned or kept.count(s.kind) >= stream_kinds(src).count(s.kind), (s, kept, lines)


STREAM_CASES: dict[str, tuple[Callable[[Callable, Path], Path], str, list[str], list[str]]] = {
    # name: (make input, output name, output stream kinds, words of the ONE warning line (none: no warning))
    "no-audio": (lambda vf, tmp: vf("in.mp4", n_frames=6), "out.mp4", ["video"], []),
    "three-audio-tracks": (
        lambda vf, tmp: vf("in.mp4", n_frames=6, audio=("aac", "aac", "aac"), languages=("eng", "fra", "deu")),
        "out.mp4", ["video", "audio", "audio", "audio"], [],
    ),
    "pcm-into-mp4": (
        lambda vf, tmp: vf("in.mov", n_frames=6, audio=("pcm_s16le",)),
        "out.mp4", ["video", "audio"], ["audio stream #1 (pcm_s16le)", "re-encoded as AAC", ".mov or .mkv"],
    ),
    "srt-in-mkv-to-mp4": (
        lambda vf, tmp: vf("in.mkv", n_frames=40, audio=("aac",), subtitles=True),
        "out.mp4", ["video", "audio", "subtitle"], ["subtitle stream #2 (subrip, eng)", "converted to mov_text"],
    ),
    "srt-in-mkv-to-mkv": (
        lambda vf, tmp: vf("in.mkv", n_frames=40, audio=("aac",), subtitles=True),
        "out.mkv", ["video", "audio", "subtitle"], [],
    ),
    "attachment-to-mkv": (
        lambda vf, tmp: _with_attachment(vf("plain.mkv", n_frames=6, audio=("aac",)), tmp / "in.mkv"),
        "out.mkv", ["video", "audio", "attachment"], [],
    ),
    "attachment-to-mp4": (
        lambda vf, tmp: _with_attachment(vf("plain.mkv", n_frames=6, audio=("aac",)), tmp / "in.mkv"),
        "out.mp4", ["video", "audio"], ["attachment stream #2 (text/plain, notes.txt)", "left out", ".mkv"],
    ),
    "timecode-data-stream": (
        lambda vf, tmp: vf("in.mov", n_frames=6, timecode="01:00:00:00"),
        # The MP4 muxer writes a fresh timecode track from the tag.
        "out.mp4", ["video", "data"], ["data stream #1", "timecode 01:00:00:00 is kept as a tag"],
    ),
}


@pytest.mark.parametrize("case", list(STREAM_CASES))
def test_streams_are_copied_or_converted_with_a_warning(case, video_factory, tmp_path, out_dir, capsys):
    make, out_name, kinds, warning = STREAM_CASES[case]
    src = make(video_factory, tmp_path)
    before = snapshot(src)
    dst = out_dir / out_name
    # --keep-metadata: data streams and attachments are metadata, dropped by default (tests/test_metadata.py).
    code, lines = run_cli(capsys, src, "--all", "-q", "--keep-metadata", "-o", dst)
    assert code == 0, lines
    assert stream_kinds(dst) == kinds
    if warning:
        line = assert_one_clean_line(lines, *warning)
        assert line.startswith("blurface: warning: ")
    else:
        assert lines == []
    assert_no_stream_dropped_silently(src, dst, lines)
    if case == "three-audio-tracks":
        assert [s.language for s in media.probe(dst).streams[1:]] == ["eng", "fra", "deu"]
    if case == "timecode-data-stream":
        with av.open(str(dst)) as container:
            assert container.streams.video[0].metadata.get("timecode") == "01:00:00:00"
    assert leftovers(out_dir) == [] and snapshot(src) == before


# --------------------------------------------------------------------------- reference photos and galleries


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)
    return path


def _npz_claiming_terabytes(path: Path) -> Path:
    """A 1 kB gallery whose 'embeddings' header promises (10**9, 128) float32."""
    import io
    import zipfile

    good = {"version": np.int32(1), "names": np.array(["x"]), "person": np.zeros(1, np.int32)}
    with zipfile.ZipFile(path, "w") as z:
        for key, value in good.items():
            buf = io.BytesIO()
            np.save(buf, value)
            z.writestr(f"{key}.npy", buf.getvalue())
        buf = io.BytesIO()
        np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (10**9, 128)})
        buf.write(b"\0" * 512)
        z.writestr("embeddings.npy", buf.getvalue())
    return path


def _folder_without_photos(tmp: Path) -> Path:
    folder = _folder(tmp / "person")
    _write(folder / "notes.txt", "no photos here")
    return folder


BAD_TARGETS: dict[str, tuple[Callable[[Path], Path], list[str]]] = {
    "missing-photo": (lambda tmp: tmp / "nobody.jpg", ["nobody.jpg", "does not exist"]),
    # (Permissions cannot make a file unreadable to root: a damaged JPEG stands in.)
    "unreadable-photo": (
        lambda tmp: _write(tmp / "broken.jpg", b"\xff\xd8\xff not really a jpeg"),
        ["broken.jpg", "cannot be read as an image"],
    ),
    "photo-without-face": (
        lambda tmp: write_image(tmp / "wall.png", np.full((200, 200, 3), 128, np.uint8)),
        ["wall.png", "no face found"],
    ),
    "tiny-face": (lambda tmp: write_image(tmp / "small.png", face_photo(200)), ["small.png", "px wide", "at least 40 px"]),
    "corrupt-npz": (
        lambda tmp: _write(tmp / "gallery.npz", b"PK\x03\x04" + b"garbage" * 20),
        ["gallery.npz", "not a blurface .npz gallery"],
    ),
    "foreign-npz": (
        lambda tmp: _npz(tmp / "other.npz", x=np.arange(5), y=np.zeros((3, 3))),
        ["other.npz", "lacks", "blurface enroll"],
    ),
    "npz-with-wrong-version-shape": (
        lambda tmp: _npz(
            tmp / "odd.npz", version=np.array([1, 2]), names=np.array(["x"]),
            embeddings=np.zeros((1, 128), np.float32), person=np.zeros(1, np.int32),
        ),
        ["odd.npz", "'version' must be one integer"],
    ),
    "npz-with-nan-embeddings": (
        lambda tmp: _npz(
            tmp / "nan.npz", version=np.int32(2), embedder=np.array("sface/2021dec"), names=np.array(["x"]),
            embeddings=np.full((1, 128), np.nan, np.float32), person=np.zeros(1, np.int32),
        ),
        ["nan.npz", "NaN"],
    ),
    "npz-claiming-terabytes": (lambda tmp: _npz_claiming_terabytes(tmp / "bomb.npz"), ["bomb.npz", "claims"]),
    "folder-without-photos": (lambda tmp: _folder_without_photos(tmp), ["person", "has no photos"]),
}


@pytest.mark.parametrize("case", list(BAD_TARGETS))
def test_bad_reference_is_refused_in_one_line(case, video_factory, tmp_path, out_dir, capsys):
    src = video_factory("in.mp4", n_frames=4)
    make, words = BAD_TARGETS[case]
    target = make(tmp_path)
    before = snapshot(src, target)
    code, lines = run_cli(capsys, src, "--target", target, "-q", "-o", out_dir / "out.mp4")
    assert_refused(code, lines, 2, words, out_dir, before)


def test_photo_with_several_faces_warns_and_uses_the_largest(video_factory, tmp_path, out_dir, capsys):
    src = video_factory("in.mp4", n_frames=4)
    photo = write_image(tmp_path / "pair.png", np.hstack([face_photo(256), face_photo(256)]))
    dst = out_dir / "out.mp4"
    code, lines = run_cli(capsys, src, "--target", photo, "-q", "-o", dst)
    assert code == 0
    line = assert_one_clean_line(lines, "pair.png", "shows 2 faces", "using the largest")
    assert line.startswith("blurface: warning: ")
    assert_valid_output(src, dst)


def test_photo_with_several_faces_is_refused_with_strict_reference(video_factory, tmp_path, out_dir, capsys):
    src = video_factory("in.mp4", n_frames=4)
    photo = write_image(tmp_path / "pair.png", np.hstack([face_photo(256), face_photo(256)]))
    before = snapshot(src, photo)
    code, lines = run_cli(capsys, src, "--target", photo, "--strict-reference", "-q", "-o", out_dir / "out.mp4")
    assert_refused(code, lines, 2, ["pair.png", "shows 2 faces", "crop it to one person"], out_dir, before)


# --------------------------------------------------------------------------- output paths


@pytest.mark.parametrize("variant", ["same", "dot-slash", "dot-dot", "symlink", "hard-link"])
def test_output_onto_the_input_is_refused(variant, video_factory, tmp_path, capsys, monkeypatch):
    src = video_factory("in.mp4", n_frames=4)
    monkeypatch.chdir(tmp_path)
    if variant == "symlink":
        (tmp_path / "link.mp4").symlink_to(src)
        dst = "link.mp4"
    elif variant == "hard-link":
        os.link(src, tmp_path / "hard.mp4")
        dst = "hard.mp4"
    else:
        dst = {"same": str(src), "dot-slash": "./in.mp4", "dot-dot": f"../{tmp_path.name}/in.mp4"}[variant]
    before = snapshot(src)
    for extra in ([], ["--overwrite"]):
        code, lines = run_cli(capsys, "in.mp4", "--all", "-q", "-o", dst, *extra)
        assert code == 2
        assert_one_clean_line(lines, Path(dst).name, "is the input file itself")
        assert snapshot(src) == before and leftovers(tmp_path) == []


def test_existing_output_is_refused_without_overwrite(video_factory, out_dir, capsys):
    src = video_factory("in.mp4", n_frames=4)
    dst = out_dir / "taken.mp4"
    dst.write_bytes(b"someone else's file")
    before = snapshot(src, dst)
    code, lines = run_cli(capsys, src, "--all", "-q", "-o", dst)
    assert code == 2
    assert_one_clean_line(lines, "taken.mp4", "exists: use --overwrite to replace it")
    assert snapshot(src, dst) == before and leftovers(out_dir) == []

    code, lines = run_cli(capsys, src, "--all", "-q", "-o", dst, "--overwrite")
    assert code == 0 and lines == []
    assert_valid_output(src, dst)


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("under-a-file", ["somefile", "is a file, not a folder"]),
        ("missing-folder", ["nowhere", "output folder does not exist"]),
        ("a-folder", ["out", "is a directory"]),
        ("unsupported-extension", ["out.avi", "extension .avi is not supported"]),
    ],
)
def test_unwritable_output_is_refused_before_any_work(case, words, video_factory, tmp_path, out_dir, capsys):
    src = video_factory("in.mp4", n_frames=4)
    (out_dir / "somefile").write_text("a regular file")
    dst = {
        "under-a-file": out_dir / "somefile" / "out.mp4",
        "missing-folder": out_dir / "nowhere" / "out.mp4",
        "a-folder": out_dir,
        "unsupported-extension": out_dir / "out.avi",
    }[case]
    before = snapshot(src)
    code, lines = run_cli(capsys, src, "--all", "-q", "-o", dst)
    assert code == 2
    assert_one_clean_line(lines, *words)
    assert sorted(p.name for p in out_dir.iterdir()) == ["somefile"]
    assert snapshot(src) == before


@pytest.fixture
def tiny_disk(tmp_path: Path):
    """A 256 kB tmpfs with 8 kB left free, or a skip where mounting is not allowed."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount_point)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        stat = os.statvfs(mount_point)
        (mount_point / "filler").write_bytes(b"\0" * (stat.f_bavail * stat.f_frsize - 8192))
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


def test_disk_filling_up_during_the_write(video_factory, tiny_disk, capsys):
    """A real full disk: exit 1, one line naming the folder, no output or temporary file left."""
    src = video_factory("in.mp4", width=160, height=120, n_frames=30, audio=("aac",))
    before = snapshot(src)
    code, lines = run_cli(capsys, src, "--all", "-q", "-o", tiny_disk / "out.mp4")
    assert code == 1
    assert_one_clean_line(lines, str(tiny_disk), "no space left on the disk")
    assert sorted(p.name for p in tiny_disk.iterdir()) == ["filler"]
    assert snapshot(src) == before


def test_disk_full_simulated(video_factory, out_dir, capsys, monkeypatch):
    """The same where no tmpfs can be mounted: the disk fills up once the video is written, as it is moved into place."""
    src = video_factory("in.mp4", n_frames=6, audio=("aac",))
    real_replace = os.replace

    def replace_then_disk_full(tmp, dst, *args, **kwargs):
        if ".blurface-tmp-" not in os.fspath(tmp):  # not the video's temporary file
            return real_replace(tmp, dst, *args, **kwargs)
        assert os.path.getsize(tmp) > 0
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(tmp))

    monkeypatch.setattr(os, "replace", replace_then_disk_full)
    before = snapshot(src)
    code, lines = run_cli(capsys, src, "--all", "-q", "-o", out_dir / "out.mp4")
    assert_refused(code, lines, 1, [str(out_dir), "no space left on the disk"], out_dir, before)


def test_paths_with_spaces_and_unicode(video_factory, tmp_path, capsys):
    src = video_factory("my clip é.mp4", n_frames=4, audio=("aac",))
    folder = tmp_path / "Sortie für Zoë 日本"
    folder.mkdir()
    dst = folder / "flou ü.mkv"
    code, lines = run_cli(capsys, src, "--all", "-q", "-o", dst)
    assert code == 0 and lines == []
    assert_valid_output(src, dst)


def test_unicode_name_in_an_error_message(tmp_path, capsys):
    src = tmp_path / "vidéo 日本.mp4"
    src.write_bytes(b"\0" * 100)
    code, lines = run_cli(capsys, src, "--all", "-q")
    assert code == 2
    assert_one_clean_line(lines, "vidéo 日本.mp4")


def test_output_name_with_a_leading_dash(video_factory, tmp_path, capsys, monkeypatch):
    """``-o -out.mp4`` is ambiguous to argparse; ``-o=-out.mp4``, ``--output=-out.mp4`` and ``-o ./-out.mp4`` work."""
    video_factory("in.mp4", n_frames=4)
    monkeypatch.chdir(tmp_path)
    code, lines = run_cli(capsys, "in.mp4", "--all", "-q", "-o", "-out.mp4")
    assert code == 2
    assert_one_clean_line(lines, "-o/--output: expected one argument", "-o=./-out.mp4")
    assert not Path("-out.mp4").exists()
    for n, form in enumerate((["-o=-a.mp4"], ["--output=-b.mp4"], ["-o", "./-c.mp4"])):
        code, lines = run_cli(capsys, "in.mp4", "--all", "-q", *form)
        assert code == 0 and lines == []
        assert media.probe(f"-{'abc'[n]}.mp4").frame_count == 4


def test_input_name_with_a_leading_dash(video_factory, tmp_path, capsys, monkeypatch):
    """A video called ``-x.mp4``: ``blurface -- -x.mp4 --all`` (options may follow), or ``./-x.mp4``."""
    video_factory("-x.mp4", n_frames=4)
    monkeypatch.chdir(tmp_path)
    before = snapshot(Path("-x.mp4"))
    code, lines = run_cli(capsys, "-x.mp4", "--all", "-q")
    assert code == 2
    assert_one_clean_line(lines, "required: video", "./-x.mp4")
    for argv, out in (
        (["--", "-x.mp4", "--all", "-q"], "-x.blurred.mp4"),
        (["--all", "-q", "-o", "a.mp4", "--", "-x.mp4"], "a.mp4"),
        (["./-x.mp4", "--all", "-q", "-o", "b.mp4"], "b.mp4"),
    ):
        code, lines = run_cli(capsys, *argv)
        assert code == 0 and lines == [], argv
        assert media.probe(out).frame_count == 4
    assert snapshot(Path("-x.mp4")) == before


def test_leading_dash_via_python_dash_m(video_factory, tmp_path):
    video_factory("-x.mp4", n_frames=4)
    code, lines = run_module("--", "-x.mp4", "--all", "-q", "-o=-y.mp4", cwd=tmp_path)
    assert code == 0 and lines == []
    assert media.probe(tmp_path / "-y.mp4").frame_count == 4


# --------------------------------------------------------------------------- usage errors


USAGE = {
    "target-and-all": (["--target", "x.jpg", "--all"], "exactly one of --target, --keep or --all"),
    "target-and-keep": (["--target", "x.jpg", "--keep", "y.jpg"], "exactly one of"),
    "no-mode": ([], "exactly one of"),
    "tolerance-out-of-range": (["--all", "--tolerance", "5"], "--tolerance 5.0 is out of range"),
    "tolerance-not-a-number": (["--all", "--tolerance", "abc"], "invalid float value: 'abc'"),
    "tolerance-nan": (["--all", "--tolerance", "nan"], "--tolerance nan is out of range"),
    "pad-negative": (["--all", "--pad", "-1"], "--pad -1.0 is out of range"),
    "pad-inf": (["--all", "--pad", "inf"], "--pad inf is out of range"),
    "crf-out-of-range": (["--all", "--crf", "99"], "--crf 99 is out of range"),
    "crf-not-an-int": (["--all", "--crf", "1.5"], "invalid int value: '1.5'"),
    "unknown-preset": (["--all", "--preset", "warp9"], "--preset 'warp9' is not an x264 preset"),
    "unknown-flag": (["--all", "--frobnicate"], "unrecognized arguments: --frobnicate"),
    "fast-and-thorough": (["--all", "--fast", "--thorough"], "not allowed with argument --fast"),
    "bad-mask": (["--all", "--mask", "sparkles"], "invalid choice: 'sparkles'"),
}


@pytest.mark.parametrize("case", list(USAGE))
def test_usage_error_is_one_line_exit_2(case, video_factory, out_dir, capsys):
    src = video_factory("in.mp4", n_frames=2)
    args, words = USAGE[case]
    before = snapshot(src)
    code, lines = run_cli(capsys, src, *args, "-q", "-o", out_dir / "out.mp4")
    line = assert_refused(code, lines, 2, [words], out_dir, before)
    assert line.startswith("blurface")


def test_usage_error_via_python_dash_m(video_factory, tmp_path, out_dir):
    src = video_factory("in.mp4", n_frames=2)
    code, lines = run_module(src, "--all", "--crf", "x", "-o", out_dir / "out.mp4", cwd=tmp_path)
    assert_refused(code, lines, 2, ["--crf", "invalid int value"], out_dir, snapshot(src))


def test_debug_shows_the_traceback(tmp_path, capsys):
    code = main([str(tmp_path / "missing.mp4"), "--all", "-q", "--debug"])
    err = capsys.readouterr().err
    assert code == 2
    assert "Traceback" in err and "MediaError" in err
    assert err.strip().splitlines()[-1] == f"blurface: error: {tmp_path / 'missing.mp4'}: no such file: check the path"


# --------------------------------------------------------------------------- security


def test_no_shell_strings_pickle_or_eval_in_the_package():
    """``grep -rn "shell=True\\|os.system\\|pickle\\|eval(" blurface`` finds only ``allow_pickle=False`` and docs."""
    forbidden_os = {"system", "popen", "execl", "execlp", "execv", "execvp", "spawnl", "spawnv"}
    forbidden_modules = {"pickle", "cPickle", "marshal", "shelve", "dill"}
    problems = []
    for path in sorted((REPO / "blurface").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        for n, line in enumerate(text.splitlines(), 1):
            if re.search(r"shell\s*=\s*True|os\.system|\beval\(", line):
                problems.append(f"{path.name}:{n}: {line.strip()}")
            if "pickle" in line and not re.search(r"allow_pickle=False|no pickle|pickled objects", line):
                problems.append(f"{path.name}:{n}: {line.strip()}")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [a.name for a in node.names] + ([node.module] if isinstance(node, ast.ImportFrom) else [])
                problems += [f"{path.name}:{node.lineno}: imports {m}" for m in names if m in forbidden_modules]
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
                owner = func.value.id if isinstance(func, ast.Attribute) and isinstance(func.value, ast.Name) else ""
                if name in {"eval", "exec"} or (owner == "os" and name in forbidden_os):
                    problems.append(f"{path.name}:{node.lineno}: calls {owner + '.' if owner else ''}{name}")
                for kw in node.keywords:
                    if kw.arg in ("shell", "allow_pickle") and not (
                        isinstance(kw.value, ast.Constant) and kw.value.value is False
                    ):
                        problems.append(f"{path.name}:{node.lineno}: {kw.arg}= not False")
    assert problems == []


def _plan_for(src: Path, tmp_path: Path, capsys) -> dict:
    plan = tmp_path / "plan.json"
    code, lines = run_cli(capsys, src, "--all", "-q", "-o", tmp_path / "first.mp4", "--plan", plan)
    assert code == 0, lines
    data = json.loads(plan.read_text())
    # One hand-made masked track, so the plan has boxes to get wrong.
    data["tracks"] = [{"id": 7, "first": 0, "last": 0, "masked": True, "decision": "all", "reason": "test"}]
    data["frames"] = [{"index": 0, "time": data["times"][0], "boxes": [{"box": [1, 1, 20, 20], "track": 7}]}]
    return data


def _set(path: list, value: object) -> Callable[[dict], None]:
    def change(data: dict) -> None:
        target = data
        for key in path[:-1]:
            target = target[key]
        if value is KeyError:
            del target[path[-1]]
        else:
            target[path[-1]] = value

    return change


BAD_PLANS: dict[str, tuple[Callable[[dict], None] | bytes, str]] = {
    "box-of-three": (_set(["frames", 0, "boxes", 0, "box"], [1, 2, 3]), "frames[0].boxes[0].box is [1, 2, 3]: give four numbers"),
    "box-of-strings": (_set(["frames", 0, "boxes", 0, "box"], "abcd"), "box is 'abcd': give four numbers"),
    "box-with-nan": (_set(["frames", 0, "boxes", 0, "box"], [1, 2, "nan", 4]), "box[2] is 'nan': give a finite number"),
    "times-are-strings": (_set(["times"], ["x"] * 4), "times[0] is 'x': give a finite number"),
    "times-are-2d": (_set(["times"], [[0.0, 1.0]] * 4), "times[0] is [0.0, 1.0]: give a finite number"),
    "time-is-nan": (_set(["times", 0], float("nan")), "times[0] is nan: give a finite number"),
    "frame-count-mismatch": (_set(["frame_count"], 5), "'times' lists 4 times for 5 frames: give one time per frame"),
    "frames-is-a-dict": (_set(["frames"], {"a": 1}), "not a valid blurface plan"),
    "tracks-is-null": (_set(["tracks"], None), "not a valid blurface plan"),
    "frame-index-huge": (_set(["frames", 0, "index"], 10**30), "it is outside the video: give a frame from 0 to 3"),
    "track-id-not-int": (_set(["tracks", 0, "id"], "seven"), "tracks[0].id is 'seven': give a whole number"),
    "video-without-width": (_set(["video", "width"], KeyError), "lacks 'width'"),
    "fps-divides-by-zero": (_set(["video", "fps"], "1/0"), "not a valid blurface plan"),
    "wrong-format": (_set(["format"], "something-else"), "'format' must be 'blurface-plan'"),
    "not-json": (b'{"format": ', "it is not JSON"),
    "binary": (b"\xff\xfe\x00\x01garbage", "it is not JSON"),
    "a-list": (b"[1, 2, 3]", "'format' must be 'blurface-plan'"),
}


@pytest.mark.parametrize("case", list(BAD_PLANS))
def test_bad_plan_file_is_refused_by_render(case, video_factory, tmp_path, out_dir, capsys):
    src = video_factory("in.mp4", n_frames=4)
    change, words = BAD_PLANS[case]
    plan = tmp_path / "edited.json"
    if isinstance(change, bytes):
        plan.write_bytes(change)
    else:
        data = _plan_for(src, tmp_path, capsys)
        change(data)
        plan.write_text(json.dumps(data))
    before = snapshot(src, plan)
    code, lines = run_cli(capsys, "render", src, "--plan", plan, "-q", "-o", out_dir / "out.mp4")
    assert_refused(code, lines, 2, ["edited.json", words], out_dir, before)


def test_good_hand_made_plan_renders(video_factory, tmp_path, out_dir, capsys):
    """The control for the bad plans above: the unchanged plan renders."""
    src = video_factory("in.mp4", n_frames=4)
    plan = tmp_path / "edited.json"
    plan.write_text(json.dumps(_plan_for(src, tmp_path, capsys)))
    code, lines = run_cli(capsys, "render", src, "--plan", plan, "-q", "-o", out_dir / "out.mp4")
    assert code == 0 and lines == []
    assert_valid_output(src, out_dir / "out.mp4")


@pytest.mark.parametrize("onto", ["input", "output"])
def test_plan_path_may_not_replace_a_video(onto, video_factory, out_dir, capsys):
    src = video_factory("in.mp4", n_frames=4)
    dst = out_dir / "out.mp4"
    plan = src if onto == "input" else dst
    before = snapshot(src)
    code, lines = run_cli(capsys, src, "--all", "-q", "-o", dst, "--plan", plan)
    assert_refused(code, lines, 2, [plan.name, "--plan would replace"], out_dir, before)


def test_verify_report_may_not_replace_the_video(video_factory, tmp_path, capsys):
    src = video_factory("in.mp4", n_frames=4)
    photo = write_image(tmp_path / "face.png", face_photo(300))
    before = snapshot(src, photo)
    code, lines = run_cli(capsys, "verify", src, "--target", photo, "--report", src, "-q")
    assert code == 2
    assert_one_clean_line(lines, "in.mp4", "--report would replace")
    assert snapshot(src, photo) == before


@pytest.mark.parametrize(
    ("case", "words"),
    [
        ("under-a-file", ["somefile", "is a file, not a folder", "gallery.npz"]),
        ("missing-folder", ["nowhere", "does not exist"]),
        ("exists", ["taken.npz", "exists: use --overwrite"]),
        ("not-npz", ["gallery.json", "must end in .npz"]),
    ],
)
def test_enroll_refuses_a_bad_gallery_path_before_any_work(case, words, tmp_path, out_dir, capsys):
    photo = write_image(tmp_path / "face.png", face_photo(300))
    (out_dir / "somefile").write_text("a regular file")
    (out_dir / "taken.npz").write_bytes(b"keep me")
    dst = {
        "under-a-file": out_dir / "somefile" / "gallery.npz",
        "missing-folder": out_dir / "nowhere" / "gallery.npz",
        "exists": out_dir / "taken.npz",
        "not-npz": out_dir / "gallery.json",
    }[case]
    before = snapshot(photo, out_dir / "somefile", out_dir / "taken.npz")
    code, lines = run_cli(capsys, "enroll", photo, "-o", dst, "-q")
    assert code == 2
    assert_one_clean_line(lines, *words)
    assert sorted(p.name for p in out_dir.iterdir()) == ["somefile", "taken.npz"]
    assert snapshot(photo, out_dir / "somefile", out_dir / "taken.npz") == before


def test_verify_refuses_a_damaged_video_in_one_line(tmp_path, capsys):
    src = _write(tmp_path / "noise.mp4", np.random.default_rng(3).bytes(5000))
    photo = write_image(tmp_path / "face.png", face_photo(300))
    code, lines = run_cli(capsys, "verify", src, "--target", photo, "-q", "--report", tmp_path / "r.json")
    assert code == 2
    assert_one_clean_line(lines, "noise.mp4", "not a readable video")
    assert not (tmp_path / "r.json").exists()


def test_debug_log_never_shows_embeddings(tmp_path, out_dir, capsys):
    """--debug on a clip with the target's face: logs, but no 128-number embedding (biometric data)."""
    src = face_clip(tmp_path / "face.mp4")
    photo = write_image(tmp_path / "target.png", face_photo(300))
    code, lines = run_cli(capsys, src, "--target", photo, "-q", "--debug", "-o", out_dir / "out.mp4", "--plan",
                          tmp_path / "plan.json")
    assert code == 0, lines
    assert lines, "--debug should log something"
    text = "\n".join(lines)
    assert "Traceback" not in text
    number = r"-?\d+\.\d+(?:e-?\d+)?"
    assert not re.search(rf"(?:{number}[\s,]+){{7}}{number}", text), "a run of floats looks like an embedding"
    plan = (tmp_path / "plan.json").read_text()
    tracks = json.loads(plan)["tracks"]
    assert [(t["identity"], t["masked"]) for t in tracks] == [("target", True)], "the face was embedded and matched"
    assert "embedding\"" not in plan and not re.search(rf"(?:{number},\s*){{31}}{number}", plan)
    assert media.probe(out_dir / "out.mp4").frame_count == 6


def test_input_is_never_modified_by_a_successful_run(video_factory, tmp_path, capsys):
    src = video_factory("in.mkv", n_frames=6, audio=("aac",), subtitles=True)
    before = snapshot(src)
    code, _ = run_cli(capsys, src, "--all", "-q")
    assert code == 0
    assert snapshot(src) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.blurred.mkv", "in.mkv"]


# --------------------------------------------------------------------------- memory bombs (issue #21)


def black_png(width: int, height: int, *, rows: int | None = None) -> bytes:
    """A black 8-bit grey PNG of ``width`` x ``height``, compressed row by row (30000x30000 is 4 MB).

    ``rows``: compress only that many rows (a header that promises more than the data holds).
    """
    def chunk(tag: bytes, body: bytes) -> bytes:
        return len(body).to_bytes(4, "big") + tag + body + zlib.crc32(tag + body).to_bytes(4, "big")

    z = zlib.compressobj(1)
    row = bytes(1 + width)
    block = row * max(1, (1 << 22) // len(row))
    left, data = height if rows is None else rows, []
    while left > 0:
        n = min(left, len(block) // len(row))
        data.append(z.compress(block[: n * len(row)]))
        left -= n
    data.append(z.flush())
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([8, 0, 0, 0, 0])
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", b"".join(data)) + chunk(b"IEND", b"")


def ffv1_clip(path: Path, width: int, height: int, n_frames: int = 3) -> Path:
    with av.open(str(path), "w") as out:
        stream = out.add_stream("ffv1", rate=25)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for _ in range(n_frames):
            out.mux(stream.encode(av.VideoFrame.from_ndarray(np.zeros((height, width, 3), np.uint8), format="rgb24")))
        out.mux(stream.encode())
    return path


def png_clip(path: Path, size: int, n_frames: int = 2) -> Path:
    """A PNG-coded video of ``size`` x ``size`` black frames, muxed from hand-made PNG bytes (no encoder runs).

    MOV, since FFmpeg's Matroska muxer refuses PNG from PyAV; the decoder is the same.
    """
    png = black_png(size, size)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("png", rate=1)
        stream.width = stream.height = size
        stream.pix_fmt = "gray"
        for i in range(n_frames):
            packet = av.Packet(png)
            packet.stream, packet.pts, packet.dts, packet.is_keyframe = stream, i, i, True
            out.mux(packet)
    return path


def run_measured(*argv: object) -> tuple[int, list[str], int]:
    """``python -m blurface argv`` in a child of a fresh wrapper: exit code, stderr lines, peak RSS in bytes."""
    measure = (
        "import resource, subprocess, sys\n"
        "done = subprocess.run([sys.executable, '-m', 'blurface', *sys.argv[1:]], stdout=subprocess.DEVNULL)\n"
        "print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    done = subprocess.run([sys.executable, "-c", measure, *map(str, argv)], capture_output=True, text=True,
                          timeout=300)
    code, max_rss_kb = map(int, done.stdout.split())
    return code, [line for line in done.stderr.splitlines() if line.strip()], max_rss_kb * 1024


MEMORY_BOMBS: dict[str, tuple[Callable[[Path], Path], list[str]]] = {
    "ffv1-32768x2": (lambda tmp: ffv1_clip(tmp / "wide.mkv", 32768, 2), ["wide.mkv", "32768x2", "8:1"]),
    "ffv1-16384x4": (lambda tmp: ffv1_clip(tmp / "strip.mkv", 16384, 4), ["strip.mkv", "16384x4", "8:1"]),
    "ffv1-9000x2000": (lambda tmp: ffv1_clip(tmp / "band.mkv", 9000, 2000, 1), ["band.mkv", "8192 px a side"]),
    "png-16000x16000": (lambda tmp: png_clip(tmp / "huge.mov", 16000), ["huge.mov", "8192x8192", "too large"]),
}


@pytest.mark.parametrize("case", list(MEMORY_BOMBS))
def test_absurd_frame_sizes_are_refused_in_little_memory(case, tmp_path, out_dir):
    make, words = MEMORY_BOMBS[case]
    src = make(tmp_path)
    before = snapshot(src)
    code, lines, peak = run_measured(src, "--all", "-q", "-o", out_dir / "out.mp4")
    assert_refused(code, lines, 2, words, out_dir, before)
    assert peak < 1024**3, f"peak RSS {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize(
    ("size", "rows", "words"),
    [
        (30000, None, ["30000x30000", "megapixels", "scale it down"]),
        (40000, 1, ["40000x40000", "megapixels"]),  # OpenCV's own limit: "unexpected error: OpenCV assertion"
    ],
)
def test_huge_reference_photo_is_refused_before_decoding(size, rows, words, video_factory, tmp_path, out_dir):
    src = video_factory("in.mp4", n_frames=4)
    photo = _write(tmp_path / "huge.png", black_png(size, size, rows=rows))
    before = snapshot(src, photo)
    code, lines, peak = run_measured(src, "--target", photo, "-q", "-o", out_dir / "out.mp4")
    assert_refused(code, lines, 2, ["huge.png", *words], out_dir, before)
    assert peak < 1024**3, f"peak RSS {peak / 2**20:.0f} MiB"


@pytest.mark.parametrize(("width", "height"), [(1080, 1920), (4096, 2160), (8192, 1024)])
def test_tall_and_wide_real_frame_sizes_are_accepted(width, height, tmp_path):
    """Vertical phone video, DCI 4K and an 8:1 panorama pass the size check (probe only: no long encode)."""
    info = media.probe(ffv1_clip(tmp_path / "ok.mkv", width, height, 1))
    assert (info.width, info.height) == (width, height)


def test_detection_never_upscales_a_tiny_frame_past_512_px():
    from blurface.settings import PRESETS, detection_scale

    for width, height in [(32768, 2), (16, 2), (2, 2), (640, 360)]:
        scale = detection_scale(PRESETS["balanced"], 10.0, width, height)
        assert max(width, height) * scale <= max(512, max(width, height))
    assert detection_scale(PRESETS["balanced"], 10.0, 16, 2) == 32  # still 64 px high where that is small


# --------------------------------------------------------------------------- side files checked up front (issue #21)


@pytest.fixture
def readonly_dir(tmp_path: Path):
    """A read-only tmpfs: the one folder root cannot write to (permission bits do not stop root)."""
    mount_point = tmp_path / "ro"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", str(mount_point)], check=False)


@pytest.mark.parametrize("option", ["--plan", "--report"])
@pytest.mark.parametrize("case", ["existing-file", "hard-link-to-input", "read-only-folder", "full-folder"])
def test_side_files_are_checked_before_the_video_is_written(case, option, video_factory, tmp_path, out_dir, capsys,
                                                            request):
    src = video_factory("in.mp4", n_frames=4)
    name = "side.json"
    if case == "existing-file":
        side = _write(tmp_path / "existing.mp4" if option == "--plan" else tmp_path / name, b"someone's file")
        words = [side.name, "exists: use --overwrite"]
    elif case == "hard-link-to-input":
        side = tmp_path / ("link.json" if option == "--report" else "link.mp4")
        os.link(src, side)
        words = [side.name, f"{option} would replace"]
    elif case == "read-only-folder":
        side = request.getfixturevalue("readonly_dir") / name
        words = [str(side.parent), "not writable"]
    else:
        disk = request.getfixturevalue("tiny_disk")
        (disk / "filler2").write_bytes(b"\0" * (os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize))
        side = disk / name
        words = [str(disk), "is full"]
    before = snapshot(src, side)
    code, lines = run_cli(capsys, src, "--all", "-q", "-o", out_dir / "out.mp4", option, side)
    assert_refused(code, lines, 2, words, out_dir, before)


def test_verify_report_follows_the_output_rules(video_factory, tmp_path, capsys):
    src = video_factory("in.mp4", n_frames=4)
    photo = write_image(tmp_path / "face.png", face_photo(300))
    report = _write(tmp_path / "old.json", "{}")
    before = snapshot(src, photo, report)
    code, lines = run_cli(capsys, "verify", src, "--target", photo, "--report", report, "-q")
    assert code == 2
    assert_one_clean_line(lines, "old.json", "exists: use --overwrite")
    assert snapshot(src, photo, report) == before
    code, _ = run_cli(capsys, "verify", src, "--target", photo, "--report", report, "-q", "--overwrite")
    assert code == 0 and json.loads(report.read_text())


def test_a_missing_photo_is_reported_before_an_existing_output(video_factory, tmp_path, out_dir, capsys):
    src = video_factory("in.mp4", n_frames=4)
    taken = _write(out_dir / "out.mp4", b"an earlier output")
    code, lines = run_cli(capsys, src, "--target", tmp_path / "nope.jpg", "-q", "-o", taken)
    assert code == 2
    assert_one_clean_line(lines, "nope.jpg", "does not exist")


# --------------------------------------------------------------------------- killed runs leave no unmasked copy (issue #21)


def _killed_at(stage: str, argv: list[object], tmpdir: Path) -> int:
    """Run ``blurface argv`` in a child that SIGKILLs itself at ``stage``, its temp folder ``tmpdir``.

    ``stage`` is ``module:attribute`` of a function that runs while the unmasked copy
    exists: the kill lands there every time, with no timing involved.
    """
    module, attribute = stage.split(":")
    child = (
        "import importlib, os, signal, sys\n"
        "from blurface.cli import main\n"
        f"owner = importlib.import_module({module!r})\n"
        "owner = getattr(owner, 'ReviewSession', owner)\n"
        f"setattr(owner, {attribute!r}, lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL))\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    done = subprocess.run([sys.executable, "-c", child, *map(str, argv)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TMPDIR": str(tmpdir)})
    return done.returncode


@pytest.mark.parametrize(
    ("stage", "command", "copy"),
    [
        ("blurface.server:_make_thumbs", ["review", "--all", "-q"], "proxy.mp4"),
        ("blurface.review:make_plan", ["--all", "-q", "--from", "0", "--to", "0.3"], "range.mkv"),
    ],
)
def test_a_killed_runs_unmasked_copy_is_removed_by_the_next_run(stage, command, copy, video_factory, tmp_path):
    src = video_factory("in.mp4", n_frames=12)
    tmpdir = tmp_path / "tmp"
    tmpdir.mkdir()
    argv = [command[0], src, *command[1:]] if command[0] == "review" else [src, *command, "-o", tmp_path / "o.mp4"]
    assert _killed_at(stage, argv, tmpdir) == -9
    left = list(tmpdir.glob(f"blurface-*/{copy}"))
    assert len(left) == 1, "the killed run's copy is where a later run looks"
    live = tmpdir / f"blurface-review-{os.getpid()}-x"  # a running process's folder is left alone
    live.mkdir()
    done = subprocess.run([sys.executable, "-m", "blurface", "inspect", src], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "TMPDIR": str(tmpdir)})
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in tmpdir.glob("blurface-*")) == [live.name]


# --------------------------------------------------------------------------- names with escape codes (issue #21)


EVIL = "clear\x1b[2J\x1b]0;pwned\x07\nblurface: done\u202e"  # clears the screen, sets the title, fakes a line


def test_printable_escapes_what_a_terminal_acts_on():
    from blurface.text import printable

    assert printable(EVIL) == "clear\\x1b[2J\\x1b]0;pwned\\x07\\nblurface: done\\u202e"
    assert printable("Zoë 日本 ok.mp4") == "Zoë 日本 ok.mp4"
    assert printable("bad\udcffname") == "bad\\udcffname"  # an undecodable byte, as os.fsdecode holds it


def test_file_names_with_escape_codes_are_shown_escaped(video_factory, tmp_path, out_dir, capsys):
    shown = "clear\\x1b[2J\\x1b]0;pwned\\x07\\nblurface: done\\u202e"
    code, lines = run_cli(capsys, tmp_path / f"{EVIL}.mp4", "--all", "-q", "-o", out_dir / "out.mp4")
    assert code == 2
    assert_one_clean_line(lines, shown + ".mp4", "no such file")

    src = video_factory("plain.mkv", n_frames=4)
    named = src.rename(tmp_path / f"{EVIL}.mkv")
    code = main(["inspect", str(named)])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == ""
    assert captured.out == f"{tmp_path}/{shown}.mkv: CLEAN\n"

    photo = write_image(tmp_path / f"{EVIL}.png", face_photo(300))
    code = main(["verify", str(named), "--target", str(photo), "-q"])
    captured = capsys.readouterr()
    assert code == 0 and captured.err == ""
    assert captured.out.count("\n") == 1 and captured.out.startswith(f"{tmp_path}/{shown}.mkv: CLEAN")


def test_a_plan_that_fails_after_the_render_takes_the_video_with_it(video_factory, out_dir, capsys, monkeypatch):
    """The disk fills up between the up-front check and the plan: no video without its plan."""
    from blurface.plan import Plan
    from blurface.types import InputError

    def disk_full(self, path):
        raise InputError(f"cannot write plan {str(path)!r}: No space left on device")

    monkeypatch.setattr(Plan, "save", disk_full)
    src = video_factory("in.mp4", n_frames=4)
    before = snapshot(src)
    code, lines = run_cli(capsys, src, "--all", "-q", "-o", out_dir / "out.mp4", "--plan", out_dir / "p.json")
    assert_refused(code, lines, 2, ["p.json", "No space left"], out_dir, before)


def test_library_callers_get_the_photo_size_check_too(tmp_path):
    """batch and the library load photos without the CLI's up-front check: the header is read there as well."""
    from blurface.gallery import person_from_photos
    from blurface.types import GalleryError

    photo = _write(tmp_path / "huge.png", black_png(40000, 40000, rows=1))
    with pytest.raises(GalleryError, match="40000x40000 px, more than the 200 megapixels"):
        person_from_photos(photo, engine=None)  # type: ignore[arg-type] - refused before the engine is used
