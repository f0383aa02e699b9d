"""``blurface people``: group a video's faces into people, with a contact sheet and galleries."""

from __future__ import annotations

import argparse
import sys

from ..text import printable
from .common import EXIT_OK, Bars, Parser, add_common, add_embedder, add_tolerance, check_tolerance


# What an interrupted run has not written, for the one line main prints.
NOT_WRITTEN = "no people files were written"


def add_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="blurface people",
        description="Group a video's faces into people: write a contact sheet (people.png, UNMASKED crops) and "
        "person_N.npz galleries usable with --target.",
    )
    p.add_argument("video", help="input video")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for people.png and person_N.npz")
    p.add_argument("--plan", metavar="JSON", help="a saved plan of the video (default: find every face)")
    add_tolerance(p, "tracks closer than this (mean embedding distance) are one person (default: the embedder's tolerance)")
    p.add_argument("--overwrite", action="store_true", help="replace existing people.png and person_N.npz files")
    add_embedder(p)
    add_common(p)
    return p


def run(args: argparse.Namespace) -> int:
    from .. import media
    from ..embedders import make_embedder
    from ..pipeline import check_same_video, make_plan
    from ..plan import Plan
    from ..people import write_people

    check_tolerance(args)
    info = media.probe(args.video)
    bars = Bars(info.frame_count, enabled=not args.quiet)
    try:
        plan = Plan.load(args.plan) if args.plan else make_plan(args.video, all_faces=True, progress=bars)
        check_same_video(info, plan)
        result = write_people(plan, make_embedder(args.embedder), args.output, src=args.video, overwrite=args.overwrite,
                              threshold=args.tolerance)
    finally:
        bars.close()
    for k, group in enumerate(result.groups):
        frames = sum(len(plan.track(i)) for i in group)
        print(f"person {k + 1}: tracks {', '.join(map(str, group))} ({frames} frames)")
    if not args.quiet:
        print(printable(f"wrote {result.sheet} and {len(result.galleries)} galleries in {args.output}"), file=sys.stderr)
    return EXIT_OK
