"""``blurface inspect``: identifying metadata left in video files."""

from __future__ import annotations

import argparse
import sys

from ..text import one_line, printable
from ..types import BlurfaceError
from .common import EXIT_FAILURE, EXIT_OK, EXIT_USAGE, Parser, add_common


# What an interrupted run has not written, for the one line main prints.
NOT_WRITTEN = "the check did not finish"


def add_parser() -> argparse.ArgumentParser:
    p = Parser(
        prog="blurface inspect",
        description="List identifying metadata (location, camera, dates, names, data streams, chapter titles) "
        "left in video files, by key; exit 1 if any file has some.",
    )
    p.add_argument("videos", nargs="+", metavar="video", help="files to check")
    add_common(p, quiet="only the verdict line of each file")
    return p


def run(args: argparse.Namespace) -> int:
    from .. import media
    from ..metadata import findings

    code = EXIT_OK
    for video in args.videos:
        try:
            found = findings(media.read_tags(video))
        except BlurfaceError as e:
            # One unreadable file must not hide what the others hold: report it and go on.
            print(one_line(f"blurface: error: {e}"), file=sys.stderr)
            code = EXIT_USAGE
            continue
        for finding in [] if args.quiet else found:
            print(printable(f"{video}: {finding}"))
        verdict = f"IDENTIFYING METADATA: {len(found)} item(s)" if found else "CLEAN"
        print(f"{printable(video)}: {verdict}")
        if found and code == EXIT_OK:
            code = EXIT_FAILURE
    return code
