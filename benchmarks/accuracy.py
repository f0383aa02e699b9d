"""Leak, collateral and faces left intact, judged from output pixels at truth boxes.

    python benchmarks/accuracy.py                                   # shared clip + held-out synthetic cases
    python benchmarks/accuracy.py --cases small,crowd --seeds tuning
    python benchmarks/accuracy.py --deface /tmp/deface-venv/bin/deface   # add deface (CenterFace) for --all
    python benchmarks/accuracy.py --cases hamilton                  # only the shared clip

Cases: ``hamilton`` (the shared clip: Lin target, Obama target with one and with five
photos, ``--all``), the synthetic 720p cases of ``benchmarks/cases.py`` (small, crowd,
blur, dim, occluder, edges; ``--seeds tuning|heldout|all|SET:SEED``), and ``scripted``
(the older 640x360 clip of ``benchmarks/synth.py``, a tuning case).

blurface is run as a user runs it (``python -m blurface CLIP --target PHOTO`` and
``--all``, default settings), so the benchmark does not depend on its internals and
scores any detector. For each run it prints a markdown row:

- *target leak*: target-visible frames where a target box is not masked (of those frames);
- *longest leaked run*: the longest run of such consecutive frames;
- *collateral*: frames with other people where one of them was masked (of those frames);
- *faces intact* (``--all`` rows): truth faces, summed over frames, left unmasked.
  For ``--all`` rows, "target leak" counts frames with any face left intact.

"Masked" is decided by ``blurface.evaluate.box_is_masked`` from the pixels of the input
and the output at each truth box, never from blurface's log or plan.
``--judge-check`` adds two rows per case that test the judge itself: a plain re-encode
(nothing masked: every face should stay intact) and every truth box blurred (none should).
Needs ``../shared/media``.

deface is the upstream tool (CenterFace on every frame). It is only a comparison, never a
dependency of blurface: it needs the GUI build of OpenCV, so give it a venv of its own:

    python3 -m venv /tmp/deface-venv && /tmp/deface-venv/bin/pip install deface onnxruntime
    apt-get install -y libgl1      # only if 'import cv2' fails there for want of libGL.so.1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import cases as synthetic  # noqa: E402

from blurface.evaluate import Accuracy, load_truth, score  # noqa: E402

SHARED = REPO.parent / "shared" / "media"
OBAMA_PHOTOS = ["obama.jpg", "obama_2.jpg", "obama_3.jpg", "obama_and_biden.jpg", "obama_partial_face.jpg"]
DEFAULT_CASES = ("hamilton",) + synthetic.CASES


@dataclass
class Clip:
    """A clip with per-frame truth and the runs to make on it."""

    name: str  # e.g. "crowd", "hamilton"
    variant: str  # "heldout:101", "tuning:1", "shared"
    path: Path
    truth: list[list[dict]]
    people: list[str]
    targets: list[tuple[str, list[Path]]] = field(default_factory=list)  # (truth name, reference photos)


@dataclass
class Row:
    case: str
    variant: str
    mode: str  # "--target rose_leslie_2.jpg", "--all"
    tool: str  # "blurface", "blurface --thorough", "baseline", "deface", "judge: nothing masked", ...
    seconds: float
    acc: Accuracy | None = None
    error: str = ""
    face_frames: int = 0  # frames with any truth face: what an --all row's leak is out of

    def cells(self) -> list[str]:
        if self.acc is None:
            return [self.case, self.variant, self.mode, self.tool, f"error: {self.error}", "", "", "", f"{self.seconds:.0f}"]
        a = self.acc
        total = sum(a.visible.values())
        intact = total - sum(a.masked.values())
        all_mode = self.mode == "--all"
        # Accuracy counts target *faces*; with everyone a target, frames are the face_frames.
        seen = self.face_frames if all_mode else a.target_visible
        return [
            self.case, self.variant, self.mode, self.tool,
            f"{len(a.leaked_frames)}/{seen} ({len(a.leaked_frames) / max(1, seen):.1%})",
            str(a.longest_leak_run),
            "" if all_mode else f"{len(a.collateral_frames)}/{a.other_visible_frames} ({a.collateral_rate:.1%})",
            f"{intact}/{total} ({intact / max(1, total):.1%})" if all_mode or self.tool.startswith("judge") else "",
            f"{self.seconds:.0f}",
        ]

    def as_json(self) -> dict:
        out = {"case": self.case, "variant": self.variant, "mode": self.mode, "tool": self.tool,
               "seconds": round(self.seconds, 1), "error": self.error}
        if self.acc is not None:
            total = sum(self.acc.visible.values())
            out |= self.acc.summary() | {"truth_faces": total, "faces_intact": total - sum(self.acc.masked.values()),
                                         "frames_with_faces": self.face_frames}
        return out


HEADER = ["case", "set:seed", "mode", "tool", "target leak (frames)", "longest leaked run",
          "collateral (frames)", "faces intact (--all)", "s"]


def _print_row(cells: list[str]) -> None:
    print("| " + " | ".join(cells) + " |", flush=True)


# ----- clips ---------------------------------------------------------------------------------


def hamilton_clip(workdir: Path) -> Clip:
    truth = load_truth(SHARED / "hamilton_truth.json")
    five = workdir / "obama_5_photos"  # a folder is one person to blurface; links, not copies
    five.mkdir(parents=True, exist_ok=True)
    for name in OBAMA_PHOTOS:
        link = five / name
        if not link.exists():
            link.symlink_to(SHARED / name)
    people = sorted({f["who"] for frame in truth for f in frame})
    return Clip("hamilton", "shared", SHARED / "hamilton_clip.mp4", truth, people, [
        ("lin", [SHARED / "lin_manuel_miranda.png"]),
        ("obama", [SHARED / "obama.jpg"]),
        ("obama", [five]),
    ])


def scripted_clip(workdir: Path) -> Clip:
    """The older scripted 640x360 clip (rose, biden, kit, a scene cut): tuning photos."""
    from synth import TARGET, TARGET_REFERENCE, make_clip

    path = workdir / "scripted.mp4"
    truth = make_clip(path, frames=150)
    people = sorted({f["who"] for frame in truth for f in frame})
    return Clip("scripted", "tuning", path, truth, people, [(TARGET, [SHARED / TARGET_REFERENCE])])


def synthetic_clip(case: str, set_name: str, seed: int, workdir: Path) -> Clip:
    g = synthetic.generate(case, set_name, seed, workdir / "cases")
    assert g.reference is not None
    return Clip(case, f"{set_name}:{seed}", g.clip, g.truth, g.people, [(g.target, [g.reference])])


# ----- runs ----------------------------------------------------------------------------------


def run_blurface(clip: Path, out: Path, args: list[str]) -> tuple[float, str]:
    """``python -m blurface CLIP ARGS -o OUT``: seconds, and the last stderr line when it failed."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "blurface", str(clip), *args, "-o", str(out), "--overwrite", "-q"],
                          env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
        return seconds, lines[-1]
    return seconds, ""


def _zero_start(clip: Path, workdir: Path) -> Path:
    """``clip`` itself, or a lossless copy whose first frame is at time 0.

    imageio (deface's reader) pads a late start with copies of the first frame: the
    shared clip starts at 0.85 s and came back with 25 frames too many. The copy is
    x264 at qp 0 from the decoded yuv420p frames, so deface sees the same pixels.
    """
    import av

    from blurface import media

    if media.probe(clip).start_time == 0:
        return clip
    dst = workdir / f"{clip.stem}.zero-start.mp4"
    if dst.is_file():
        return dst
    with av.open(str(clip)) as src, av.open(str(dst), "w") as out:
        stream = src.streams.video[0]
        video = out.add_stream("libx264", rate=stream.average_rate)
        video.width, video.height, video.pix_fmt = stream.width, stream.height, "yuv420p"
        video.options = {"qp": "0", "preset": "veryfast"}
        for key in ("color_range", "colorspace", "color_primaries", "color_trc"):  # BT.709 tags: same RGB back
            setattr(video.codec_context, key, getattr(stream.codec_context, key))
        for i, frame in enumerate(src.decode(stream)):
            frame.pts, frame.time_base = i, 1 / stream.average_rate
            out.mux(video.encode(frame))
        out.mux(video.encode())
    return dst


def run_deface(deface: str, clip: Path, out: Path) -> tuple[float, str]:
    """deface at its defaults (CenterFace on every frame, threshold 0.2, mask scale 1.3, blur).

    Encoded like blurface's output (x264 CRF 18, veryfast) so the judge compares like with
    like; macro_block_size 1 stops imageio from resizing 640x360 to 640x368.
    """
    clip = _zero_start(clip, out.parent)
    config = {"codec": "libx264", "quality": None, "macro_block_size": 1,
              "output_params": ["-crf", "18", "-preset", "veryfast"]}
    started = time.perf_counter()
    done = subprocess.run([deface, str(clip), "-o", str(out), "--ffmpeg-config", json.dumps(config)],
                          capture_output=True, text=True)
    seconds = time.perf_counter() - started
    if done.returncode != 0 or not out.is_file():
        lines = done.stderr.strip().splitlines() or [f"exit {done.returncode}"]
        return seconds, lines[-1]
    return seconds, ""


def run_baseline(clip: Path, out: Path, photos: list[Path]) -> tuple[float, str]:
    """The naive per-frame HOG baseline (benchmarks/baseline.py); imports blurface internals."""
    from baseline import naive_blur

    from blurface.faces import FaceEngine
    from blurface.gallery import Gallery, person_from_paths

    started = time.perf_counter()
    from blurface.embedders import Dlib

    engine = FaceEngine(embedder=Dlib())  # the naive approach embeds with dlib, as face_recognition does
    naive_blur(clip, out, Gallery([person_from_paths(list(photos), engine, name=photos[0].stem)], embedder="dlib/resnet_v1"))
    return time.perf_counter() - started, ""


def judge_outputs(clip: Clip, workdir: Path) -> list[tuple[str, Path, float]]:
    """Two outputs that test the judge: nothing masked, and every truth box blurred."""
    from blurface import media
    from blurface.mask import Blur, Masker

    info = media.probe(clip.path)
    masker = Masker(Blur())
    outs = []
    for tool, hide in (("judge: nothing masked", False), ("judge: truth boxes masked", True)):
        out = workdir / f"{clip.name}-{clip.variant.replace(':', '-')}-{'masked' if hide else 'plain'}.mp4"

        def process(frame, hide=hide):
            boxes = np.array([f["box"] for f in clip.truth[frame.index]] if frame.index < len(clip.truth) else [],
                             np.float32).reshape(-1, 4)
            return masker.apply(frame.image, boxes) if hide and len(boxes) else frame.image

        started = time.perf_counter()
        media.transcode(info, out, process, overwrite=True)
        outs.append((tool, out, time.perf_counter() - started))
    return outs


def _same_shape(a: Path, b: Path) -> str:
    from blurface import media

    ia, ib = media.probe(a), media.probe(b)
    if (ia.width, ia.height) != (ib.width, ib.height):
        return f"output is {ib.width}x{ib.height}, input {ia.width}x{ia.height}"
    if abs(ia.frame_count - ib.frame_count) > 1:
        return f"output has {ib.frame_count} frames, input {ia.frame_count}"
    return ""


def evaluate_clip(clip: Clip, workdir: Path, args: argparse.Namespace) -> list[Row]:
    rows: list[Row] = []
    stem = f"{clip.name}-{clip.variant.replace(':', '-')}"
    tools = ["blurface"] + (["blurface --fast"] if args.fast else []) + (["blurface --thorough"] if args.thorough else [])

    def finish(row: Row, out: Path, targets: list[str]) -> None:
        if not row.error:
            row.error = _same_shape(clip.path, out)
        if not row.error:
            row.acc = score(clip.path, out, clip.truth, targets)
            row.face_frames = sum(1 for frame in clip.truth if frame)
        rows.append(row)
        _print_row(row.cells())

    if "target" in args.modes:
        for who, photos in clip.targets:
            label = photos[0].name + (f" ({len(list(photos[0].iterdir()))} photos)" if photos[0].is_dir() else "")
            for tool in tools + (["baseline"] if args.baseline else []):
                out = workdir / f"{stem}-target-{photos[0].stem}-{tool.replace(' ', '').replace('-', '')}.mp4"
                if tool == "baseline":
                    seconds, error = run_baseline(clip.path, out, photos)
                else:
                    extra = tool.split()[1:]  # the preset's flag, if any
                    seconds, error = run_blurface(clip.path, out, [a for p in photos for a in ("--target", str(p))] + extra)
                finish(Row(clip.name, clip.variant, f"--target {label}", tool, seconds, error=error), out, [who])
    if "all" in args.modes:
        for tool in tools + (["deface"] if args.deface else []):
            out = workdir / f"{stem}-all-{tool.replace(' ', '').replace('-', '')}.mp4"
            if tool == "deface":
                seconds, error = run_deface(args.deface, clip.path, out)
            else:
                seconds, error = run_blurface(clip.path, out, ["--all"] + tool.split()[1:])
            finish(Row(clip.name, clip.variant, "--all", tool, seconds, error=error), out, clip.people)
    if args.judge_check:
        for tool, out, seconds in judge_outputs(clip, workdir):
            finish(Row(clip.name, clip.variant, "--all", tool, seconds), out, clip.people)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--cases", default=",".join(DEFAULT_CASES),
                   help=f"comma-separated: hamilton, scripted, {', '.join(synthetic.CASES)} (default: all but scripted)")
    p.add_argument("--seeds", default="heldout",
                   help="synthetic seed sets: heldout (default, for scoring), tuning, all, or SET:SEED items")
    p.add_argument("--modes", default="target,all", help="target, all, or both (default)")
    p.add_argument("--fast", action="store_true", help="also run blurface --fast")
    p.add_argument("--thorough", action="store_true", help="also run blurface --thorough")
    p.add_argument("--baseline", action="store_true", help="also run the naive per-frame HOG baseline (--target)")
    p.add_argument("--deface", metavar="PATH", help="deface executable (in its own venv): adds a deface row per --all")
    p.add_argument("--judge-check", action="store_true", help="add rows that test the pixel judge on each clip")
    p.add_argument("--workdir", default=str(REPO / "bench_out" / "accuracy"),
                   help="clips and outputs go here (default bench_out/accuracy, git-ignored); cases are reused")
    p.add_argument("--json", help="also write the rows as JSON")
    args = p.parse_args(argv)

    names = [c.strip() for c in args.cases.split(",") if c.strip()]
    unknown = [c for c in names if c not in DEFAULT_CASES + ("scripted",)]
    if unknown:
        print(f"unknown case {unknown[0]!r}: choose from hamilton, scripted, {', '.join(synthetic.CASES)}", file=sys.stderr)
        return 2
    try:
        seeds = synthetic.parse_seeds(args.seeds)
    except ValueError as e:
        print(e, file=sys.stderr)
        return 2
    args.modes = {m.strip() for m in args.modes.split(",")}
    if not args.modes <= {"target", "all"} or not args.modes:
        print(f"bad --modes {','.join(sorted(args.modes))!r}: use target, all or target,all", file=sys.stderr)
        return 2
    if args.deface and not os.access(args.deface, os.X_OK):
        print(f"--deface {args.deface!r} is not an executable: install deface in its own venv (see this script's --help)", file=sys.stderr)
        return 2
    if not (SHARED / "hamilton_clip.mp4").is_file():
        print(f"needs {SHARED} (the shared media: hamilton clip, truth and reference photos)", file=sys.stderr)
        return 2
    workdir = Path(args.workdir)
    workdir.mkdir(parents=True, exist_ok=True)

    started = time.perf_counter()
    print("| " + " | ".join(HEADER) + " |")
    print("|" + "---|" * len(HEADER), flush=True)
    rows: list[Row] = []
    for name in names:
        if name == "hamilton":
            clips = [hamilton_clip(workdir)]
        elif name == "scripted":
            clips = [scripted_clip(workdir)]
        else:
            clips = [synthetic_clip(name, s, seed, workdir) for s, seed in seeds]
        for clip in clips:
            rows += evaluate_clip(clip, workdir, args)
    print(f"\n{len(rows)} runs in {time.perf_counter() - started:.0f} s; outputs in {workdir}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps([r.as_json() for r in rows], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
