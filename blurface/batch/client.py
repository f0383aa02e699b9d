"""The client: the only writer of the manifest; schedules the per-file jobs and records what they give.

The client moves a staged output onto its final name only when it records the result,
so an output appears only once the manifest says so.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import signal
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

from .. import manifest as mf
from ..manifest import Manifest, Row
from ..text import printable
from ..types import InputError, OutputError
from .archive import Entry, output_name, plan_outputs, probe_row, unreadable, walk
from .dask_pool import DaskPool
from .local_pool import LocalPool
from .settings import WorkSettings, default_jobs
from .worker import SHARED_PATHS_HINT, Job, Outcome

log = logging.getLogger(__name__)


class Events:
    """What :func:`run_batch` reports as it goes; the CLI draws bars and lines from it."""

    def skipped(self, row: Row) -> None: ...

    def started(self, todo: list[Row], up_to_date: int) -> None: ...

    def finished(self, row: Row) -> None:
        """``row`` is done or failed; videos that cannot be read fail before :meth:`started`."""

    def retrying(self, row: Row, problem: str) -> None: ...


@dataclass
class Summary:
    done: int = 0
    failed: int = 0
    skipped: int = 0
    up_to_date: int = 0
    report: str = ""
    rows: list[Row] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def run_batch(
    archive: str | os.PathLike,
    out_dir: str | os.PathLike,
    work: WorkSettings,
    *,
    jobs: int | None = None,
    scheduler: str | None = None,
    retry_failed: bool = False,
    overwrite: bool = False,
    report: str | os.PathLike | None = None,
    events: Events | None = None,
) -> Summary:
    """Mask every video of ``archive`` into the same relative path under ``out_dir``.

    Redoes only what is missing, failed or changed (input size or mtime, settings or
    gallery) since the last run into ``out_dir``; with ``retry_failed``, only what failed.
    Per-file failures are recorded and never stop the batch.

    Args:
        jobs: local worker processes (default :func:`default_jobs`).
        scheduler: a Dask scheduler address (``tcp://host:8786``) instead of local workers.
        overwrite: replace outputs the manifest does not know as its own.
        report: CSV or JSON (by extension) with one row per file; default
            ``out_dir/blurface-batch-report.csv``.

    Raises:
        InputError: ``archive`` is not a folder, or ``out_dir`` is inside no folder.
        OutputError: ``out_dir`` is unusable, or holds another archive's manifest or a
            running batch.
        KeyboardInterrupt, Interrupted: after stopping the workers; finished outputs are
            kept and the next run resumes.
    """
    archive, out_dir = Path(archive), Path(out_dir)
    events = events or Events()
    _check_folders(archive, out_dir)
    # Reach the cluster before anything is written, so a wrong address costs nothing.
    pool: LocalPool | DaskPool | None = DaskPool(scheduler) if scheduler else None
    try:
        out_dir.mkdir(exist_ok=True)
        manifest = Manifest(out_dir)
    except BaseException:
        if pool is not None:
            pool.close()
        raise
    try:
        manifest.lock()
        _claim(manifest, archive)
        moved = manifest.recover(out_dir)
        if moved:
            log.info("moved %d output(s) committed by a killed run into place", len(moved))
        _remove_stale_files(out_dir)
        fingerprint = work.fingerprint()
        summary = Summary(report=str(report or out_dir / mf.REPORT_NAME))
        entries = []
        for rel, path in walk(archive, out_dir):
            try:
                rel.encode("utf-8")
            except UnicodeEncodeError:
                log.warning("%r: file name is not valid UTF-8: rename it to include it in the batch", rel)
                continue
            row = probe_row(rel, path, manifest.get(rel))
            manifest.put(row)
            entries.append(Entry(rel, path, row))
        planned = plan_outputs(out_dir, [e.rel for e in entries if e.row.is_video and not unreadable(e.row)])
        planned_names = {output_name(out_dir, final) for final, _ in planned.values()}
        # What this batch wrote (any row, any run): replaceable without --overwrite.
        owned = set()
        found = {e.rel for e in entries}
        for r in manifest.rows():
            if r.output:
                owned.add(r.output)
                if r.path not in found and r.output in planned_names:  # a gone input's output, now another's
                    r.output = r.output_size = None
                    manifest.put(r)
        # An output two files claim (collisions before outputs were planned) is redone.
        recorded = Counter(e.row.output for e in entries if e.row.output)
        todo = []
        for entry in entries:
            row = entry.row
            if not row.is_video or unreadable(row):
                _remove_output(row, out_dir, planned_names)
                manifest.put(row)
                if row.is_video:
                    summary.failed += 1
                    events.finished(row)
                else:
                    summary.skipped += 1
                    events.skipped(row)
                continue
            entry.final, change = planned[entry.rel]
            name = output_name(out_dir, entry.final)
            if row.output is not None and row.output != name and row.output not in planned_names:
                entry.stale = out_dir / row.output
            if (_up_to_date(row, fingerprint, out_dir) and row.output == name and recorded[name] == 1) or (
                retry_failed and row.status != mf.FAILED
            ):
                summary.up_to_date += row.status == mf.DONE
                continue
            row.changes = change
            todo.append(entry)
        events.started([e.row for e in todo], summary.up_to_date)
        if todo:
            pool = pool or LocalPool(jobs or default_jobs(), work)
            _schedule(pool, manifest, todo, work, fingerprint, out_dir, overwrite, owned, events, summary)
        summary.rows = [e.row for e in entries]
        mf.write_report(summary.rows, summary.report)
        return summary
    finally:
        if pool is not None:
            pool.close()  # after an interrupt _schedule already stopped it; closing again is harmless
        manifest.close()


def _check_folders(archive: Path, out_dir: Path) -> None:
    if not archive.is_dir():
        raise InputError(f"{archive}: is not a folder: give the archive folder to walk")
    a, o = os.path.realpath(archive), os.path.realpath(out_dir)
    if a == o:
        raise InputError(f"{out_dir}: is the archive itself: give another output folder (-o)")
    if (a + os.sep).startswith(o + os.sep):
        raise InputError(f"{out_dir}: holds the archive {archive}: give an output folder outside it (-o)")
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputError(f"{out_dir}: is a file, not a folder: give a folder for the outputs (-o)")
    if not out_dir.parent.is_dir():
        raise OutputError(f"{out_dir.parent}: does not exist: create it first, or choose another output folder")


def _claim(manifest: Manifest, archive: Path) -> None:
    """Record which archive this output folder mirrors; refuse to mix two archives in one."""
    mine = os.path.realpath(archive)
    known = manifest.meta("archive")
    if known is None:
        manifest.set_meta("archive", mine)
    elif known != mine:
        raise OutputError(
            f"{manifest.path.parent}: holds the batch of another archive ({known}): choose another output folder"
        )


def _remove_stale_files(out_dir: Path) -> None:
    """Staged and temporary files of killed runs: never outputs, so safe to delete.

    The manifest lock guarantees no batch of ours is writing them now.
    """
    for root, _, files in os.walk(out_dir):
        for name in files:
            if name.startswith(".") and (".blurface-batch-" in name or ".blurface-tmp-" in name):
                path = os.path.join(root, name)
                if _remove(Path(path), "stale file"):
                    log.info("removed stale file %s", printable(path))


def _remove_output(row: Row, out_dir: Path, planned: set[str]) -> None:
    """Forget (and delete) the output of a file that no longer gives one: it would pass for current.

    Left alone when the same name is now another video's output (that one replaces it).
    """
    if row.output is None:
        return
    if row.output not in planned:
        final = out_dir / row.output
        if _remove(final, "the outdated output"):
            log.info("removed %s: its input %s no longer gives an output", printable(str(final)), printable(row.path))
    row.output = row.output_size = None


def _up_to_date(row: Row, fingerprint: str, out_dir: Path) -> bool:
    if row.status != mf.DONE or row.fingerprint != fingerprint or row.output is None:
        return False
    final = out_dir / row.output
    return final.is_file() and final.stat().st_size == row.output_size


def _staged_path(final: Path) -> Path:
    return final.with_name(f".{final.name}.blurface-batch-{uuid.uuid4().hex[:8]}{final.suffix}")


def _schedule(
    pool: LocalPool | DaskPool,
    manifest: Manifest,
    todo: list[Entry],
    work: WorkSettings,
    fingerprint: str,
    out_dir: Path,
    overwrite: bool,
    owned: set[str],
    events: Events,
    summary: Summary,
) -> None:
    """Keep every worker busy with one file (and one queued); record results as they come.

    ``owned``: outputs (relative to ``out_dir``) the manifest records as written by this batch.
    """
    queue = list(reversed(todo))
    running: dict[Future, tuple[Entry, Path]] = {}
    retried: set[str] = set()

    def submit(entry: Entry) -> None:
        row = entry.row
        assert entry.final is not None
        if entry.final.exists() and not overwrite and output_name(out_dir, entry.final) not in owned:
            row.status, row.reason = mf.FAILED, f"{entry.final} exists and is not from this batch: use --overwrite to replace it"
            if entry.stale is not None:  # its earlier output, under the name it had: not current either
                _remove_stale(entry)
                row.output = row.output_size = None
            manifest.put(row)
            summary.failed += 1
            events.finished(row)
            return
        entry.final.parent.mkdir(parents=True, exist_ok=True)
        staged = _staged_path(entry.final)
        row.status, row.fingerprint, row.reason = mf.RUNNING, fingerprint, None
        row.output = output_name(out_dir, entry.final)
        row.attempts += 1
        manifest.put(row)
        # Absolute paths, resolved here: a worker's working folder is its own (a relative
        # path failed every file with "not found on worker").
        future = pool.submit(Job(entry.rel, os.path.abspath(entry.path), os.path.abspath(staged), work))
        running[future] = (entry, staged)

    try:
        while queue or running:
            while queue and len(running) < pool.capacity + 1:
                submit(queue.pop())
            if running:
                _collect(pool, manifest, running, queue, retried, summary, events)
    except BaseException:
        # Interrupted (or the client failed): stop the workers, then drop what they left.
        pool.close(cancel=True)
        for entry, staged in running.values():
            _discard(staged, staged_too=True)
            entry.row.status = mf.PENDING
            manifest.put(entry.row)
        raise


def _collect(
    pool: LocalPool | DaskPool,
    manifest: Manifest,
    running: dict[Future, tuple[Entry, Path]],
    queue: list[Entry],
    retried: set[str],
    summary: Summary,
    events: Events,
) -> None:
    """Wait for at least one job; record each finished one, or queue it again once if its worker died."""
    for future in pool.wait(running):
        # Taking a job off ``running`` and recording it is one step: a Ctrl-C between the
        # two left its staged output behind, out of reach of the interrupt's clean-up
        # (seen once in tests/test_batch.py's SIGTERM test).
        with interrupts_deferred():
            entry, staged = running.pop(future)
            entry.row.attempts += pool.retries(future)
            try:
                outcome: Outcome = future.result()
            except Exception as e:  # noqa: BLE001 - the worker died; the file itself may be fine
                problem = f"a worker died while processing it ({type(e).__name__}: {e})"
                _discard(staged, staged_too=True)
                if pool.lost(future, e) and entry.rel not in retried:
                    retried.add(entry.rel)
                    events.retrying(entry.row, problem)
                    queue.append(entry)
                    continue
                outcome = Outcome(entry.rel, error=problem)
            _record(manifest, entry, staged, outcome, summary, events)


@contextlib.contextmanager
def interrupts_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block is done, then deliver them as they came.

    Python-level, not ``pthread_sigmask``: the pool's own threads would still take the
    signal and have the main thread run its handler.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def note(signum: int, frame: FrameType | None) -> None:
        caught.append(signum)

    wanted = [signal.SIGINT, signal.SIGTERM]
    before = {sig: signal.signal(sig, note) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in before.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)  # to the handler it would have reached


def _discard(staged: Path, *, staged_too: bool) -> None:
    """Remove what a finished or lost job left: temporary files of its staged output.

    A worker that died mid-file (and, on Dask, the one that took the file over) wrote
    ``.STAGED.blurface-tmp-PID``; once the job is over, none of them is still needed.
    """
    names = [p for p in staged.parent.glob(f".{glob.escape(staged.name)}.blurface-tmp-*")]
    if staged_too:
        names.append(staged)
    for p in names:
        _remove(p, "temporary file")


def _record(manifest: Manifest, entry: Entry, staged: Path, outcome: Outcome, summary: Summary, events: Events) -> None:
    _discard(staged, staged_too=False)
    row = entry.row
    row.worker, row.seconds = outcome.worker or None, round(outcome.seconds, 3)
    if outcome.unseen is not None:
        outcome.error = _unseen(outcome.unseen, outcome.worker)
    if outcome.error is None:
        row.frames, row.masked_frames, row.reason = outcome.frames, outcome.masked_frames, None
        changes = [c for c in [row.changes, *outcome.warnings] if c]
        row.changes = "; ".join(changes) or None
        try:
            assert entry.final is not None
            manifest.commit_output(row, staged, entry.final)
        except OSError as e:
            outcome.error = f"cannot move the finished output into place: {e.strerror or e}"
        else:
            _remove_stale(entry)
            summary.done += 1
            events.finished(row)
            return
    row.status, row.reason = mf.FAILED, outcome.error
    row.frames = row.masked_frames = None
    # An earlier output of this file was made from other settings or another version
    # of the input (else it would not be redone): keeping it would pass it off as current.
    if row.output is not None and entry.final is not None and entry.final.is_file():
        _remove(entry.final, "the outdated output")
    row.output = None
    _remove_stale(entry)
    manifest.put(row)
    _discard(staged, staged_too=True)
    summary.failed += 1
    events.finished(row)


def _remove_stale(entry: Entry) -> None:
    """The file's output of an earlier run, under a name it no longer has (see :func:`plan_outputs`)."""
    if entry.stale is not None:
        _remove(entry.stale, "the outdated output")


def _remove(path: Path, what: str) -> bool:
    """Delete ``path`` if it is there; a failure is a warning naming ``what`` it was, never an error."""
    try:
        path.unlink(missing_ok=True)
    except OSError as e:
        log.warning("could not remove %s %s: %s", what, printable(str(path)), e)
        return False
    return True


def _unseen(path: str, worker: str) -> str:
    """The error for a path a worker could not see, checked against what this machine sees."""
    if os.path.exists(path):
        return (
            f"{path}: not found on worker {worker}, though the machine running 'blurface batch' sees it: "
            f"{SHARED_PATHS_HINT}"
        )
    return f"{path}: vanished while the batch ran: it is no longer there"
