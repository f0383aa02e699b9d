"""Speed of ``blurface verify`` against a plain decode of the same file, in one run.

    python benchmarks/verify.py                          # the shared hamilton clip (Lin) and a 720p synthetic clip
    python benchmarks/verify.py --clip FILE --target PHOTO [--clip FILE2 --target PHOTO2]

Per clip, printed: fps and times real time of a plain decode (PyAV to BGR, what verify
reads), of ``verify --all-frames`` (every frame: the cost of a clean file) and of
``verify`` (stops at the first match); process CPU milliseconds a frame (all threads: on a
machine shared with other work, steadier than wall time); faces found, masked (not compared)
and embedded; whole-frame passes at full size and coarse; seconds in the detector and in
the embedder. The load average is printed before each clip. A file that contains the target
stops early by design, so ``--all-frames`` is the row to compare between versions.
``--full-every 1`` searches every whole frame at full size (the check before 2026-12-08).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

SHARED = REPO.parent / "shared" / "media"


class _Timed:
    """Wraps a detector or embedder method and adds up its wall time."""

    def __init__(self, obj: object, method: str) -> None:
        self.seconds = 0.0
        inner = getattr(obj, method)

        def timed(*args: object, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - started

        setattr(obj, method, timed)


def bench(clip: Path, target: Path, full_every: int | None = None) -> None:
    from blurface import media
    from blurface.detectors import make_detector
    from blurface.faces import FaceEngine
    from blurface.gallery import Gallery
    from blurface.verify import FULL_EVERY, SENSITIVE_THRESHOLD, verify

    info = media.probe(clip)
    started = time.perf_counter()
    frames = sum(1 for _ in media.iter_frames(info))
    plain = time.perf_counter() - started
    rate = float(info.fps)
    every = full_every or FULL_EVERY
    print(f"\n{clip.name}: {info.width}x{info.height}, {frames} frames at {rate:.2f} fps, {info.duration:.1f} s; "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; full-size pass every {every} frame(s)")
    print(f"  {'method':22} {'fps':>7} {'x realtime':>10} {'cpu ms/f':>8} {'frames':>7} {'found':>6} {'masked':>6} "
          f"{'embedded':>8} {'full':>5} {'coarse':>6} {'detect s':>8} {'embed s':>8}")
    print(f"  {'plain decode':22} {frames / plain:7.1f} {frames / plain / rate:10.2f} {'':>8} {frames:7d}")
    for label, all_frames in (("verify --all-frames", True), ("verify", False)):
        engine = FaceEngine(detector=make_detector(threshold=SENSITIVE_THRESHOLD))
        gallery = Gallery.from_paths([target], engine)
        det, emb = _Timed(engine.detector, "detect"), _Timed(engine.embedder, "embed")
        started, cpu = time.perf_counter(), time.process_time()
        report = verify(clip, gallery, engine=engine, all_frames=all_frames, full_every=every)
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        fps = report.frames / seconds
        verdict = "CLEAN" if not report.matches else f"found in {report.frames_with_matches} frame(s)"
        print(f"  {label:22} {fps:7.1f} {fps / rate:10.2f} {1000 * cpu / report.frames:8.1f} {report.frames:7d} "
              f"{report.faces_detected:6d} {report.faces_masked:6d} {report.faces_checked:8d} "
              f"{report.whole_frame_passes:5d} {report.coarse_passes:6d} {det.seconds:8.1f} {emb.seconds:8.1f}"
              f"  {verdict}")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", action="append", default=[], help="a video to check (repeatable; pairs with --target)")
    p.add_argument("--target", action="append", default=[], help="target photo for each --clip")
    p.add_argument("--seconds", type=float, default=5.0, help="length of the generated 720p clip")
    p.add_argument("--full-every", type=int, default=None,
                   help="frames between full-size whole-frame passes (default: verify's own; 1: every frame)")
    args = p.parse_args()
    if len(args.clip) != len(args.target):
        p.error("give one --target per --clip")
    pairs = [(Path(c), Path(t)) for c, t in zip(args.clip, args.target)]
    with tempfile.TemporaryDirectory(prefix="blurface-verify-") as tmp:
        if not pairs:
            from synth import TARGET_REFERENCE, load_cast, make_clip

            if (SHARED / "hamilton_clip.mp4").is_file():
                pairs.append((SHARED / "hamilton_clip.mp4", SHARED / "lin_manuel_miranda.png"))
            synthetic = Path(tmp) / "synthetic_720p30.mp4"
            make_clip(synthetic, actors=load_cast(), width=1280, height=720, frames=int(30 * args.seconds))
            pairs.append((synthetic, SHARED / TARGET_REFERENCE))
        for clip, target in pairs:
            bench(clip, target, args.full_every)
    return 0


if __name__ == "__main__":
    sys.exit(main())
