"""``main(argv) -> int``: pick the subcommand, parse, set up logging and signals, and turn
every error into one line on stderr and its exit code."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from types import ModuleType

from ..text import one_line
from ..types import BlurfaceError, Interrupted
from . import batch, blur, enroll, inspect, people, preview, render, review, verify
from .common import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, UsageError, log, setup_logging, signals_as_interrupt

# Each command's module: add_parser() -> its parser, run(args) -> exit code, NOT_WRITTEN.
COMMANDS: dict[str, ModuleType] = {
    "blur": blur, "enroll": enroll, "verify": verify, "render": render, "inspect": inspect, "preview": preview,
    "batch": batch, "review": review, "people": people,
}
MAIN = "blur"  # the main command: ``blurface VIDEO ...``, without a name
SUBCOMMANDS = tuple(name for name in COMMANDS if name != MAIN)


def _video_after_double_dash(argv: list[str]) -> list[str]:
    """``blurface -- -x.mp4 --all``: the word after ``--`` is the video, and options may follow.

    argparse treats everything after ``--`` as positional, so ``--all`` there would be
    "unrecognized"; commands that take one file move ``-- FILE`` to the end instead.
    """
    if "--" not in argv:
        return argv
    i = argv.index("--")
    if i + 1 >= len(argv):
        return argv
    return argv[:i] + argv[i + 2 :] + ["--", argv[i + 1]]


def _dash_hint(argv: list[str]) -> str:
    """A hint when a word that starts with '-' looks like a file name rather than an option."""
    for i, word in enumerate(argv):
        if word.startswith("-") and not word.startswith("--") and (Path(word).suffix or os.path.exists(word)):
            if i > 0 and argv[i - 1] in ("-o", "--output", "--plan", "--report", "--matte", "--contact-sheet"):
                return f"; for a file name that starts with '-', write {argv[i - 1]}=./{word}"
            return f"; for a file name that starts with '-', write ./{word} or put it after --"
    return ""


def main(argv: list[str] | None = None) -> int:
    """Run blurface with ``argv`` (default ``sys.argv[1:]``); return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    name = argv[0] if argv and argv[0] in SUBCOMMANDS else MAIN
    if name != MAIN:
        argv = argv[1:]
    if name not in ("enroll", "inspect"):  # these take several files: there ``--`` keeps its usual meaning
        argv = _video_after_double_dash(argv)
    command = COMMANDS[name]
    debug = "--debug" in argv
    try:
        try:
            args = command.add_parser().parse_args(argv)
        except SystemExit as e:  # --help and --version exit through argparse
            return int(e.code or 0)
        args.command, args.argv = name, ["blurface"] + ([] if name == MAIN else [name]) + argv
        setup_logging(args.quiet, args.debug)
        from ..files import remove_stale_temp_dirs

        # Unmasked working copies a killed run left (review proxies, excerpt copies) go first.
        remove_stale_temp_dirs()
        with signals_as_interrupt():
            return command.run(args)
    except UsageError as e:
        print(one_line(f"{e}{_dash_hint(argv)}"), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if debug:
            log.exception("details")
        print(f"blurface: interrupted by Ctrl-C (SIGINT); {command.NOT_WRITTEN}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Interrupted as e:
        if debug:
            log.exception("details")
        print(one_line(f"blurface: {e}; {command.NOT_WRITTEN}"), file=sys.stderr)
        return EXIT_INTERRUPTED
    except BlurfaceError as e:
        if debug:
            log.exception("details")
        print(one_line(f"blurface: error: {e}"), file=sys.stderr)
        return e.exit_code
    except MemoryError:
        if debug:
            raise
        print("blurface: error: out of memory; try --fast or a smaller input", file=sys.stderr)
        return EXIT_FAILURE
    except Exception as e:  # noqa: BLE001 - the last line of defence: one line, never a traceback
        if debug:
            raise
        print(
            one_line(f"blurface: error: unexpected {type(e).__name__}: {e} (run with --debug for details)"),
            file=sys.stderr,
        )
        return EXIT_FAILURE


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
