"""Command line: argument parsing, progress bars, logging and exit codes. Nothing else.

Exit codes: 0 ok (``verify``, ``inspect``: clean), 1 processing failure (``verify``: the
target was found; ``inspect``: identifying metadata was found), 2 usage or input error,
130 interrupted (Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import FrameType

from tqdm import tqdm

from . import __version__
from .text import one_line, printable
from .types import BlurfaceError, Interrupted

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

log = logging.getLogger("blurface")

SUBCOMMANDS = ("enroll", "verify", "render", "inspect", "preview", "batch", "review", "people")

# x264's presets, fastest first: checked before any work, since x264 only refuses one when it opens.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow", "placebo")

# What an interrupted command has not written, for the one line it prints.
_NOT_WRITTEN = {
    "blur": "no output video was written",
    "render": "no output video was written",
    "preview": "no preview was written",
    "enroll": "no gallery was written",
    "verify": "no report was written",
    "inspect": "the check did not finish",
    "batch": "finished outputs are kept: run the same command again to resume",
    "review": "the review stopped",
    "people": "no people files were written",
}


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of exiting, so ``main`` returns the code."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise _UsageError(f"{self.prog}: {message} (see --help)")


class _UsageError(Exception):
    pass


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar, warnings only")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")


def _add_embedder(p: argparse.ArgumentParser) -> None:
    from .embedders import DEFAULT_EMBEDDER, EMBEDDERS

    p.add_argument(
        "--embedder", choices=tuple(EMBEDDERS), default=DEFAULT_EMBEDDER,
        help=f"who each face is (default {DEFAULT_EMBEDDER}); dlib for faces mostly under 40 px. "
        "A gallery (.npz) only works with the embedder that made it",
    )


def _add_matching(p: argparse.ArgumentParser) -> None:
    from .embedders import EMBEDDERS

    p.add_argument(
        "--tolerance", type=float, default=None, metavar="D",
        help="embedding distance at or below which a face is that person (default: the embedder's, "
        + ", ".join(f"{n} {e.tolerance}" for n, e in EMBEDDERS.items()) + "; lower is stricter)",
    )
    _add_embedder(p)
    p.add_argument(
        "--strict-reference", action="store_true",
        help="refuse reference photos with several faces instead of using the largest",
    )


def _add_range(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="start", metavar="TIME",
                   help="start of the excerpt, as the video's frame times (80, 1:20, 1:20.5)")
    p.add_argument("--to", dest="end", metavar="TIME", help="end of the excerpt (exclusive), same format")


def _add_editor_outputs(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("for editors and auditors")
    g.add_argument("--matte", metavar="MOV|MKV",
                   help="also write a black-and-white matte, white where faces are masked "
                   "(.mov: ProRes 422 HQ for Premiere/Resolve/Final Cut; .mkv: lossless FFV1)")
    g.add_argument("--contact-sheet", metavar="PNG",
                   help="also write a PNG with one row of UNMASKED face crops per track, for review")
    g.add_argument("--report", metavar="JSON",
                   help="also write an audit report (JSON, and HTML beside it): hashes, models, settings, decisions")


def _blur_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="blurface",
        description="Mask a person's face wherever they appear in a video; keep audio, streams and timing.",
        epilog="Subcommands: 'blurface enroll --help', 'blurface verify --help', 'blurface render --help', "
        "'blurface preview --help', 'blurface inspect --help', 'blurface batch --help', "
        "'blurface review --help', 'blurface people --help'. "
        "Exit codes: 0 ok, 1 processing failure, 2 usage or input error, 130 interrupted.",
    )
    p.add_argument("video", help="input video (mp4, mov, mkv, ...)")
    _add_masking(p)
    p.add_argument("-o", "--output", help="output path (default: VIDEO.blurred.EXT beside the input)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("--plan", metavar="JSON", help="also write the redaction plan (per-frame boxes and reasons)")
    _add_range(p)
    _add_editor_outputs(p)
    p.add_argument("--version", action="version", version=f"blurface {__version__}")
    _add_common(p)
    return p


def _add_masking(p: argparse.ArgumentParser) -> None:
    """Whom to mask, how, and how fast: shared by the single-file command and ``batch``."""
    who = p.add_argument_group("whom to mask (exactly one)")
    who.add_argument("--target", action="append", default=[], metavar="PHOTO|DIR|NPZ",
                     help="mask this person; repeat for several people. A folder of photos of one person matches better")
    who.add_argument("--keep", action="append", default=[], metavar="PHOTO|DIR|NPZ",
                     help="mask every face except these people (repeatable)")
    who.add_argument("--all", action="store_true", help="mask every face")
    _add_matching(p)
    p.add_argument("--unsure", choices=("mask", "keep"), default="mask",
                   help="--target mode: faces close to the target but not within tolerance are masked (default) or kept")
    look = p.add_argument_group("mask")
    look.add_argument("--mask", choices=("blur", "pixelate", "solid"), default="blur", help="effect (default blur)")
    look.add_argument("--shape", choices=("ellipse", "box"), default="ellipse", help="shape (default ellipse)")
    look.add_argument("--pad", type=float, default=None, metavar="F",
                      help="grow each face box by F times its size per side to cover hair, ears and chin (default 0.4)")
    speed = p.add_argument_group("speed and quality")
    mode = speed.add_mutually_exclusive_group()
    mode.add_argument("--fast", action="store_true",
                      help="faces from 1/20 of the frame height (36 px at 720p), whole-frame passes less often")
    mode.add_argument("--thorough", action="store_true",
                      help="faces from 1/45 of the height (16 px at 720p), a more sensitive detector, "
                      "whole-frame passes every 3rd frame (slower)")
    speed.add_argument("--crf", type=int, default=None, help="x264 quality, lower is better (default 18)")
    speed.add_argument("--preset", default=None, help="x264 preset (default veryfast)")
    _add_output_format(p)
    _add_keep_metadata(p)


def _add_output_format(p: argparse.ArgumentParser) -> None:
    out = p.add_argument_group("output format (default: the input's codec, depth, chroma, colour, HDR and fields)")
    out.add_argument("--codec", choices=("h264", "hevc", "av1", "prores", "ffv1"), default=None,
                     help="encode with this codec instead of the input's; --crf and --preset apply to "
                     "h264, hevc and av1 (default CRF 18, 18, 20)")
    out.add_argument("--lossless", action="store_true",
                     help="lossless outside the masks: FFV1 (x264 at QP 0 in .mov, which cannot hold FFV1)")
    out.add_argument("--deinterlace", action="store_true",
                     help="write interlaced input as progressive (bwdif, one picture per frame); "
                     "by default it stays interlaced with its field order")


def _enroll_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="blurface enroll", description="Save one person's reference photos as a reusable .npz gallery.")
    p.add_argument("photos", nargs="+", help="photos or folders of photos of ONE person")
    p.add_argument("-o", "--output", required=True, help="gallery file to write (.npz)")
    p.add_argument("--name", help="the person's name in plans and reports (default: the output's stem)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing gallery file")
    p.add_argument("--strict-reference", action="store_true", help="refuse photos with several faces")
    _add_embedder(p)
    _add_common(p)
    return p


def _verify_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="blurface verify",
        description="Re-examine a finished video, every whole frame at full resolution, with a more sensitive detector; "
        "exit 1 if a face still matches the target.",
    )
    p.add_argument("video", help="the anonymised video to check")
    p.add_argument("--target", action="append", required=True, metavar="PHOTO|DIR|NPZ", help="the person (repeatable)")
    _add_matching(p)
    p.add_argument("--report", metavar="JSON", help="write the findings as JSON")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --report file")
    p.add_argument(
        "--all-frames", action="store_true",
        help="read the whole video and list every frame with a match (default: stop at the first one, "
        "the verdict is then known)",
    )
    _add_common(p)
    return p


def _render_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="blurface render", description="Render a saved (and possibly reviewed) plan without detecting again.")
    p.add_argument("video", help="the video the plan was made for")
    p.add_argument("--plan", required=True, help="plan JSON written by 'blurface VIDEO ... --plan'")
    p.add_argument("-o", "--output", help="output path (default: VIDEO.blurred.EXT)")
    p.add_argument("--overwrite", action="store_true")
    p.add_argument("--mask", choices=("blur", "pixelate", "solid"), default="blur")
    p.add_argument("--shape", choices=("ellipse", "box"), default="ellipse")
    p.add_argument("--pad", type=float, default=None)
    p.add_argument("--crf", type=int, default=None)
    p.add_argument("--preset", default=None)
    _add_output_format(p)
    _add_keep_metadata(p)
    _add_range(p)
    _add_editor_outputs(p)
    _add_common(p)
    return p


def _add_keep_metadata(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--keep-metadata", action="store_true",
        help="keep the input's metadata (location, camera make and model, dates, titles, data streams); "
        "by default only what players need is kept",
    )


def _inspect_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="blurface inspect",
        description="List identifying metadata (location, camera, dates, names, data streams, chapter titles) "
        "left in video files, by key; exit 1 if any file has some.",
    )
    p.add_argument("videos", nargs="+", metavar="video", help="files to check")
    p.add_argument("-q", "--quiet", action="store_true", help="only the verdict line of each file")
    p.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    return p


def _preview_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="blurface preview",
        description="A fast, smaller proxy of a time range, masked as the final render would be, with its audio. "
        "With --plan it is exact; otherwise the range plus 5 s on each side is analysed.",
    )
    p.add_argument("video", help="input video")
    who = p.add_argument_group("whom to mask (exactly one)")
    who.add_argument("--target", action="append", default=[], metavar="PHOTO|DIR|NPZ")
    who.add_argument("--keep", action="append", default=[], metavar="PHOTO|DIR|NPZ")
    who.add_argument("--all", action="store_true")
    who.add_argument("--plan", metavar="JSON", help="a saved plan: show exactly what it masks, without detecting")
    p.add_argument("-o", "--output", help="preview file to write (.mp4, .mov, .mkv; default: VIDEO.preview.mp4 "
                   "beside the input)")
    p.add_argument("--overwrite", action="store_true")
    _add_range(p)
    p.add_argument("--overlay", action="store_true",
                   help="draw each face box coloured by decision (red masked, green kept, yellow unsure), "
                   "its track id, name and distance, and the frame time")
    p.add_argument("--height", type=int, default=540, help="proxy height in pixels (default 540)")
    p.add_argument("--contact-sheet", metavar="PNG", help="also write a contact sheet of the range's tracks (UNMASKED crops)")
    _add_matching(p)
    p.add_argument("--unsure", choices=("mask", "keep"), default="mask")
    p.add_argument("--fast", action="store_true")
    p.add_argument("--thorough", action="store_true")
    p.add_argument("--mask", choices=("blur", "pixelate", "solid"), default="blur")
    p.add_argument("--shape", choices=("ellipse", "box"), default="ellipse")
    p.add_argument("--pad", type=float, default=None)
    _add_keep_metadata(p)
    _add_common(p)
    p.set_defaults(crf=None, preset=None, matte=None, report=None, codec=None, lossless=False, deinterlace=False)
    return p


class _Bars:
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


def _setup_logging(quiet: bool, debug: bool) -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter())
    if not debug:
        handler.addFilter(_Once())
    root = logging.getLogger("blurface")
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if debug else logging.WARNING)
    root.propagate = False


@contextmanager
def _signals_as_interrupt() -> Iterator[None]:
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


def _render_settings(args: argparse.Namespace):  # noqa: ANN202 - imported lazily below
    from .media import EncodeSettings
    from .pipeline import RenderSettings

    codec = getattr(args, "codec", None) or "auto"
    encode = EncodeSettings(codec=codec, lossless=getattr(args, "lossless", False),
                            deinterlace=getattr(args, "deinterlace", False))
    if args.crf is not None:
        top = 63 if codec == "av1" else 51
        if not 0 <= args.crf <= top:
            raise _UsageError(f"blurface: --crf {args.crf} is out of range: use 0 to {top}")
        encode = replace(encode, crf=args.crf)
    if args.preset is not None:
        if args.preset not in X264_PRESETS:
            raise _UsageError(f"blurface: --preset {args.preset!r} is not an x264 preset: use one of {', '.join(X264_PRESETS)}")
        encode = replace(encode, preset=args.preset)
    if encode.lossless and codec in ("av1", "prores"):
        raise _UsageError(f"blurface: --lossless works with --codec ffv1, h264 or hevc, not {codec}")
    defaults = RenderSettings()
    pad = defaults.pad if args.pad is None else args.pad
    if not 0 <= pad <= 3:
        raise _UsageError(f"blurface: --pad {pad} is out of range: use 0 to 3")
    encode = replace(encode, keep_metadata=args.keep_metadata)
    return RenderSettings(effect=args.mask, shape=args.shape, pad=pad, encode=encode)


def _analysis(args: argparse.Namespace):  # noqa: ANN202 - AnalysisSettings, imported lazily
    """The preset ``--fast``/``--thorough`` choose (default balanced), with ``--embedder``."""
    from .pipeline import PRESETS

    preset = PRESETS["fast" if args.fast else "thorough" if args.thorough else "balanced"]
    return replace(preset, embedder=args.embedder)


def _check_masking(args: argparse.Namespace) -> None:
    chosen = [bool(args.target), bool(args.keep), bool(args.all)]
    if sum(chosen) != 1:
        raise _UsageError("blurface: give exactly one of --target, --keep or --all (see --help)")
    if args.tolerance is not None and not 0 < args.tolerance < 2:
        raise _UsageError(f"blurface: --tolerance {args.tolerance} is out of range: use a value between 0 and 2")


def _cmd_blur(args: argparse.Namespace) -> int:
    from . import media
    from .pipeline import blur_video

    _check_masking(args)
    render_settings = _render_settings(args)
    # Inputs first, then every path the command writes: all before the analysis, which may take long.
    info = media.probe(args.video)
    _check_references(args)
    out = Path(args.output) if args.output else media.default_output_path(args.video)
    media.check_output(args.video, out, overwrite=args.overwrite)
    if args.plan:
        _check_side_file(args.plan, "--plan", args, outputs=[out])
    if _wants_editor_outputs(args):
        media.output_format(info, render_settings.encode, out)  # e.g. --codec prores into .mp4: refused now
        return _run_for_editors(args, out, render_settings, plan_in=None, frames=info.frame_count)
    bars = _Bars(info.frame_count, enabled=not args.quiet)
    try:
        result = blur_video(
            args.video,
            args.output,
            targets=args.target or None,
            keep=args.keep or None,
            all_faces=args.all,
            tolerance=args.tolerance,
            mask_unsure=args.unsure == "mask",
            analysis=_analysis(args),
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


def _inputs(args: argparse.Namespace) -> list[str]:
    """Every file the command reads: the video(s), reference photos and galleries, an input plan."""
    files = [getattr(args, "video", None), *getattr(args, "photos", []), *getattr(args, "target", []),
             *getattr(args, "keep", [])]
    if args.command in ("render", "preview", "people"):  # review's Save may replace its --plan, by design
        files.append(getattr(args, "plan", None))
    return [str(f) for f in files if f]


def _check_references(args: argparse.Namespace) -> None:
    """Missing reference photos, and photos too large to decode, refused from their headers."""
    from .gallery import check_references

    check_references([*getattr(args, "target", []), *getattr(args, "keep", [])])


def _check_side_file(
    path: str | Path, option: str, args: argparse.Namespace, *, outputs: list[str | Path], overwrite: bool | None = None
) -> None:
    """Refuse a side file (plan, report, ...) by the rules of the video output, before any work."""
    from . import media

    media.check_side_output(path, option, inputs=_inputs(args), outputs=outputs,
                            overwrite=bool(getattr(args, "overwrite", False)) if overwrite is None else overwrite)


def _cmd_enroll(args: argparse.Namespace) -> int:
    from .faces import FaceEngine
    from .gallery import Gallery, check_references, person_from_paths

    out = Path(args.output)
    if out.suffix.lower() != ".npz":
        raise _UsageError(f"blurface enroll: output {str(out)!r} must end in .npz")
    check_references(args.photos)  # inputs first
    if out.exists() and not args.overwrite:
        raise _UsageError(f"blurface enroll: {str(out)!r} exists: use --overwrite to replace it")
    _check_side_file(args.output, "--output", args, outputs=[])
    from .embedders import make_embedder
    from .gallery import embedder_tag

    engine = FaceEngine(embedder=make_embedder(args.embedder))
    person = person_from_paths(args.photos, engine, name=args.name or out.stem, strict=args.strict_reference)
    Gallery([person], embedder=embedder_tag(engine.embedder)).save(out)
    if not args.quiet:
        print(printable(f"wrote {out}: {person.name}, {len(person.embeddings)} reference face(s)"), file=sys.stderr)
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace) -> int:
    from .faces import FaceEngine
    from .gallery import Gallery
    from .verify import verify

    from . import media

    info = media.probe(args.video)
    _check_references(args)
    if args.report:
        _check_side_file(args.report, "--report", args, outputs=[])
    from .embedders import make_embedder

    engine = FaceEngine(embedder=make_embedder(args.embedder))
    gallery = Gallery.from_paths(args.target, engine, strict=args.strict_reference)
    bars = _Bars(info.frame_count, enabled=not args.quiet)
    try:
        report = verify(
            args.video,
            gallery,
            engine=engine,
            tolerance=args.tolerance,
            all_frames=args.all_frames,
            progress=bars,
        )
    finally:
        bars.close()
    if args.report:
        report.save(args.report)
    video = printable(args.video)
    for hit in report.matches:
        print(
            f"{video}: frame {hit.frame} at {hit.time:.3f} s: {printable(hit.identity)} at distance {hit.distance:.3f}, "
            f"box {[round(v) for v in hit.box]}"
        )
    for hit in report.near:
        print(
            f"{video}: frame {hit.frame} at {hit.time:.3f} s: near {printable(hit.identity)} at distance "
            f"{hit.distance:.3f} (within {report.tolerance + report.near_margin:.2f}; check by eye), "
            f"box {[round(v) for v in hit.box]}"
        )
    verdict = "CLEAN" if not report.matches else f"TARGET FOUND in {report.frames_with_matches} frame(s)"
    print(
        f"{video}: {verdict} ({report.frames} frames checked, {report.faces_detected} faces found, "
        f"{report.faces_masked} of them masked, {report.faces_checked} compared)"
    )
    if report.stopped_early:
        print(f"{video}: stopped at the first frame with a match; --all-frames checks the rest and lists every one")
    return EXIT_OK if not report.matches else EXIT_FAILURE


def _cmd_render(args: argparse.Namespace) -> int:
    from . import media
    from .pipeline import render
    from .plan import Plan

    settings = _render_settings(args)
    plan = Plan.load(args.plan)
    info = media.probe(args.video)  # a clear error for a bad video before anything else
    out = Path(args.output) if args.output else media.default_output_path(args.video)
    media.check_output(args.video, out, overwrite=args.overwrite)
    if _wants_editor_outputs(args):
        return _run_for_editors(args, out, settings, plan_in=plan, frames=plan.frame_count)
    bars = _Bars(plan.frame_count, enabled=not args.quiet)
    try:
        result = render(plan, out, settings=settings, src=args.video, overwrite=args.overwrite,
                        progress=bars, info=info)
    finally:
        bars.close()
    if not args.quiet:
        print(f"wrote {printable(result.output)}: {result.frames} frames, {result.masked_frames} with masks",
              file=sys.stderr)
    return EXIT_OK


def _cmd_inspect(args: argparse.Namespace) -> int:
    from . import media
    from .metadata import findings

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


def _cmd_preview(args: argparse.Namespace) -> int:
    from . import media
    from .plan import Plan
    from .review import PREVIEW_ENCODE

    if sum([bool(args.target), bool(args.keep), bool(args.all), bool(args.plan)]) != 1:
        raise _UsageError("blurface preview: give exactly one of --target, --keep, --all or --plan (see --help)")
    if args.fast and args.thorough:
        raise _UsageError("blurface preview: give at most one of --fast and --thorough")
    if not 64 <= args.height <= 4320:
        raise _UsageError(f"blurface preview: --height {args.height} is out of range: use 64 to 4320")
    settings = _render_settings(args)
    encode = dataclasses.replace(PREVIEW_ENCODE, keep_metadata=settings.encode.keep_metadata)
    settings = type(settings)(effect=settings.effect, shape=settings.shape, pad=settings.pad, encode=encode)
    plan = Plan.load(args.plan) if args.plan else None
    info = media.probe(args.video)
    _check_references(args)
    out = Path(args.output) if args.output else preview_output_path(args.video)
    media.check_output(args.video, out, overwrite=args.overwrite)
    return _run_for_editors(args, out, settings, plan_in=plan, preview_height=args.height, frames=info.frame_count)


def preview_output_path(video: str | os.PathLike) -> Path:
    """``talk.mp4`` -> ``talk.preview.mp4`` beside it: a proxy is H.264 in MP4 whatever the input."""
    path = Path(video)
    return path.with_name(path.stem + ".preview.mp4")


def _wants_editor_outputs(args: argparse.Namespace) -> bool:
    return any(getattr(args, k, None) is not None for k in ("start", "end", "matte", "contact_sheet", "report"))


def _run_for_editors(
    args: argparse.Namespace, out: Path, render_settings, *, plan_in, frames: int,  # noqa: ANN001
    preview_height: int | None = None,
) -> int:
    """Excerpts, previews, mattes, contact sheets and reports: the work is in :mod:`blurface.review`."""
    from . import review

    start = None if args.start is None else review.parse_time(args.start, "--from")
    end = None if args.end is None else review.parse_time(args.end, "--to")
    if start is not None and end is not None and end <= start:
        raise _UsageError(f"blurface: --to {args.end} is not after --from {args.start}: give a later --to")
    outputs: list[str | Path] = [out] + ([args.plan] if getattr(args, "plan", None) else [])
    for option, value, suffixes in (("--matte", args.matte, (".mov", ".mkv")), ("--contact-sheet", args.contact_sheet,
                                    (".png",)), ("--report", args.report, (".json",))):
        if value is None:
            continue
        if Path(value).suffix.lower() not in suffixes:
            raise _UsageError(f"blurface: {option} {value!r} must end in {' or '.join(suffixes)}")
        _check_side_file(value, option, args, outputs=outputs)
        outputs.append(value)
    if args.report:
        _check_side_file(Path(args.report).with_suffix(".html"), "--report (HTML)", args, outputs=outputs)
    analysis = None
    if plan_in is None:
        analysis = dict(
            targets=args.target or None, keep=args.keep or None, all_faces=args.all,
            tolerance=args.tolerance, mask_unsure=args.unsure == "mask",
            analysis=_analysis(args),
            strict_reference=args.strict_reference,
        )
    # Every frame for a whole file; a range's analysis and render announce their own totals (review.expect).
    bars = _Bars(frames, enabled=not args.quiet)
    try:
        result = review.produce(
            args.video, out, plan=plan_in, analysis=analysis, start=start, end=end, settings=render_settings,
            height=preview_height, show_overlay=bool(getattr(args, "overlay", False)), matte=args.matte,
            contact_sheet=args.contact_sheet, report=args.report,
            plan_out=args.plan if plan_in is None and getattr(args, "plan", None) and args.command != "preview" else None,
            overwrite=args.overwrite, command=getattr(args, "argv", []), progress=bars,
        )
    finally:
        bars.close()
    if not args.quiet:
        extras = [f"{k} {v}" for k, v in (("matte", args.matte), ("contact sheet", args.contact_sheet),
                                          ("report", args.report)) if v]
        print(
            printable(f"wrote {result.output}: {result.frames} frames, {result.masked_frames} with masks, "
                      f"{result.tracks_line()}" + (f"; {', '.join(extras)}" if extras else "")),
            file=sys.stderr,
        )
    return EXIT_OK


# --------------------------------------------------------------------------- batch


def _batch_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="blurface batch",
        description="Mask every video of an archive folder into the same relative paths under MASKED/; "
        "resumable (a manifest in MASKED/), parallel, or on a Dask cluster.",
        epilog="Exit codes: 0 every video done, 1 some failed, 2 usage or input error, 130 interrupted "
        "(run the same command again to resume).",
    )
    p.add_argument("archive", nargs="?", help="folder to walk recursively")
    p.add_argument("-o", "--output", metavar="MASKED", help="output folder (mirrors the archive's tree)")
    p.add_argument("--status", metavar="MASKED", help="print the summary of the batch in MASKED and exit")
    p.add_argument("--retry-failed", action="store_true", help="only retry the files that failed last time")
    p.add_argument("--overwrite", action="store_true", help="replace files in MASKED that this batch did not write")
    p.add_argument("--report", metavar="CSV|JSON", help="one row per file (default MASKED/blurface-batch-report.csv)")
    run = p.add_argument_group("where to run")
    where = run.add_mutually_exclusive_group()
    where.add_argument("--jobs", type=int, metavar="N",
                       help="worker processes on this machine (default: one per two cores, ~600 MB each)")
    where.add_argument("--scheduler", metavar="tcp://HOST:8786", help="send the files to this Dask scheduler")
    _add_masking(p)
    _add_common(p)
    return p


class _BatchBar:
    """One overall bar (files, video hours, ETA) and a line per file, on stderr."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.files = self.count = 0

    def _line(self, text: str) -> None:
        if self.bar is not None:
            self.bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    # File names are escaped (blurface.text): one may carry terminal escape codes or a newline.
    def skipped(self, row) -> None:  # noqa: ANN001 - manifest.Row, imported lazily
        if self.enabled:
            self._line(f"skipped {printable(row.path)}: {one_line(row.reason or '')}")

    def started(self, todo: list, up_to_date: int) -> None:
        self.files, self.count = len(todo), 0  # videos that could not be read were reported before
        if self.enabled and todo:
            # Counted in seconds of video, shown in hours: the ETA follows video length, not file count.
            seconds = sum(r.duration or 0.0 for r in todo)
            scale, unit = (1 / 3600, "h") if seconds >= 1800 else (1 / 60, "min")
            self.bar = tqdm(total=seconds, unit_scale=scale, file=sys.stderr, desc=f"batch 0/{len(todo)} files",
                            bar_format="{desc}: {percentage:3.0f}%|{bar:20}| {n:.2f}/{total:.2f} video-" + unit +
                            " [{elapsed}<{remaining}]")

    def finished(self, row) -> None:  # noqa: ANN001
        if row.status == "done":
            if self.enabled:
                self._line(f"done    {printable(row.path)} -> {printable(row.output)}: {row.frames} frames, "
                           f"{row.masked_frames} with masks, {row.seconds:.1f} s"
                           + (f"; changed: {one_line(row.changes)}" if row.changes else ""))
        else:  # a failure is one line even with --quiet
            self._line(f"failed  {printable(row.path)}: {one_line(row.reason or '')}")
        self.count += 1
        if self.bar is not None:
            self.bar.set_description_str(f"batch {self.count}/{self.files} files", refresh=False)
            self.bar.update(row.duration or 0.0)

    def retrying(self, row, problem: str) -> None:  # noqa: ANN001
        self._line(f"retry   {printable(row.path)}: {one_line(problem)}")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _cmd_batch(args: argparse.Namespace) -> int:
    from . import batch

    if args.status:
        if args.archive or args.output:
            raise _UsageError("blurface batch: --status MASKED takes no archive and no -o")
        return _batch_status(args.status)
    if not args.archive or not args.output:
        raise _UsageError("blurface batch: give the archive folder and the output folder: blurface batch ARCHIVE -o MASKED")
    _check_masking(args)
    if args.jobs is not None and args.jobs < 1:
        raise _UsageError(f"blurface batch: --jobs {args.jobs} is not a number of workers: use 1 or more")
    if args.report and Path(args.report).suffix.lower() not in (".csv", ".json"):
        raise _UsageError(f"blurface batch: --report {args.report!r} must end in .csv or .json")
    work = batch.prepare(
        targets=args.target, keep=args.keep, all_faces=args.all, tolerance=args.tolerance,
        mask_unsure=args.unsure == "mask", analysis=_analysis(args),
        render_settings=_render_settings(args), strict_reference=args.strict_reference,
    )
    bar = _BatchBar(enabled=not args.quiet)
    try:
        summary = batch.run_batch(
            args.archive, args.output, work, jobs=args.jobs, scheduler=args.scheduler,
            retry_failed=args.retry_failed, overwrite=args.overwrite, report=args.report, events=bar,
        )
    finally:
        bar.close()
    if not args.quiet:  # as on the main command: -q leaves warnings and failures only
        print(
            f"batch: {summary.done} done, {summary.failed} failed, {summary.skipped} skipped (not video), "
            f"{summary.up_to_date} already up to date; report: {printable(summary.report)}",
            file=sys.stderr,
        )
    return EXIT_FAILURE if summary.failed else EXIT_OK


def _batch_status(folder: str) -> int:
    from .manifest import FAILED, Manifest

    manifest = Manifest(folder, create=False)
    try:
        counts = manifest.counts()
        done_s, total_s = manifest.video_seconds()
        failed = list(manifest.rows(status=FAILED))
        archive = manifest.meta("archive")
    finally:
        manifest.close()
    videos = sum(n for s, n in counts.items() if s != "skipped")
    print(f"{printable(folder)}: batch of {printable(str(archive))}")
    print(
        f"{videos} videos: {counts.get('done', 0)} done, {counts.get('failed', 0)} failed, "
        f"{counts.get('running', 0) + counts.get('pending', 0)} not done; {counts.get('skipped', 0)} other files skipped"
    )
    scale, unit = (3600, "hours") if total_s >= 1800 else (60, "minutes")
    print(f"video: {done_s / scale:.2f} of {total_s / scale:.2f} {unit} done")
    for row in failed:
        print(f"failed  {printable(row.path)}: {one_line(row.reason or '')}")
    return EXIT_FAILURE if failed else EXIT_OK


# --------------------------------------------------------------------------- review and people


def _add_decisions(p: argparse.ArgumentParser) -> None:
    who = p.add_argument_group("decisions (exactly one)")
    who.add_argument("--target", action="append", default=[], metavar="PHOTO|DIR|NPZ")
    who.add_argument("--keep", action="append", default=[], metavar="PHOTO|DIR|NPZ")
    who.add_argument("--all", action="store_true")
    who.add_argument("--plan", metavar="JSON", help="a saved plan: review it without detecting again")
    _add_matching(p)
    p.add_argument("--unsure", choices=("mask", "keep"), default="mask")
    p.add_argument("--fast", action="store_true")
    p.add_argument("--thorough", action="store_true")


def _review_parser() -> argparse.ArgumentParser:
    p = _Parser(
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
    p.add_argument("--mask", choices=("blur", "pixelate", "solid"), default="blur")
    p.add_argument("--shape", choices=("ellipse", "box"), default="ellipse")
    p.add_argument("--pad", type=float, default=None)
    _add_keep_metadata(p)
    _add_common(p)
    p.set_defaults(crf=None, preset=None)
    return p


def _people_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="blurface people",
        description="Group a video's faces into people: write a contact sheet (people.png, UNMASKED crops) and "
        "person_N.npz galleries usable with --target.",
    )
    p.add_argument("video", help="input video")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="folder for people.png and person_N.npz")
    p.add_argument("--plan", metavar="JSON", help="a saved plan of the video (default: find every face)")
    p.add_argument("--tolerance", type=float, default=None, metavar="D",
                   help="tracks closer than this (mean embedding distance) are one person "
                   "(default: the embedder's tolerance)")
    p.add_argument("--overwrite", action="store_true")
    _add_embedder(p)
    _add_common(p)
    return p


def _decided_plan(args: argparse.Namespace, bars: _Bars):  # noqa: ANN202 - Plan, imported lazily
    from .pipeline import make_plan
    from .plan import Plan

    if args.plan:
        return Plan.load(args.plan)
    return make_plan(
        args.video, targets=args.target or None, keep=args.keep or None, all_faces=args.all,
        tolerance=args.tolerance, mask_unsure=args.unsure == "mask",
        analysis=_analysis(args),
        strict_reference=args.strict_reference, progress=bars,
    )


def _cmd_review(args: argparse.Namespace) -> int:
    from . import media, server
    from .embedders import make_embedder
    from .pipeline import check_same_video

    if sum([bool(args.target), bool(args.keep), bool(args.all), bool(args.plan)]) != 1:
        raise _UsageError("blurface review: give exactly one of --target, --keep, --all or --plan (see --help)")
    if not 0 <= args.port <= 65535:
        raise _UsageError(f"blurface review: --port {args.port} is not a port: use 1 to 65535, or 0 for a free one")
    settings = _render_settings(args)
    # The port is taken first: a busy one is refused at once, not after the whole analysis.
    httpd = server.ReviewServer(None, args.port)
    session = None
    try:
        info = media.probe(args.video)
        video = Path(args.video)
        out = Path(args.output) if args.output else media.default_output_path(video)
        _check_references(args)
        # Nothing is written before Render is pressed: an existing output is checked then (ReviewSession),
        # so a review may follow the quick start; the path's other faults are refused now.
        media.check_output(video, out, overwrite=True)
        save = Path(args.save or args.plan or video.with_name(video.stem + ".plan.json"))
        # Save replaces its file by design (by default the plan under review): only where it is, is checked.
        _check_side_file(save, "--save", args, outputs=[out], overwrite=True)
        people_dir = Path(args.people_dir) if args.people_dir else video.with_name(video.stem + ".people")
        bars = _Bars(info.frame_count, enabled=not args.quiet)
        try:
            plan = _decided_plan(args, bars)
            check_same_video(info, plan)
            session = server.ReviewSession(plan, video, save_path=save, output=out, people_dir=people_dir,
                                           embedder=make_embedder(args.embedder), render_settings=settings, overwrite=args.overwrite)
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


def _cmd_people(args: argparse.Namespace) -> int:
    from . import media
    from .embedders import make_embedder
    from .pipeline import check_same_video, make_plan
    from .plan import Plan
    from .people import write_people

    if args.tolerance is not None and not 0 < args.tolerance < 2:
        raise _UsageError(f"blurface: --tolerance {args.tolerance} is out of range: use a value between 0 and 2")
    info = media.probe(args.video)
    bars = _Bars(info.frame_count, enabled=not args.quiet)
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


COMMANDS: dict[str, tuple[Callable[[], argparse.ArgumentParser], Callable[[argparse.Namespace], int]]] = {
    "blur": (_blur_parser, _cmd_blur),
    "enroll": (_enroll_parser, _cmd_enroll),
    "verify": (_verify_parser, _cmd_verify),
    "render": (_render_parser, _cmd_render),
    "inspect": (_inspect_parser, _cmd_inspect),
    "preview": (_preview_parser, _cmd_preview),
    "batch": (_batch_parser, _cmd_batch),
    "review": (_review_parser, _cmd_review),
    "people": (_people_parser, _cmd_people),
}


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
    name = argv[0] if argv and argv[0] in SUBCOMMANDS else "blur"
    if name != "blur":
        argv = argv[1:]
    if name not in ("enroll", "inspect"):  # these take several files: there ``--`` keeps its usual meaning
        argv = _video_after_double_dash(argv)
    make_parser, command = COMMANDS[name]
    debug = "--debug" in argv
    try:
        try:
            args = make_parser().parse_args(argv)
        except SystemExit as e:  # --help and --version exit through argparse
            return int(e.code or 0)
        args.command, args.argv = name, ["blurface"] + ([] if name == "blur" else [name]) + argv
        _setup_logging(args.quiet, args.debug)
        from .files import remove_stale_temp_dirs

        # Unmasked working copies a killed run left (review proxies, excerpt copies) go first.
        remove_stale_temp_dirs()
        with _signals_as_interrupt():
            return command(args)
    except _UsageError as e:
        print(one_line(f"{e}{_dash_hint(argv)}"), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        if debug:
            log.exception("details")
        print(f"blurface: interrupted by Ctrl-C (SIGINT); {_NOT_WRITTEN[name]}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Interrupted as e:
        if debug:
            log.exception("details")
        print(one_line(f"blurface: {e}; {_NOT_WRITTEN[name]}"), file=sys.stderr)
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
