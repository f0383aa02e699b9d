"""``blurface render``: render a saved (and possibly reviewed) plan without detecting again."""

from __future__ import annotations

import argparse
from pathlib import Path

from .common import (
    EXIT_OK,
    Parser,
    add_common,
    add_editor_outputs,
    add_encode,
    add_keep_metadata,
    add_look,
    add_output_format,
    add_range,
    render_settings_from_args,
    print_summary,
    run_pipeline,
    wants_editor_outputs,
)


# What an interrupted run has not written, for the one line main prints.
NOT_WRITTEN = "no output video was written"


def add_parser() -> argparse.ArgumentParser:
    p = Parser(prog="blurface render", description="Render a saved (and possibly reviewed) plan without detecting again.")
    p.add_argument("video", help="the video the plan was made for")
    p.add_argument("--plan", required=True, help="plan JSON written by 'blurface VIDEO ... --plan'")
    p.add_argument("-o", "--output", help="output path (default: VIDEO.blurred.EXT)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    add_look(p)
    add_encode(p)
    add_output_format(p)
    add_keep_metadata(p)
    add_range(p)
    add_editor_outputs(p)
    add_common(p)
    return p


def run(args: argparse.Namespace) -> int:
    from .. import media
    from ..pipeline import VideoSource
    from ..plan import Plan

    settings = render_settings_from_args(args)
    plan = Plan.load(args.plan)
    source = VideoSource(args.video)
    source.info  # noqa: B018 - probed now: a clear error for a bad video before anything else
    out = Path(args.output) if args.output else media.default_output_path(args.video)
    media.check_output(args.video, out, overwrite=args.overwrite)
    result = run_pipeline(args, out, settings, who=None, plan_in=plan, source=source, frames=plan.frame_count)
    # A whole render reports what it wrote; with side files or a range, also the tracks it shows.
    print_summary(args, result, tracks=wants_editor_outputs(args))
    return EXIT_OK
