"""``blurface batch``: mask every video of an archive folder, resumably, in parallel or on Dask."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from ..text import one_line, printable
from .common import EXIT_FAILURE, EXIT_OK, Parser, UsageError, add_common, add_masking, analysis_from_args, check_tolerance, mask_unsure, render_settings_from_args, who_from_args


# What an interrupted run has not written, for the one line main prints.
NOT_WRITTEN = "finished outputs are kept: run the same command again to resume"


def add_parser() -> argparse.ArgumentParser:
    p = Parser(
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
    add_masking(p)
    add_common(p)
    return p


def run(args: argparse.Namespace) -> int:
    from .. import batch

    if args.status:
        if args.archive or args.output:
            raise UsageError("blurface batch: --status MASKED takes no archive and no -o")
        return _batch_status(args.status)
    if not args.archive or not args.output:
        raise UsageError("blurface batch: give the archive folder and the output folder: blurface batch ARCHIVE -o MASKED")
    who_from_args(args)
    check_tolerance(args)
    if args.jobs is not None and args.jobs < 1:
        raise UsageError(f"blurface batch: --jobs {args.jobs} is not a number of workers: use 1 or more")
    if args.report and Path(args.report).suffix.lower() not in (".csv", ".json"):
        raise UsageError(f"blurface batch: --report {args.report!r} must end in .csv or .json")
    work = batch.prepare(
        targets=args.target, keep=args.keep, all_faces=args.all, tolerance=args.tolerance,
        mask_unsure=mask_unsure(args), analysis=analysis_from_args(args),
        render_settings=render_settings_from_args(args), strict_reference=args.strict_reference,
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
    from ..manifest import FAILED, Manifest

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
