"""``blurface preview``: a fast, smaller proxy of a time range, masked as the final render would be."""

from __future__ import annotations

import argparse
import dataclasses
import os
from pathlib import Path

from .common import (
    EXIT_OK,
    Parser,
    UsageError,
    add_common,
    add_keep_metadata,
    add_look,
    add_matching,
    add_range,
    add_speed,
    add_unsure,
    add_who,
    check_reference_args,
    render_settings_from_args,
    print_summary,
    run_pipeline,
    speed_flags,
    who_from_args,
)


# What an interrupted run has not written, for the one line main prints.
NOT_WRITTEN = "no preview was written"


def add_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="blurface preview",
        description="A fast, smaller proxy of a time range, masked as the final render would be, with its audio. "
        "With --plan it is exact; otherwise the range plus 5 s on each side is analysed.",
    )
    p.add_argument("video", help="input video")
    add_who(p, "whom to mask (exactly one)", plan="a saved plan: show exactly what it masks, without detecting")
    p.add_argument("-o", "--output", help="preview file to write (.mp4, .mov, .mkv; default: VIDEO.preview.mp4 "
                   "beside the input)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing preview file")
    add_range(p)
    p.add_argument("--overlay", action="store_true",
                   help="draw each face box coloured by decision (red masked, green kept, yellow unsure), "
                   "its track id, name and distance, and the frame time")
    p.add_argument("--height", type=int, default=540, help="proxy height in pixels (default %(default)s)")
    p.add_argument("--contact-sheet", metavar="PNG", help="also write a contact sheet of the range's tracks (UNMASKED crops)")
    add_matching(p)
    add_unsure(p)
    add_speed(p)  # not exclusive in argparse: run() says "at most one" itself
    add_look(p)
    add_keep_metadata(p)
    add_common(p)
    p.set_defaults(crf=None, preset=None, matte=None, report=None, codec=None, lossless=False, deinterlace=False)
    return p


def run(args: argparse.Namespace) -> int:
    from .. import media
    from ..pipeline import VideoSource
    from ..plan import Plan
    from ..review import PREVIEW_ENCODE

    who = who_from_args(args, prog="blurface preview", plan=True)
    if sum(bool(getattr(args, flag[2:])) for flag in speed_flags()) > 1:
        raise UsageError(f"blurface preview: give at most one of {' and '.join(speed_flags())}")
    if not 64 <= args.height <= 4320:
        raise UsageError(f"blurface preview: --height {args.height} is out of range: use 64 to 4320")
    settings = render_settings_from_args(args)
    encode = dataclasses.replace(PREVIEW_ENCODE, keep_metadata=settings.encode.keep_metadata)
    settings = type(settings)(effect=settings.effect, shape=settings.shape, pad=settings.pad, encode=encode)
    plan = Plan.load(args.plan) if args.plan else None
    source = VideoSource(args.video)
    info = source.info  # the one probe of the input
    check_reference_args(args)
    out = Path(args.output) if args.output else preview_output_path(args.video)
    media.check_output(args.video, out, overwrite=args.overwrite)
    result = run_pipeline(args, out, settings, who=who, plan_in=plan, source=source, frames=info.frame_count,
                          preview_height=args.height)
    print_summary(args, result)
    return EXIT_OK


def preview_output_path(video: str | os.PathLike) -> Path:
    """``talk.mp4`` -> ``talk.preview.mp4`` beside it: a proxy is H.264 in MP4 whatever the input."""
    path = Path(video)
    return path.with_name(path.stem + ".preview.mp4")
