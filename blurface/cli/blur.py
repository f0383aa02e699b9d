"""The main command: ``blurface VIDEO --target PHOTO``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..version import __version__
from .common import (
    EXIT_OK,
    Parser,
    add_common,
    add_editor_outputs,
    add_masking,
    add_range,
    check_tolerance,
    check_reference_args,
    check_side_file,
    render_settings_from_args,
    print_summary,
    run_pipeline,
    wants_editor_outputs,
    who_from_args,
)


# What an interrupted run has not written, for the one line main prints.
NOT_WRITTEN = "no output video was written"


def add_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="blurface",
        description="Mask a person's face wherever they appear in a video; keep audio, streams and timing.",
        epilog="Subcommands: 'blurface enroll --help', 'blurface verify --help', 'blurface render --help', "
        "'blurface preview --help', 'blurface inspect --help', 'blurface batch --help', "
        "'blurface review --help', 'blurface people --help'. "
        "Exit codes: 0 ok, 1 processing failure, 2 usage or input error, 130 interrupted.",
    )
    p.add_argument("video", help="input video (mp4, mov, mkv, ...)")
    add_masking(p)
    p.add_argument("-o", "--output", help="output path (default: VIDEO.blurred.EXT beside the input)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--plan", metavar="JSON", help="also write the redaction plan (per-frame boxes and reasons)")
    add_range(p)
    add_editor_outputs(p)
    p.add_argument("--version", action="version", version=f"blurface {__version__}")
    add_common(p)
    return p


def run(args: argparse.Namespace) -> int:
    from .. import media
    from ..pipeline import VideoSource

    who = who_from_args(args)
    check_tolerance(args)
    render_settings = render_settings_from_args(args)
    # Inputs first, then every path the command writes: all before the analysis, which may take long.
    source = VideoSource(args.video)
    info = source.info  # the one probe of the input
    check_reference_args(args)
    out = Path(args.output) if args.output else media.default_output_path(args.video)
    media.check_output(args.video, out, overwrite=args.overwrite)
    if args.plan:
        check_side_file(args.plan, "--plan", args, outputs=[out])
    editor = wants_editor_outputs(args)
    if editor:
        media.output_format(info, render_settings.encode, out)  # e.g. --codec prores into .mp4: refused now
    result = run_pipeline(args, out, render_settings, who=who, plan_in=None, source=source,
                          frames=info.frame_count, plan_out=args.plan)
    print_summary(args, result, seconds=not editor)
    return EXIT_OK
