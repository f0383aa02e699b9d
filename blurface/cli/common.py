"""What the subcommands share: the parser class, option builders, progress bars, logging,
signals, the checks every command makes, and :func:`run_pipeline`, the commands' one call
into :func:`blurface.pipeline.run`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType

from tqdm import tqdm

from ..text import one_line, printable
from ..types import Interrupted

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

log = logging.getLogger("blurface")


class Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` returns the code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message} (see --help)")


class UsageError(Exception):
    pass


def add_common(p: argparse.ArgumentParser, *, quiet: str = "no progress bar, warnings only") -> None:
    """-q (``quiet``: what it leaves) and --debug, which every command has."""
    p.add_argument("-q", "--quiet", action="store_true", help=quiet)
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")


def add_embedder(p: argparse.ArgumentParser) -> None:
    from ..embedders import DEFAULT_EMBEDDER, EMBEDDERS

    p.add_argument(
        "--embedder", choices=tuple(EMBEDDERS), default=DEFAULT_EMBEDDER,
        help=f"who each face is (default {DEFAULT_EMBEDDER}); dlib for faces mostly under 40 px. "
        "A gallery (.npz) only works with the embedder that made it",
    )


def add_matching(p: argparse.ArgumentParser) -> None:
    from ..embedders import EMBEDDERS

    add_tolerance(
        p, "embedding distance at or below which a face is that person (default: the embedder's, "
        + ", ".join(f"{n} {e.tolerance}" for n, e in EMBEDDERS.items()) + "; lower is stricter)",
    )
    add_embedder(p)
    p.add_argument(
        "--strict-reference", action="store_true",
        help="refuse reference photos with several faces instead of using the largest",
    )


def add_tolerance(p: argparse.ArgumentParser, help: str) -> None:  # noqa: A002 - argparse's word
    """--tolerance D; None (the default) is the embedder's own, which the library reads. :func:`check_tolerance`."""
    p.add_argument("--tolerance", type=float, default=None, metavar="D", help=help)


def add_range(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="start", metavar="TIME",
                   help="start of the excerpt, as the video's frame times (80, 1:20, 1:20.5)")
    p.add_argument("--to", dest="end", metavar="TIME", help="end of the excerpt (exclusive), same format")


def add_editor_outputs(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("for editors and auditors")
    g.add_argument("--matte", metavar="MOV|MKV",
                   help="also write a black-and-white matte, white where faces are masked "
                   "(.mov: ProRes 422 HQ for Premiere/Resolve/Final Cut; .mkv: lossless FFV1)")
    g.add_argument("--contact-sheet", metavar="PNG",
                   help="also write a PNG with one row of UNMASKED face crops per track, for review")
    g.add_argument("--report", metavar="JSON",
                   help="also write an audit report (JSON, and HTML beside it): hashes, models, settings, decisions")


def add_masking(p: argparse.ArgumentParser) -> None:
    """Whom to mask, how, and how fast: shared by the single-file command and ``batch``."""
    add_who(p, "whom to mask (exactly one)")
    add_matching(p)
    add_unsure(p)
    add_look(p.add_argument_group("mask"))
    speed = p.add_argument_group("speed and quality")
    add_speed(speed.add_mutually_exclusive_group())
    add_encode(speed)
    add_output_format(p)
    add_keep_metadata(p)


def add_who(p: argparse.ArgumentParser, title: str, *, plan: str | None = None) -> None:
    """--target, --keep and --all in a group ``title``; with ``plan`` (its help), a saved plan is a fourth choice.

    :func:`who_from_args` checks that exactly one was given.
    """
    who = p.add_argument_group(title)
    who.add_argument("--target", action="append", default=[], metavar="PHOTO|DIR|NPZ",
                     help="mask this person; repeat for several people. A folder of photos of one person matches better")
    who.add_argument("--keep", action="append", default=[], metavar="PHOTO|DIR|NPZ",
                     help="mask every face except these people (repeatable)")
    who.add_argument("--all", action="store_true", help="mask every face")
    if plan is not None:
        who.add_argument("--plan", metavar="JSON", help=plan)


# What a face near the target, but not within the tolerance, becomes; the first is the default.
UNSURE = ("mask", "keep")


def mask_unsure(args: argparse.Namespace) -> bool:
    """--unsure as the library takes it (``mask_unsure``)."""
    return args.unsure == UNSURE[0]


def add_unsure(p: argparse.ArgumentParser) -> None:
    p.add_argument("--unsure", choices=UNSURE, default=UNSURE[0],
                   help="--target mode: faces close to the target but not within tolerance are masked (default) or kept")


def add_look(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--mask, --shape and --pad: choices and defaults from :mod:`blurface.mask` and ``RenderSettings``."""
    from typing import get_args

    from ..mask import DEFAULT_PAD, EFFECTS, Shape
    from ..pipeline import RenderSettings

    defaults = RenderSettings()
    p.add_argument("--mask", choices=tuple(EFFECTS), default=defaults.effect, help="effect (default %(default)s)")
    p.add_argument("--shape", choices=get_args(Shape), default=defaults.shape, help="shape (default %(default)s)")
    p.add_argument("--pad", type=float, default=None, metavar="F",
                   help=f"grow each face box by F times its size per side to cover hair, ears and chin "
                   f"(default {DEFAULT_PAD})")


# The analysis preset used when no speed flag is given; every other preset of pipeline.PRESETS is a flag.
DEFAULT_SPEED = "balanced"
# What each speed flag's help says, filled in from its preset's settings (s).
_SPEED_HELP = {
    "fast": "faces from 1/{min_face} of the frame height ({px} px at 720p), whole-frame passes less often",
    "thorough": "faces from 1/{min_face} of the height ({px} px at 720p), a more sensitive detector, "
    "whole-frame passes every {full_every} frame (slower)",
}


def _ordinal(n: int) -> str:
    return f"{n}{'th' if 10 <= n % 100 <= 20 else {1: 'st', 2: 'nd', 3: 'rd'}.get(n % 10, 'th')}"


def speed_flags() -> list[str]:
    """One flag per analysis preset of ``pipeline.PRESETS`` but the default: ``--fast``, ``--thorough``."""
    from ..pipeline import PRESETS

    return [f"--{name}" for name in PRESETS if name != DEFAULT_SPEED]


def add_speed(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """One flag per analysis preset but the default (--fast, --thorough), from ``pipeline.PRESETS``.

    Pass a mutually exclusive group to refuse two at once in argparse.
    """
    from ..pipeline import PRESETS

    for name, s in PRESETS.items():
        if name != DEFAULT_SPEED:
            p.add_argument(f"--{name}", action="store_true", help=_SPEED_HELP[name].format(
                min_face=round(1 / s.min_face), px=round(720 * s.min_face), full_every=_ordinal(s.full_every)))


def add_encode(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--crf and --preset, with the defaults :mod:`blurface.formats` encodes with."""
    from ..formats import CODEC_CHOICES, DEFAULT_CRF, DEFAULT_PRESET

    p.add_argument("--crf", type=int, default=None,
                   help=f"x264 quality, lower is better (default {DEFAULT_CRF[CODEC_CHOICES['h264']]})")
    p.add_argument("--preset", default=None, help=f"x264 preset (default {DEFAULT_PRESET})")


def add_output_format(p: argparse.ArgumentParser) -> None:
    from ..formats import CODEC_CHOICES, DEFAULT_CRF

    # The codecs --crf and --preset apply to: those with a CRF.
    crf = [codec for codec, encoder in CODEC_CHOICES.items() if encoder in DEFAULT_CRF]
    out = p.add_argument_group("output format (default: the input's codec, depth, chroma, colour, HDR and fields)")
    out.add_argument("--codec", choices=tuple(CODEC_CHOICES), default=None,
                     help="encode with this codec instead of the input's; --crf and --preset apply to "
                     f"{', '.join(crf[:-1])} and {crf[-1]} "
                     f"(default CRF {', '.join(str(DEFAULT_CRF[CODEC_CHOICES[c]]) for c in crf)})")
    out.add_argument("--lossless", action="store_true",
                     help="lossless outside the masks: FFV1 (x264 at QP 0 in .mov, which cannot hold FFV1)")
    out.add_argument("--deinterlace", action="store_true",
                     help="write interlaced input as progressive (bwdif, one picture per frame); "
                     "by default it stays interlaced with its field order")


def add_keep_metadata(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--keep-metadata", action="store_true",
        help="keep the input's metadata (location, camera make and model, dates, titles, data streams); "
        "by default only what players need is kept",
    )


class Bars:
    """One tqdm bar per stage, on stderr: ``total`` steps each, unless ``expect`` gave a stage its own."""

    def __init__(self, total: int, enabled: bool) -> None:
        self.total = total
        self.enabled = enabled
        self.bars: dict[str, tqdm] = {}
        self.totals: dict[str, int] = {}

    def expect(self, stage: str, total: int) -> None:
        """``stage`` will take ``total`` steps (a range's frames, the side files): its bar shows a total and ETA."""
        self.totals[stage] = total

    def __call__(self, stage: str, n: int) -> None:
        if not self.enabled:
            return
        bar = self.bars.get(stage)
        if bar is None:
            for other in self.bars.values():
                other.close()
            bar = self.bars[stage] = tqdm(total=self.totals.get(stage, self.total) or None, desc=stage,
                                          unit="file" if stage == "side files" else "frame", file=sys.stderr, leave=True)
        bar.update(n)

    def close(self) -> None:
        for bar in self.bars.values():
            bar.close()


class _OneLineFormatter(logging.Formatter):
    """``blurface: warning: message`` on one line; a traceback (``--debug``) follows on its own lines."""

    def format(self, record: logging.LogRecord) -> str:
        line = f"blurface: {record.levelname.lower()}: {one_line(record.getMessage())}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _Once(logging.Filter):
    """Drop a message already shown: analysis and render decode the same file and find the same damage."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[int, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.levelno, record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def setup_logging(quiet: bool, debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    if not debug:
        handler.addFilter(_Once())
    root = logging.getLogger("blurface")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    root.propagate = False


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGTERM raises :class:`Interrupted`, and SIGINT ``KeyboardInterrupt``, so both clean up.

    SIGINT is set explicitly: a process started in the background of a script inherits
    it *ignored* (bash does that to background jobs), and Python keeps an inherited
    ignore, so Ctrl-C or ``kill -INT`` would otherwise be silently lost.
    """

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(f"interrupted by {signal.Signals(signum).name}")

    previous_term = signal.signal(signal.SIGTERM, handler)
    previous_int = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous_term)
        signal.signal(signal.SIGINT, previous_int)


def render_settings_from_args(args: argparse.Namespace):  # noqa: ANN202 - imported lazily below
    from ..formats import X264_PRESETS
    from ..media import EncodeSettings
    from ..pipeline import RenderSettings

    codec = getattr(args, "codec", None) or "auto"
    encode = EncodeSettings(codec=codec, lossless=getattr(args, "lossless", False),
                            deinterlace=getattr(args, "deinterlace", False))
    if args.crf is not None:
        top = 63 if codec == "av1" else 51
        if not 0 <= args.crf <= top:
            raise UsageError(f"blurface: --crf {args.crf} is out of range: use 0 to {top}")
        encode = replace(encode, crf=args.crf)
    if args.preset is not None:  # checked before any work: x264 only refuses a preset when it opens
        if args.preset not in X264_PRESETS:
            raise UsageError(f"blurface: --preset {args.preset!r} is not an x264 preset: use one of {', '.join(X264_PRESETS)}")
        encode = replace(encode, preset=args.preset)
    if encode.lossless and codec in ("av1", "prores"):
        raise UsageError(f"blurface: --lossless works with --codec ffv1, h264 or hevc, not {codec}")
    defaults = RenderSettings()
    pad = defaults.pad if args.pad is None else args.pad
    if not 0 <= pad <= 3:
        raise UsageError(f"blurface: --pad {pad} is out of range: use 0 to 3")
    encode = replace(encode, keep_metadata=args.keep_metadata)
    return RenderSettings(effect=args.mask, shape=args.shape, pad=pad, encode=encode)


def analysis_from_args(args: argparse.Namespace):  # noqa: ANN202 - AnalysisSettings, imported lazily
    """The preset ``--fast``/``--thorough`` choose (default balanced), with ``--embedder``."""
    from ..pipeline import PRESETS

    # In PRESETS' order, so with both flags (review allows it) --fast wins, as it always has.
    chosen = [flag[2:] for flag in speed_flags() if getattr(args, flag[2:], False)]
    return replace(PRESETS[chosen[0] if chosen else DEFAULT_SPEED], embedder=args.embedder)


def who_from_args(args: argparse.Namespace, *, prog: str = "blurface", plan: bool = False):  # noqa: ANN201 - Who | None
    """Whom the command masks: exactly one of --target, --keep, --all (or, with ``plan``, an input --plan).

    Returns the library's :class:`~blurface.pipeline.Who`, whose ``from_args`` owns the rule,
    or ``None`` when a saved --plan is rendered instead. ``prog`` starts the message.
    """
    from ..pipeline import Who
    from ..types import InputError

    who_given = bool(args.target) or bool(args.keep) or bool(args.all)
    names = ("--target, --keep", "--all", "--plan") if plan else ("--target", "--keep", "--all")
    try:
        if plan and args.plan:
            if who_given:
                raise InputError(f"give exactly one of {names[0]}, {names[1]} or {names[2]}")
            return None
        return Who.from_args(args.target or None, args.keep or None, args.all, names=names)
    except InputError as e:
        raise UsageError(f"{prog}: {e} (see --help)") from None


def check_tolerance(args: argparse.Namespace) -> None:
    """Refuse a --tolerance outside 0 to 2 before any work."""
    if args.tolerance is not None and not 0 < args.tolerance < 2:
        raise UsageError(f"blurface: --tolerance {args.tolerance} is out of range: use a value between 0 and 2")


def inputs(args: argparse.Namespace) -> list[str]:
    """Every file the command reads: the video(s), reference photos and galleries, an input plan."""
    files = [getattr(args, "video", None), *getattr(args, "photos", []), *getattr(args, "target", []),
             *getattr(args, "keep", [])]
    if args.command in ("render", "preview", "people"):  # review's Save may replace its --plan, by design
        files.append(getattr(args, "plan", None))
    return [str(f) for f in files if f]


def check_reference_args(args: argparse.Namespace) -> None:
    """Missing reference photos, and photos too large to decode, refused from their headers."""
    from ..gallery import check_references

    check_references([*getattr(args, "target", []), *getattr(args, "keep", [])])


def check_side_file(
    path: str | Path, option: str, args: argparse.Namespace, *, outputs: list[str | Path], overwrite: bool | None = None
) -> None:
    """Refuse a side file (plan, report, ...) by the rules of the video output, before any work."""
    from .. import media

    media.check_side_output(path, option, inputs=inputs(args), outputs=outputs,
                            overwrite=bool(getattr(args, "overwrite", False)) if overwrite is None else overwrite)


def wants_editor_outputs(args: argparse.Namespace) -> bool:
    return any(getattr(args, k, None) is not None for k in ("start", "end", "matte", "contact_sheet", "report"))


def run_pipeline(
    args: argparse.Namespace, out: Path, render_settings, *, who, plan_in, source, frames: int,  # noqa: ANN001
    plan_out: str | None = None, preview_height: int | None = None,
):  # noqa: ANN201 - Result, imported lazily
    """Check the side files, then :func:`blurface.pipeline.run` once, with the command's progress bars.

    ``who``: whom to mask (analyse), or ``None`` with ``plan_in`` (render a saved plan).
    ``source``: the input, probed once by the command (:class:`~blurface.pipeline.VideoSource`).
    """
    from ..pipeline import Outputs, Request, run
    from ..review import parse_time

    start = None if getattr(args, "start", None) is None else parse_time(args.start, "--from")
    end = None if getattr(args, "end", None) is None else parse_time(args.end, "--to")
    if start is not None and end is not None and end <= start:
        raise UsageError(f"blurface: --to {args.end} is not after --from {args.start}: give a later --to")
    outputs: list[str | Path] = [out] + ([args.plan] if getattr(args, "plan", None) else [])
    for option, value, suffixes in (("--matte", getattr(args, "matte", None), (".mov", ".mkv")),
                                    ("--contact-sheet", getattr(args, "contact_sheet", None), (".png",)),
                                    ("--report", getattr(args, "report", None), (".json",))):
        if value is None:
            continue
        if Path(value).suffix.lower() not in suffixes:
            raise UsageError(f"blurface: {option} {value!r} must end in {' or '.join(suffixes)}")
        check_side_file(value, option, args, outputs=outputs)
        outputs.append(value)
    if getattr(args, "report", None):
        check_side_file(Path(args.report).with_suffix(".html"), "--report (HTML)", args, outputs=outputs)
    analysed = {}
    if who is not None:
        analysed = {"analysis": analysis_from_args(args), "tolerance": args.tolerance,
                    "mask_unsure": mask_unsure(args), "strict_reference": args.strict_reference}
    request = Request(
        source=args.video,
        outputs=Outputs(video=out, plan=plan_out, matte=getattr(args, "matte", None),
                        contact_sheet=getattr(args, "contact_sheet", None), report=getattr(args, "report", None)),
        who=who, plan=plan_in, render=render_settings, start=start, end=end, preview_height=preview_height,
        overlay=bool(getattr(args, "overlay", False)), overwrite=args.overwrite,
        command=tuple(getattr(args, "argv", ())), **analysed,
    )
    # Every frame for a whole file; a range's analysis and render announce their own totals (review.expect).
    bars = Bars(frames, enabled=not args.quiet)
    try:
        return run(request, bars, source=source)
    finally:
        bars.close()


def print_summary(args: argparse.Namespace, result, *, tracks: bool = True, seconds: bool = False) -> None:  # noqa: ANN001
    """The command's one summary line on stderr (none with -q): what it wrote, and its side files."""
    if args.quiet:
        return
    line = f"wrote {result.output}: {result.frames} frames, {result.masked_frames} with masks"
    if tracks:
        line += f", {result.tracks_line()}"
    if seconds:
        line += f", in {result.seconds:.1f} s"
    extras = [f"{k} {v}" for k, v in (("matte", getattr(args, "matte", None)),
                                      ("contact sheet", getattr(args, "contact_sheet", None)),
                                      ("report", getattr(args, "report", None))) if v]
    if extras:
        line += f"; {', '.join(extras)}"
    print(printable(line), file=sys.stderr)
