"""``blurface render``: render a saved (and possibly reviewed) plan without detecting again."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..text import printable
from .common import (
    EXIT_OK,
    Bars,
    Parser,
    add_common,
    add_editor_outputs,
    add_keep_metadata,
    add_output_format,
    add_range,
    render_settings_from_args,
    run_for_editors,
    wants_editor_outputs,
)


def add_parser() -> argparse.ArgumentParser:
    p = Parser(prog="blurface render", description="Render a saved (and possibly reviewed) plan without detecting again.")
    p.add_argument("video", help="the video the plan was made for")
    p.add_argument("--plan", required=True, help="plan JSON written by 'blurface VIDEO ... --plan'")
    p.add_argument("-o", "--output", help="output path (default: VIDEO.blurred.EXT)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--mask", choices=("blur", "pixelate", "solid"), default="blur")
    p.add_argument("--shape", choices=("ellipse", "box"), default="ellipse")
    p.add_argument("--pad", type=float, default=None)
    p.add_argument("--crf", type=int, default=None)
    p.add_argument("--preset", default=None)
    add_output_format(p)
    add_keep_metadata(p)
    add_range(p)
    add_editor_outputs(p)
    add_common(p)
    return p


def run(args: argparse.Namespace) -> int:
    from .. import media
    from ..pipeline import render
    from ..plan import Plan

    settings = render_settings_from_args(args)
    plan = Plan.load(args.plan)
    info = media.probe(args.video)  # a clear error for a bad video before anything else
    out = Path(args.output) if args.output else media.default_output_path(args.video)
    media.check_output(args.video, out, overwrite=args.overwrite)
    if wants_editor_outputs(args):
        return run_for_editors(args, out, settings, plan_in=plan, frames=plan.frame_count)
    bars = Bars(plan.frame_count, enabled=not args.quiet)
    try:
        result = render(plan, out, settings=settings, src=args.video, overwrite=args.overwrite,
                        progress=bars, info=info)
    finally:
        bars.close()
    if not args.quiet:
        print(f"wrote {printable(result.output)}: {result.frames} frames, {result.masked_frames} with masks",
              file=sys.stderr)
    return EXIT_OK
