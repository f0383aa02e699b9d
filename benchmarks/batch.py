"""Batch throughput: 8 short clips, a shell loop of ``blurface`` against ``blurface batch --jobs 1/2``.

    python benchmarks/batch.py [--clips 8] [--seconds 3] [--jobs 1,2]

Generates the clips (the public-domain astronaut of ``skimage.data`` drifting over a
textured background, 640x360 at 29.97 fps with AAC; the tests' generator), a
reference photo, and runs each way in its own process tree:

* ``loop``: one ``python -m blurface CLIP --target PHOTO`` per file, what a user
  without ``batch`` would write;
* ``batch jobs=N``: ``python -m blurface batch ARCHIVE -o OUT --target PHOTO --jobs N``.

Reported: wall time, files per minute, the seconds a worker spent per file (from
the report), and the per-file overhead of the loop and of ``--jobs 1``: wall time
minus what ``--jobs 1``'s worker spent on the files, divided by the number of files.
Peak RSS is the largest process of the run (client or worker).
Nothing here is a test; numbers depend on the machine and its load.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO))


def run(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of the largest process of ``argv``'s tree."""
    env = dict(os.environ, PYTHONPATH=str(REPO))
    started = time.perf_counter()
    # Each run in a fresh child of a fresh child, so RUSAGE_CHILDREN is this run's alone.
    code = (
        "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(r.returncode)"
    )
    done = subprocess.run([sys.executable, "-c", code, *argv], env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr}")
    return wall, int(done.stdout.split()[-1]) / 1024


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clips", type=int, default=8)
    p.add_argument("--seconds", type=float, default=3.0, help="length of each clip")
    p.add_argument("--jobs", default="1,2", help="comma-separated --jobs values")
    p.add_argument("--json", help="write the rows as JSON")
    args = p.parse_args()

    from fractions import Fraction

    from test_e2e import make_face_clip, write_photo

    rows = []
    with tempfile.TemporaryDirectory(prefix="blurface-batch-bench-") as tmp:
        root = Path(tmp)
        archive = root / "archive"
        archive.mkdir()
        fps = Fraction(30000, 1001)
        n_frames = round(args.seconds * float(fps))
        clips = []
        for i in range(args.clips):
            folder = archive / f"day{i % 3}"
            folder.mkdir(exist_ok=True)
            clips.append(make_face_clip(folder / f"clip {i}.mp4", n_frames=n_frames, width=640, height=360).path)
        photo = write_photo(root / "eileen.jpg")
        video_seconds = sum(n_frames / float(fps) for _ in clips)

        loop_out = root / "loop"
        loop_out.mkdir()
        wall = peak = 0.0
        for i, clip in enumerate(clips):
            w, r = run([sys.executable, "-m", "blurface", str(clip), "--target", str(photo), "-q",
                        "-o", str(loop_out / f"{i}.mp4")])
            wall, peak = wall + w, max(peak, r)
        rows.append({"method": "loop of blurface", "wall_s": wall, "peak_rss_mb": peak, "work_s": None})

        for jobs in [int(j) for j in args.jobs.split(",")]:
            out = root / f"batch{jobs}"
            wall, peak = run([sys.executable, "-m", "blurface", "batch", str(archive), "-o", str(out),
                              "--target", str(photo), "-q", "--jobs", str(jobs)])
            with open(out / "blurface-batch-report.csv", newline="", encoding="utf-8") as f:
                report = list(csv.DictReader(f))
            assert all(r["status"] == "done" for r in report), report
            work = sum(float(r["seconds"]) for r in report)
            rows.append({"method": f"batch --jobs {jobs}", "wall_s": wall, "peak_rss_mb": peak, "work_s": work})

    n = args.clips
    # Work per file as measured inside one worker with the machine to itself (--jobs 1):
    # what is left of a run's wall time is its overhead (start-up, model loading, probing, manifest).
    solo = next((r["work_s"] for r in rows if r["method"] == "batch --jobs 1"), None)
    print(f"{n} clips of {args.seconds:g} s, 640x360 29.97 fps with AAC ({video_seconds:.0f} s of video); "
          f"{os.cpu_count()} cores")
    print("| method | wall s | files/min | x real time | worker s/file | overhead/file | peak RSS |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        per_file = "" if r["work_s"] is None else f"{r['work_s'] / n:.2f}"
        overhead = f"{(r['wall_s'] - solo) / n:.2f} s" if solo is not None and _jobs(r) == 1 else ""
        print(f"| {r['method']} | {r['wall_s']:.1f} | {60 * n / r['wall_s']:.1f} | {video_seconds / r['wall_s']:.2f} "
              f"| {per_file} | {overhead} | {r['peak_rss_mb']:.0f} MB |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


def _jobs(row: dict) -> int:
    return int(row["method"].rsplit(" ", 1)[1]) if row["method"].startswith("batch") else 1


if __name__ == "__main__":
    sys.exit(main())
