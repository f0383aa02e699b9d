"""The main command: ``blurface VIDEO --target PHOTO``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import __version__
from ..text import printable
from .common import (
    EXIT_OK,
    Bars,
    Parser,
    add_common,
    add_editor_outputs,
    add_masking,
    add_range,
    analysis_from_args,
    check_tolerance,
    check_reference_args,
    check_side_file,
    mask_unsure,
    render_settings_from_args,
    run_for_editors,
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
    from ..pipeline import blur_video

    who_from_args(args)
    check_tolerance(args)
    render_settings = render_settings_from_args(args)
    # Inputs first, then every path the command writes: all before the analysis, which may take long.
    info = media.probe(args.video)
    check_reference_args(args)
    out = Path(args.output) if args.output else media.default_output_path(args.video)
    media.check_output(args.video, out, overwrite=args.overwrite)
    if args.plan:
        check_side_file(args.plan, "--plan", args, outputs=[out])
    if wants_editor_outputs(args):
        media.output_format(info, render_settings.encode, out)  # e.g. --codec prores into .mp4: refused now
        return run_for_editors(args, out, render_settings, plan_in=None, frames=info.frame_count)
    bars = Bars(info.frame_count, enabled=not args.quiet)
    try:
        result = blur_video(
            args.video,
            args.output,
            targets=args.target or None,
            keep=args.keep or None,
            all_faces=args.all,
            tolerance=args.tolerance,
            mask_unsure=mask_unsure(args),
            analysis=analysis_from_args(args),
            render_settings=render_settings,
            strict_reference=args.strict_reference,
            overwrite=args.overwrite,
            plan_path=args.plan,
            progress=bars,
            info=info,
        )
    finally:
        bars.close()
    if not args.quiet:
        print(
            printable(f"wrote {result.output}: {result.frames} frames, {result.masked_frames} with masks, "
                      f"{result.tracks_line()}, in {result.seconds:.1f} s"),
            file=sys.stderr,
        )
    return EXIT_OK
