"""``blurface review``: review a video's face tracks in the browser, on 127.0.0.1 behind a token."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..text import printable
from ..types import Interrupted
from .common import (
    EXIT_OK,
    Bars,
    Parser,
    UsageError,
    add_common,
    add_keep_metadata,
    add_look,
    add_matching,
    add_speed,
    add_unsure,
    add_who,
    analysis_from_args,
    check_reference_args,
    check_side_file,
    mask_unsure,
    render_settings_from_args,
    who_from_args,
)


def _add_decisions(p: argparse.ArgumentParser) -> None:
    add_who(p, "decisions (exactly one)", plan="a saved plan: review it without detecting again")
    add_matching(p)
    add_unsure(p)
    add_speed(p)  # not exclusive: with both, --fast wins (analysis_from_args)


# What an interrupted run has not written, for the one line main prints.
NOT_WRITTEN = "the review stopped"


def add_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="blurface review",
        description="Review a video's face tracks in your browser: flip decisions, group people, add missed faces, "
        "save the plan and render. Serves a page on 127.0.0.1 only, behind a random token; Ctrl-C stops it.",
    )
    p.add_argument("video", help="input video")
    _add_decisions(p)
    p.add_argument("--save", metavar="JSON", help="where Save writes the reviewed plan (default: --plan's file, "
                   "else VIDEO.plan.json beside the video)")
    p.add_argument("-o", "--output", help="where Render writes the video (default: VIDEO.blurred.EXT)")
    p.add_argument("--people-dir", metavar="DIR", help="where people saved from the page go (default: VIDEO.people/)")
    p.add_argument("--overwrite", action="store_true", help="Render may replace an existing output")
    p.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    add_look(p)
    add_keep_metadata(p)
    add_common(p)
    p.set_defaults(crf=None, preset=None)
    return p


def _decided_plan(args: argparse.Namespace, bars: Bars, info):  # noqa: ANN001, ANN202 - VideoInfo, Plan: imported lazily
    from ..pipeline import make_plan
    from ..plan import Plan

    if args.plan:
        return Plan.load(args.plan)
    return make_plan(
        args.video, targets=args.target or None, keep=args.keep or None, all_faces=args.all,
        tolerance=args.tolerance, mask_unsure=mask_unsure(args),
        analysis=analysis_from_args(args),
        strict_reference=args.strict_reference, progress=bars, info=info,
    )


def run(args: argparse.Namespace) -> int:
    from .. import media, server
    from ..embedders import make_embedder
    from ..pipeline import VideoSource, check_same_video

    who_from_args(args, prog="blurface review", plan=True)
    if not 0 <= args.port <= 65535:
        raise UsageError(f"blurface review: --port {args.port} is not a port: use 1 to 65535, or 0 for a free one")
    settings = render_settings_from_args(args)
    # The port is taken first: a busy one is refused at once, not after the whole analysis.
    httpd = server.ReviewServer(None, args.port)
    session = None
    try:
        source = VideoSource(args.video)
        info = source.info  # the one probe of the input
        video = Path(args.video)
        out = Path(args.output) if args.output else media.default_output_path(video)
        check_reference_args(args)
        # Nothing is written before Render is pressed: an existing output is checked then (ReviewSession),
        # so a review may follow the quick start; the path's other faults are refused now.
        media.check_output(video, out, overwrite=True)
        save = Path(args.save or args.plan or video.with_name(video.stem + ".plan.json"))
        # Save replaces its file by design (by default the plan under review): only where it is, is checked.
        check_side_file(save, "--save", args, outputs=[out], overwrite=True)
        people_dir = Path(args.people_dir) if args.people_dir else video.with_name(video.stem + ".people")
        bars = Bars(info.frame_count, enabled=not args.quiet)
        try:
            plan = _decided_plan(args, bars, info)
            check_same_video(info, plan)
            session = server.ReviewSession(plan, video, save_path=save, output=out, people_dir=people_dir,
                                           embedder=make_embedder(args.embedder), render_settings=settings, overwrite=args.overwrite, source=source)
            session.prepare(progress=bars)
        finally:
            bars.close()
        httpd.session = session
        print(f"review {printable(video.name)}: {len(plan.tracks)} tracks, {len(session.groups)} people", flush=True)
        print(f"open {httpd.url}  (Ctrl-C stops the review)", flush=True)
        if args.open:
            import webbrowser

            webbrowser.open(httpd.url)
        httpd.serve_forever()
    except (KeyboardInterrupt, Interrupted) as e:
        if session is None or httpd.session is None:
            raise  # stopped before the review began: main says what was not done
        stopped = "Ctrl-C" if isinstance(e, KeyboardInterrupt) else str(e)
        print(f"blurface: review stopped ({stopped}); the plan is saved only where Save was pressed", file=sys.stderr)
    finally:
        httpd.server_close()
        if session is not None:
            session.close()
    return EXIT_OK
