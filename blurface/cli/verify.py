"""``blurface verify``: re-examine a finished video for the target."""

from __future__ import annotations

import argparse

from ..text import printable
from .common import EXIT_FAILURE, EXIT_OK, Bars, Parser, add_common, add_matching, check_reference_args, check_side_file


# What an interrupted run has not written, for the one line main prints.
NOT_WRITTEN = "no report was written"


def add_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="blurface verify",
        description="Re-examine a finished video with a more sensitive detector (every 8th frame and each cut at full "
        "resolution, faster passes and every seen face followed in between); "
        "exit 1 if a face still matches the target.",
    )
    p.add_argument("video", help="the anonymised video to check")
    p.add_argument("--target", action="append", required=True, metavar="PHOTO|DIR|NPZ", help="the person (repeatable)")
    add_matching(p)
    p.add_argument("--report", metavar="JSON", help="write the findings as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --report file")
    p.add_argument(
        "--all-frames", action="store_true",
        help="read the whole video and list every frame with a match (default: stop at the first one, "
        "the verdict is then known)",
    )
    add_common(p)
    return p


def run(args: argparse.Namespace) -> int:
    from ..faces import FaceEngine
    from ..gallery import Gallery
    from ..verify import verify

    from .. import media

    info = media.probe(args.video)
    check_reference_args(args)
    if args.report:
        check_side_file(args.report, "--report", args, outputs=[])
    from ..embedders import make_embedder

    engine = FaceEngine(embedder=make_embedder(args.embedder))
    gallery = Gallery.from_paths(args.target, engine, strict=args.strict_reference)
    bars = Bars(info.frame_count, enabled=not args.quiet)
    try:
        report = verify(
            args.video,
            gallery,
            engine=engine,
            tolerance=args.tolerance,
            all_frames=args.all_frames,
            progress=bars,
        )
    finally:
        bars.close()
    if args.report:
        report.save(args.report)
    video = printable(args.video)
    for hit in report.matches:
        print(
            f"{video}: frame {hit.frame} at {hit.time:.3f} s: {printable(hit.identity)} at distance {hit.distance:.3f}, "
            f"box {[round(v) for v in hit.box]}"
        )
    for hit in report.near:
        print(
            f"{video}: frame {hit.frame} at {hit.time:.3f} s: near {printable(hit.identity)} at distance "
            f"{hit.distance:.3f} (within {report.tolerance + report.near_margin:.2f}; check by eye), "
            f"box {[round(v) for v in hit.box]}"
        )
    verdict = "CLEAN" if not report.matches else f"TARGET FOUND in {report.frames_with_matches} frame(s)"
    print(
        f"{video}: {verdict} ({report.frames} frames checked, {report.faces_detected} faces found, "
        f"{report.faces_masked} of them masked, {report.faces_checked} compared)"
    )
    if report.stopped_early:
        print(f"{video}: stopped at the first frame with a match; --all-frames checks the rest and lists every one")
    return EXIT_OK if not report.matches else EXIT_FAILURE
