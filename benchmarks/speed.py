"""Speed and memory of blurface against a plain decode+encode of the same file, in one run.

    python benchmarks/speed.py                 # 720p and 1080p synthetic clips with faces and audio
    python benchmarks/speed.py --long          # also memory flatness: a 10-minute vs a 10-second clip
    python benchmarks/speed.py --clip FILE --target PHOTO   # your own file
    python benchmarks/speed.py --profile       # also where the time goes at 720p (cProfile, one process)

Each method runs in its own process so peak RSS is its own. Printed per clip:
fps, wall time as a ratio of a plain PyAV decode + encode (no pixel conversion, same
encoder settings), peak RSS, the render step alone (the plan blurface just wrote,
rendered again: decode, mask, encode),
the naive per-frame baseline's fps (on the first frames only: it is slow), and
leak/collateral of the blurface output judged from pixels.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

BASELINE_FRAMES = 60


def _one(method: str, clip: str, out: str, target: str) -> dict:
    """Run one method in this process and report seconds and frames (called in a child)."""
    from blurface import media

    info = media.probe(clip)
    started = time.perf_counter()
    frames = info.frame_count
    if method == "plain":
        _plain_decode_encode(clip, out)
    elif method == "transcode":
        media.transcode(info, out, lambda f: f.image, overwrite=True)
    elif method.startswith("blurface"):
        from blurface.pipeline import blur_video

        preset = method.split(":", 1)[1] if ":" in method else "balanced"
        blur_video(clip, out, targets=[target], overwrite=True, analysis=preset, plan_path=_plan_path(out))
    elif method.startswith("render"):
        # The render step alone, from the plan the blurface run above saved.
        from blurface.pipeline import render
        from blurface.plan import Plan

        plan = Plan.load(_plan_path(out.replace(".render_", ".blurface_")))
        started = time.perf_counter()
        render(plan, out, overwrite=True, info=info)
    elif method == "baseline":
        from baseline import naive_blur

        from blurface.faces import FaceEngine
        from blurface.gallery import Gallery

        gallery = Gallery.from_paths([target], FaceEngine())
        started = time.perf_counter()
        stats = naive_blur(clip, out, gallery, max_frames=BASELINE_FRAMES)
        # Only the first frames are processed, and only they are timed (naive_blur stops
        # the clock when it reaches frame BASELINE_FRAMES; the rest is a plain transcode).
        frames = stats["frames"]
        return {"method": method, "seconds": stats["seconds"], "frames": frames, "partial": True}
    else:
        raise SystemExit(f"unknown method {method}")
    seconds = time.perf_counter() - started
    return {"method": method, "seconds": seconds, "frames": frames}


def _plan_path(out: str) -> str:
    return str(Path(out).with_suffix(".plan.json"))


def _plain_decode_encode(clip: str, out: str) -> None:
    """The honest floor: PyAV decode -> encode of the decoded frames, no pixel conversion.

    The encoder, pixel format, CRF, preset and thread count blurface's render picks for
    this input (media.output_format, EncodeSettings.threads); audio and other streams are left out.
    """
    import av

    from blurface import media

    settings = media.EncodeSettings()
    target = media.output_format(media.probe(clip), settings, out)
    with av.open(clip) as src, av.open(out, "w") as dst:
        stream = src.streams.video[0]
        stream.thread_type = "AUTO"
        enc = dst.add_stream(target.encoder, rate=stream.average_rate)
        enc.width, enc.height, enc.pix_fmt = stream.codec_context.width, stream.codec_context.height, target.pix_fmt
        enc.codec_context.thread_type = "FRAME"
        enc.codec_context.thread_count = settings.threads
        enc.time_base = stream.time_base
        enc.options = dict(target.options)
        for frame in src.decode(stream):
            frame.pict_type = av.video.frame.PictureType.NONE
            for packet in enc.encode(frame):
                dst.mux(packet)
        for packet in enc.encode():
            dst.mux(packet)


def child_rss(method: str, clip: Path, out: Path, target: Path) -> dict:
    """Peak RSS of one child, measured exactly with a wrapper process."""
    code = (
        "import resource, subprocess, sys, json;"
        "p = subprocess.run(sys.argv[1:], capture_output=True, text=True);"
        "sys.stderr.write(p.stderr);"
        "r = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else {'error': p.returncode};"
        "r['peak_rss_mb'] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024;"
        "print(json.dumps(r))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code, sys.executable, __file__, "--one", method, str(clip), str(out), str(target)],
        capture_output=True, text=True, check=False,
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"{method} failed:\n{proc.stderr[-3000:]}")
    result = json.loads(lines[-1])
    if "error" in result:
        raise SystemExit(f"{method} failed:\n{proc.stderr[-3000:]}")
    return result


def bench_clip(label: str, clip: Path, target: Path, truth: list | None, workdir: Path, methods: list[str]) -> list[dict]:
    from blurface import media

    info = media.probe(clip)
    rows = []
    for method in methods:
        out = workdir / f"{clip.stem}.{method.replace(':', '_')}.mp4"
        r = child_rss(method, clip, out, target)
        r["fps"] = r["frames"] / r["seconds"]
        r["out"] = str(out)
        rows.append(r)
    base = next(r for r in rows if r["method"] == "plain")
    print(f"\n{label}: {info.width}x{info.height}, {info.frame_count} frames at {float(info.fps):.2f} fps, {info.duration:.1f} s")
    print(f"  {'method':22} {'fps':>7} {'x realtime':>10} {'ratio':>7} {'peak RSS':>9}")
    for r in rows:
        ratio = (r["seconds"] / r["frames"]) / (base["seconds"] / base["frames"])
        r["ratio_vs_transcode"] = ratio
        note = f" (first {r['frames']} frames)" if r.get("partial") else ""
        print(f"  {r['method']:22} {r['fps']:7.1f} {r['fps'] / float(info.fps):10.2f} {ratio:7.2f} {r['peak_rss_mb']:7.0f} MB{note}")
    blur = [r for r in rows if r["method"].startswith("blurface")]
    naive = [r for r in rows if r["method"] == "baseline"]
    if blur and naive:
        print(f"  blurface vs naive per-frame baseline: {blur[0]['fps'] / naive[0]['fps']:.1f}x the fps")
    if truth is not None:
        from blurface.evaluate import score
        from synth import TARGET

        for r in blur:
            acc = score(clip, r["out"], truth, [TARGET]).summary()
            r["accuracy"] = acc
            print(f"  accuracy of {r['method']}: leak {acc['leaked_frames']}/{acc['target_visible_frames']}, "
                  f"longest run {acc['longest_leak_run']}, collateral {acc['collateral_frames']}/{acc['other_visible_frames']}")
    return rows


# Where the time goes: (stage, pass, how cProfile names the functions that do it). The
# numbers are cumulative seconds of those functions; stages can nest (decode runs inside
# the analysis), so they do not add up to the total.
STAGES = [
    ("start-up: models, reference photos", "analysis", ["blurface.analysis:default_engine", "blurface.gallery:Gallery.from_paths"]),
    ("decode (grey, BGR where detected)", "analysis", ["blurface.media.decode:iter_frames"]),
    ("scene cuts", "analysis", ["blurface.shots:SceneCutDetector.update"]),
    ("detection: whole-frame passes", "analysis", ["blurface.detectors:CenterFace.detect"]),
    ("detection: regions of followed faces", "analysis", ["blurface.detectors:CenterFace.detect_regions"]),
    ("embeddings for decisions", "analysis", ["blurface.embedding:embed_job"]),
    ("tracking (with its own embeddings)", "analysis", ["blurface.track:FaceTracker.update"]),
    ("every face embedding (both above)", "analysis", ["blurface.embedders:SFace.embed", "blurface.embedders:Dlib.embed"]),
    ("decode", "render", ["blurface.media.decode:FrameDecoder.decode"]),
    ("frames built (masks included)", "render", ["blurface.media.native:NativeFrames.frame"]),
    ("masks drawn in the planes", "render", ["blurface.mask:Masker.apply_planes"]),
    ("encode (x264) and mux", "render", ["~encode' of 'av.", "~mux' of 'av."]),
]


def _code_key(spec: str) -> tuple[str, int, str]:
    """cProfile's key (file, first line, name) of ``module:qualname``."""
    import importlib

    module, qualname = spec.split(":")
    obj = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    code = getattr(obj, "__func__", obj).__code__
    return code.co_filename, code.co_firstlineno, code.co_name


def profile(clip: Path, target: Path, work: Path) -> None:
    """Run blurface once under cProfile (in a child) and print seconds per stage."""
    out = work / "profile.mp4"
    code = (
        "import cProfile, dataclasses, sys;"
        "from blurface.pipeline import PRESETS, blur_video;"
        # Embeddings in this process, so the profile sees them (the default uses a worker on the other core).
        "s = dataclasses.replace(PRESETS['balanced'], embed_process=False);"
        "cProfile.run('blur_video(sys.argv[1], sys.argv[2], targets=[sys.argv[3]], overwrite=True, analysis=s)', sys.argv[4])"
    )
    stats_file = work / "profile.pstats"
    subprocess.run([sys.executable, "-c", code, str(clip), str(out), str(target), str(stats_file)],
                   check=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    import pstats

    from blurface import media

    info = media.probe(clip)
    frames = info.frame_count
    stats = pstats.Stats(str(stats_file)).stats  # type: ignore[attr-defined]

    def seconds(specs: list[str]) -> float:
        total = 0.0
        for spec in specs:
            if spec.startswith("~"):
                total += sum(v[3] for k, v in stats.items() if k[0] == "~" and spec[1:] in k[2])
            else:
                key = _code_key(spec)
                total += stats[key][3] if key in stats else 0.0
        return total

    whole = {"analysis": seconds(["blurface.analysis:make_plan"]), "render": seconds(["blurface.rendering:render"])}
    print(f"\nprofile, {info.width}x{info.height}, {frames} frames, one process (embeddings inline), cProfile overhead"
          " included; decode and x264 run on threads of their own, so a pass's stages can add up to more than it:")
    for name in ("analysis", "render"):
        print(f"  {name:38} {whole[name]:6.1f} s {1000 * whole[name] / frames:7.1f} ms/frame")
        for stage, where, specs in STAGES:
            if where == name:
                t = seconds(specs)
                print(f"    {stage:36} {t:6.1f} s {1000 * t / frames:7.1f} ms/frame {100 * t / max(whole[name], 1e-9):4.0f}%")


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--one":
        method, clip, out, target = sys.argv[2:6]
        print(json.dumps(_one(method, clip, out, target)))
        return 0
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clip", help="benchmark this file instead of generated clips")
    p.add_argument("--target", help="target photo for --clip")
    p.add_argument("--seconds", type=float, default=20.0, help="length of the generated 720p clip")
    p.add_argument("--long", action="store_true", help="memory flatness: 10 s vs 10 min (360p, takes minutes)")
    p.add_argument("--no-baseline", action="store_true")
    p.add_argument("--presets", default="balanced", help="comma-separated: fast,balanced,thorough")
    p.add_argument("--json", help="write all rows as JSON")
    p.add_argument("--profile", action="store_true", help="also profile blurface at 720p: where the time goes")
    args = p.parse_args()
    # "plain" (PyAV decode + encode, no pixel conversion) is the floor every ratio is against;
    # "transcode" (media.transcode with an identity callback: BGR and back) is shown beside it.
    presets = args.presets.split(",")
    methods = ["plain", "transcode"] + [f"blurface:{x}" for x in presets] + [f"render:{x}" for x in presets]
    if not args.no_baseline:
        methods.append("baseline")
    print(f"machine: {os.cpu_count()} cores; python {sys.version.split()[0]}")
    all_rows = {}
    with tempfile.TemporaryDirectory(prefix="blurface-speed-") as tmp:
        work = Path(tmp)
        if args.clip:
            all_rows["clip"] = bench_clip(Path(args.clip).name, Path(args.clip), Path(args.target), None, work, methods)
        else:
            from synth import SHARED, TARGET_REFERENCE, load_cast, make_clip

            cast = load_cast()
            target = SHARED / TARGET_REFERENCE
            clips = [("720p30", 1280, 720, int(30 * args.seconds)), ("1080p30", 1920, 1080, int(30 * args.seconds / 2))]
            for label, w, h, n in clips:
                clip = work / f"synthetic_{label}.mp4"
                truth = make_clip(clip, actors=cast, width=w, height=h, frames=n)
                all_rows[label] = bench_clip(label, clip, target, truth, work, methods)
                if args.profile and label == "720p30":
                    profile(clip, target, work)
            if args.long:
                for label, n in (("360p 10 s", 300), ("360p 10 min", 18000)):
                    clip = work / f"long_{n}.mp4"
                    make_clip(clip, actors=cast, width=640, height=360, frames=n, audio=True)
                    all_rows[label] = bench_clip(label, clip, target, None, work, ["plain", "blurface:balanced"])
        if args.json:
            Path(args.json).write_text(json.dumps(all_rows, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
