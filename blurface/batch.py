"""Batch jobs over a media archive: walk, probe, schedule per-file jobs, resume after a crash.

:func:`run_batch` walks ``ARCHIVE/``, probes every file (videos are picked by
probing, not by extension), and masks each video into the same relative path
under ``MASKED/``. The per-file jobs run in worker processes on this machine
(:class:`LocalPool`, a ``ProcessPoolExecutor``) or on a Dask cluster
(:class:`DaskPool`); both offer the same ``submit`` / ``wait`` / ``close``, so the
scheduling loop is one code path.

Who does what:

* The client (the process running :func:`run_batch`) builds the gallery once and
  sends it to the workers as numbers (names and embedding arrays), walks and probes
  the archive, and is the only writer of the manifest (:mod:`blurface.manifest`).
* A worker loads the face models once per process (per thread on Dask), then for
  each job analyses and renders into a *staged* file beside the output. The client
  moves the staged file onto the output when it records the result, so an output
  appears only once the manifest says so. A worker of a killed client never
  writes an output; local workers stop themselves once their client is gone.
* A worker that dies mid-file loses nothing: the file is handed out once more
  (on Dask, the scheduler does that, see ``allowed-failures``), then marked failed.
"""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import logging
import multiprocessing as mp
import os
import signal
import socket
import threading
import time
import unicodedata
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as futures_wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path, PurePosixPath
from types import FrameType

import numpy as np

from . import manifest as mf
from . import media
from .manifest import Manifest, Row
from .text import printable
from .types import BlurfaceError, InputError, Interrupted, MediaError, OutputError

log = logging.getLogger(__name__)

# Peak RSS of one worker on 720p (README "Speed": 347 MB for blurface on 720p, 498 MB
# on 1080p) plus the pool's own process: the default job count leaves this much per worker.
WORKER_MEMORY_BYTES = 600 * 2**20

# What a worker reports when the file's path does not exist where it runs.
_SHARED_PATHS_HINT = "every worker must see the archive and the output folder at the same paths (shared storage)"


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class WorkSettings:
    """Everything a worker needs besides the file: plain numbers and strings, cheap to send.

    Attributes:
        analysis: :class:`~blurface.pipeline.AnalysisSettings`; ``embed_process`` is off
            (worker processes are daemonic on Dask, and the batch already uses every core).
        decision: :class:`~blurface.plan.DecisionSettings`.
        render: :class:`~blurface.pipeline.RenderSettings`.
        names: the gallery's people, in order.
        embeddings: ``(m_i, 128)`` float32 per person, same order as ``names``.
    """

    analysis: object
    decision: object
    render: object
    names: tuple[str, ...] = ()
    embeddings: tuple[np.ndarray, ...] = ()

    def gallery(self):  # noqa: ANN201 - Gallery, imported lazily with the models
        from .embedders import embedder_settings
        from .gallery import Gallery, Person, embedder_tag

        tag = embedder_tag(embedder_settings(self.analysis.embedder))  # type: ignore[attr-defined]
        return Gallery([Person(n, e, ["batch"]) for n, e in zip(self.names, self.embeddings)], embedder=tag)

    def fingerprint(self) -> str:
        """Hash of every setting that changes an output, and of the gallery's embeddings.

        Execution knobs (detector threads, where embeddings run) change no pixel and
        are left out, so changing ``--jobs`` or moving to a cluster redoes nothing.
        """
        analysis = asdict(self.analysis)  # type: ignore[call-overload]
        for knob in ("threads", "embed_process"):
            analysis.pop(knob, None)
        people = [
            [n, hashlib.sha256(np.ascontiguousarray(e, np.float32).tobytes()).hexdigest()]
            for n, e in zip(self.names, self.embeddings)
        ]
        text = json.dumps(
            {
                "analysis": analysis,
                "decision": asdict(self.decision),  # type: ignore[call-overload]
                "render": asdict(self.render),  # type: ignore[call-overload]
                "gallery": people,
            },
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def prepare(
    *,
    targets: list[str | os.PathLike] | None = None,
    keep: list[str | os.PathLike] | None = None,
    all_faces: bool = False,
    tolerance: float | None = None,
    mask_unsure: bool = True,
    analysis: object = "balanced",
    render_settings: object | None = None,
    strict_reference: bool = False,
) -> WorkSettings:
    """Build the gallery once (here, in the client) and every setting a worker needs.

    Arguments as for :func:`blurface.pipeline.blur_video` (``analysis``: a preset name or
    :class:`~blurface.pipeline.AnalysisSettings`).

    Raises:
        InputError: not exactly one of ``targets``, ``keep`` and ``all_faces``.
        GalleryError: an unusable reference photo or gallery.
    """
    from .pipeline import PRESETS, RenderSettings
    from .plan import DecisionSettings

    settings = PRESETS[analysis] if isinstance(analysis, str) else analysis

    if sum([bool(targets), bool(keep), bool(all_faces)]) != 1:
        raise InputError("give exactly one of targets, keep or all_faces")
    refs = targets or keep
    names: tuple[str, ...] = ()
    embeddings: tuple[np.ndarray, ...] = ()
    if refs:
        from .embedders import make_embedder
        from .faces import FaceEngine
        from .gallery import Gallery

        engine = FaceEngine(embedder=make_embedder(settings.embedder))  # type: ignore[attr-defined]
        gallery = Gallery.from_paths(list(refs), engine, strict=strict_reference)
        names = tuple(gallery.names)
        embeddings = tuple(np.asarray(p.embeddings, np.float32) for p in gallery.people)
    mode = "target" if targets else "keep" if keep else "all"
    decision = DecisionSettings.for_embedder(
        settings.embedder, tolerance=tolerance, mode=mode, people=names, mask_unsure=mask_unsure,  # type: ignore[attr-defined]
    )
    return WorkSettings(
        analysis=replace(settings, embed_process=False),  # type: ignore[type-var]
        decision=decision,
        render=render_settings or RenderSettings(),
        names=names,
        embeddings=embeddings,
    )


def default_jobs(*, cores: int | None = None, available_bytes: int | None = None) -> int:
    """Worker processes for this machine: one per two cores, and no more than memory allows.

    One analysis already keeps two cores busy (HOG in two threads beside decoding), and
    x264 is multi-threaded, so a worker per core only adds contention: measured on 2 cores,
    ``--jobs 2`` gave no more files per minute than ``--jobs 1`` (README "Batch jobs").
    Each worker needs about :data:`WORKER_MEMORY_BYTES` at 720p.
    """
    cores = cores or _cores()
    available = available_bytes if available_bytes is not None else _available_memory()
    by_memory = max(1, available // WORKER_MEMORY_BYTES) if available else cores
    return int(max(1, min(cores // 2, by_memory)))


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _available_memory() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


# --------------------------------------------------------------------------- the worker side


@dataclass(frozen=True)
class Job:
    """One file to mask. Paths are absolute and must be the same on every worker."""

    rel: str
    src: str
    staged: str
    work: WorkSettings


@dataclass
class Outcome:
    """What a worker sends back: a result or one error line, never an exception."""

    rel: str
    error: str | None = None
    frames: int = 0
    masked_frames: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)
    worker: str = ""
    unseen: str | None = None  # a path the worker could not see (the client words the error)


_busy = False  # a file is in progress in this process (the SIGTERM handler must clean up)
_engines = threading.local()  # per thread: Dask runs several tasks of one process in threads


def _engine(threshold: float, embedder: str):  # noqa: ANN202 - FaceEngine, imported lazily
    """The face models of this worker thread, loaded on its first file only."""
    cached = getattr(_engines, "engine", None)
    if (cached is None or getattr(cached.detector, "threshold", None) != threshold
            or cached.embedder.name != embedder):
        from .detectors import make_detector
        from .embedders import make_embedder
        from .faces import FaceEngine

        cached = _engines.engine = FaceEngine(detector=make_detector(threshold=threshold),
                                              embedder=make_embedder(embedder))
    return cached


def _local_worker_init(threshold: float, embedder: str, parent: int) -> None:
    """Local pool process: Ctrl-C is the client's to handle; SIGTERM cleans up; models load now."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def stop(signum: int, frame: FrameType | None) -> None:
        if not _busy:  # idle: nothing to clean up, and no traceback for an exception nobody catches
            os._exit(0)
        raise Interrupted("batch worker stopped by SIGTERM")

    signal.signal(signal.SIGTERM, stop)
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True, name="blurface-orphan-watch").start()
    _engine(threshold, embedder)


def _exit_with_parent(parent: int) -> None:
    """End this worker soon after its client dies (SIGKILL gives the pool no chance to stop it).

    Without this an orphaned worker finishes its file and then waits forever on the
    pool's queue (it holds that pipe's write end itself, so it never sees EOF).
    SIGTERM first, so a file in progress removes its temporary output; then exit.
    """
    while os.getppid() == parent:
        time.sleep(0.2)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5.0)
    os._exit(1)


def process_file(job: Job) -> Outcome:
    """Mask one file into ``job.staged``. Runs in a worker process; returns errors as text.

    Only a dead worker makes this fail as a call (the pool or Dask reports that);
    everything that goes wrong with the file itself comes back as ``Outcome.error``.
    """
    from .pipeline import analyse, render

    worker = f"{socket.gethostname()}:{os.getpid()}"
    outcome = Outcome(job.rel, worker=worker)
    if not os.path.exists(job.src):
        outcome.error = f"{job.src}: not found on worker {worker}: {_SHARED_PATHS_HINT}"
        outcome.unseen = job.src
        return outcome
    if not os.path.isdir(os.path.dirname(job.staged)):
        outcome.error = f"{os.path.dirname(job.staged)}: output folder not found on worker {worker}: {_SHARED_PATHS_HINT}"
        outcome.unseen = os.path.dirname(job.staged)
        return outcome

    global _busy
    work = job.work
    started = time.perf_counter()
    _busy = True
    try:
        engine = _engine(work.analysis.detect_threshold, work.analysis.embedder)  # type: ignore[attr-defined]
        plan = analyse(
            job.src, gallery=work.gallery(), decision=work.decision, settings=work.analysis,  # type: ignore[arg-type]
            engine=engine,
        )
        result = render(plan, job.staged, settings=work.render, overwrite=True)  # type: ignore[arg-type]
    except BlurfaceError as e:
        # Errors name the file first; the report and the line name it already.
        outcome.error = " ".join(str(e).removeprefix(f"{job.src}: ").splitlines())
    except MemoryError:
        outcome.error = "out of memory: run fewer jobs per machine (--jobs) or use --fast"
    except Exception as e:  # noqa: BLE001 - one bad file must not stop the batch
        log.debug("unexpected error on %s", printable(job.src), exc_info=True)
        outcome.error = " ".join(f"unexpected {type(e).__name__}: {e}".splitlines())
    else:
        outcome.frames, outcome.masked_frames = result.frames, result.masked_frames
        outcome.warnings = list(result.warnings)
    finally:
        _busy = False
    outcome.seconds = time.perf_counter() - started
    return outcome


# --------------------------------------------------------------------------- executors


class LocalPool:
    """Worker processes on this machine, each loading the models once (its initializer)."""

    def __init__(self, jobs: int, work: WorkSettings) -> None:
        self.capacity = jobs
        self._work = work
        self._owner: dict[Future, ProcessPoolExecutor] = {}
        self._pool = self._start()

    def _start(self) -> ProcessPoolExecutor:
        # spawn: a fresh interpreter, no copied threads or locks of the client.
        return ProcessPoolExecutor(
            max_workers=self.capacity,
            mp_context=mp.get_context("spawn"),
            initializer=_local_worker_init,
            initargs=(self._work.analysis.detect_threshold, self._work.analysis.embedder,  # type: ignore[attr-defined]
                      os.getpid()),
        )

    def submit(self, job: Job) -> Future:
        future = self._pool.submit(process_file, job)
        self._owner[future] = self._pool
        return future

    def wait(self, futures: Iterable[Future]) -> set[Future]:
        return set(futures_wait(list(futures), return_when=FIRST_COMPLETED).done)

    def retries(self, future: Future) -> int:
        """Tries of this job beyond the one submitted: none here (a dead worker's file is submitted again)."""
        return 0

    def lost(self, future: Future, error: BaseException) -> bool:
        """Whether ``error`` means a worker died (then the file may be tried again).

        A dead worker breaks the whole pool: every file in it fails with
        ``BrokenProcessPool``. The first such failure starts a new pool.
        """
        owner = self._owner.pop(future, None)
        if not isinstance(error, BrokenProcessPool):
            return False
        if owner is self._pool:
            log.warning("a batch worker process died; starting new ones")
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = self._start()
        return True

    def close(self, *, cancel: bool = False) -> None:
        if not cancel:
            self._pool.shutdown(wait=True)
            return
        self._owner.clear()
        # Stop running files now (their SIGTERM handler removes the temporary file);
        # shutdown alone would wait for them to finish.
        processes = list(getattr(self._pool, "_processes", {}).values())
        self._pool.shutdown(wait=False, cancel_futures=True)
        for p in processes:
            p.terminate()
        for p in processes:
            p.join(timeout=10)


class DaskPool:
    """A Dask cluster at ``address``: the same submit/wait as :class:`LocalPool`.

    Dask reschedules the task of a worker that died on another worker, up to the
    scheduler's ``distributed.scheduler.allowed-failures`` times (default 3; set it to 1
    for "retried once"), then reports ``KilledWorker``.
    """

    def __init__(self, address: str) -> None:
        try:
            from distributed import Client
        except ImportError as e:
            raise InputError("--scheduler needs Dask: pip install 'blurface[distributed]'") from e
        try:
            self._client = Client(address, timeout=15)
        except (OSError, TimeoutError) as e:
            raise InputError(f"cannot reach the Dask scheduler at {address!r} ({e}): start it with 'dask scheduler'") from e

    @property
    def capacity(self) -> int:
        # Workers may join or leave during a long batch: asked again at each submit.
        return max(1, sum(self._client.nthreads().values()))

    def submit(self, job: Job) -> Future:
        # pure=False: a resubmitted file is a new task, never a cached result.
        return self._client.submit(process_file, job, key=f"blurface-{uuid.uuid4().hex}", pure=False)

    def wait(self, futures: Iterable[Future]) -> set[Future]:
        from distributed import wait

        return set(wait(list(futures), return_when="FIRST_COMPLETED").done)

    def retries(self, future: Future) -> int:
        """Tries of this finished job beyond the one submitted: the scheduler's own retries.

        When a worker dies holding a task, the scheduler counts it (``suspicious``) and
        hands the task to another worker, unseen by the client. Every such death was a
        try; after ``KilledWorker`` the last death was the last try, so one less.
        Asked while the future is held (the scheduler forgets released tasks).
        """
        from distributed import KilledWorker

        key = future.key

        def deaths(dask_scheduler) -> int:  # noqa: ANN001 - runs on the scheduler, by value (Dask serialises the function)
            task = dask_scheduler.tasks.get(key)
            return 0 if task is None else int(task.suspicious)

        try:
            died = int(self._client.run_on_scheduler(deaths))
        except Exception as e:  # noqa: BLE001 - a count for the report must not fail the file
            log.debug("could not ask the scheduler how often %s was retried: %s", key, e)
            return 0
        killed = future.status == "error" and isinstance(future.exception(), KilledWorker)
        return max(0, died - 1) if killed else died

    def lost(self, future: Future, error: BaseException) -> bool:
        """Whether to try the file again: not after ``KilledWorker`` (the scheduler already did)."""
        from distributed import KilledWorker

        return not isinstance(error, KilledWorker)

    def close(self, *, cancel: bool = False) -> None:
        self._client.close()


# --------------------------------------------------------------------------- walking


@dataclass
class Entry:
    """One file found in the archive."""

    rel: str
    path: Path
    row: Row
    final: Path | None = None  # the output, for videos
    stale: Path | None = None  # its output of an earlier run under another name: removed once redone


def output_path(out_dir: Path, rel: str) -> tuple[Path, str | None]:
    """Where ``rel`` goes under ``out_dir`` by its name alone, and the container change, if any.

    MP4, MOV and MKV keep their name; anything else gets ``.mp4`` appended
    (``clip.avi`` -> ``clip.avi.mp4``). Two inputs may still meet there: see :func:`plan_outputs`.
    """
    target = out_dir / rel
    if target.suffix.lower() in media.OUTPUT_FORMATS:
        return target, None
    was = target.suffix.lstrip(".") or "(no extension)"
    return target.with_name(target.name + ".mp4"), f"container {was} -> mp4 (blurface writes mp4, mov or mkv)"


def _output_key(rel_out: str) -> str:
    """Names that are one file somewhere: case (macOS, Windows, SMB shares) and Unicode normal form (macOS)."""
    return unicodedata.normalize("NFC", rel_out).casefold()


def plan_outputs(out_dir: Path, rels: Iterable[str]) -> dict[str, tuple[Path, str | None]]:
    """The output of every video ``rel`` under ``out_dir``, no two the same: ``rel -> (output, change)``.

    Decided for the whole archive before any work. By name, ``clip.avi`` goes to
    ``clip.avi.mp4``, which a real ``clip.avi.mp4`` keeps too; then both said ``done``
    and one output was lost. Names that differ only in case or Unicode form count as
    one (they are one file on macOS, Windows and most network shares), and a file may
    not take the name of a folder other outputs need. Rule: the file whose own name is
    its output keeps it, then the first in sorted order; each other gets `` (2)``,
    `` (3)``, ... before its extension (``clip.avi (2).mp4``), which ``change`` says.
    The rule depends only on the archive's names, so reruns plan the same outputs.
    """
    natural = {rel: output_path(out_dir, rel) for rel in rels}
    owner: dict[str, str] = {}  # output key -> what holds it
    for final, _ in natural.values():
        for folder in PurePosixPath(final.relative_to(out_dir).as_posix()).parents:
            if str(folder) != ".":
                owner.setdefault(_output_key(str(folder)), f"the folder {folder}")
    plan: dict[str, tuple[Path, str | None]] = {}
    losers = []
    for rel in sorted(natural, key=lambda r: (natural[r][1] is not None, r)):  # kept names first
        final, change = natural[rel]
        key = _output_key(final.relative_to(out_dir).as_posix())
        if key in owner:
            losers.append(rel)
        else:
            owner[key] = f"the output of {rel}"
            plan[rel] = natural[rel]
    for rel in losers:
        final, change = natural[rel]
        taken = owner[_output_key(final.relative_to(out_dir).as_posix())]
        n = 2
        while True:
            candidate = final.with_name(f"{final.stem} ({n}){final.suffix}")
            key = _output_key(candidate.relative_to(out_dir).as_posix())
            if key not in owner:
                break
            n += 1
        owner[key] = f"the output of {rel}"
        renamed = f"output named {candidate.name}: {final.name} is {taken}"
        log.warning("%s: %s", printable(rel), printable(renamed))
        plan[rel] = (candidate, "; ".join(c for c in (change, renamed) if c))
    return plan


def walk(archive: Path, out_dir: Path) -> Iterable[tuple[str, Path]]:
    """Every file under ``archive``, sorted, as (relative '/' path, path); skips ``out_dir``."""
    skip = os.path.realpath(out_dir)
    for root, dirs, files in os.walk(archive):
        dirs[:] = sorted(d for d in dirs if os.path.realpath(os.path.join(root, d)) != skip)
        for name in sorted(files):
            path = Path(root, name)
            yield path.relative_to(archive).as_posix(), path


def _unreadable(row: Row) -> bool:
    """A video (by extension or signature) that could not be probed: failed before any work."""
    return row.is_video and row.status == mf.FAILED and row.duration is None


def _probe_row(rel: str, path: Path, known: Row | None) -> Row:
    """The manifest row for ``path``: probed again when its size or mtime changed, or it was unreadable.

    What is not a video is skipped; a video that cannot be read is failed (see :func:`_probe_failure`).
    """
    try:
        st = path.stat()
    except OSError as e:  # vanished since the walk, or a broken link
        row = Row(path=rel, size=-1, mtime_ns=-1, is_video=False, status=mf.SKIPPED, reason=f"cannot read it: {e.strerror}")
        if known is not None:
            row.output = known.output  # removed by the caller: no input, no output
        return row
    if known is not None and (known.size, known.mtime_ns) == (st.st_size, st.st_mtime_ns) and not _unreadable(known):
        return known
    row = Row(path=rel, size=st.st_size, mtime_ns=st.st_mtime_ns, is_video=True)
    try:
        info = media.probe(path)
    except MediaError as e:
        # The probe names the file first; the report has its own column for that.
        _probe_failure(row, path, str(e).removeprefix(f"{path}: "), readable=isinstance(e, media.NotVideoError))
    except Exception as e:  # noqa: BLE001 - one odd file must not stop the walk
        reason = " ".join(f"could not be probed ({type(e).__name__}: {e})".splitlines())
        _probe_failure(row, path, reason, readable=False)
    else:
        row.duration, row.frame_count = info.duration, info.frame_count
    if known is not None:  # keep the history: a changed file is redone, not forgotten
        row.attempts, row.completions, row.output = known.attempts, known.completions, known.output
    return row


def _probe_failure(row: Row, path: Path, reason: str, *, readable: bool) -> None:
    """Skip what is not a video; fail a video that cannot be read.

    Read and found without video (audio only, a still image): skipped. Unreadable and
    meant to be a video (a video extension or container signature: a truncated copy, a
    damaged card): failed, so the batch exits 1 and its earlier output is removed, never
    passed off as current. Unreadable and neither: not media at all, skipped.
    """
    row.reason = reason
    if not readable and media.looks_like_video(path):
        row.is_video, row.status = True, mf.FAILED
    else:
        row.is_video, row.status = False, mf.SKIPPED


# --------------------------------------------------------------------------- the client


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
            row = _probe_row(rel, path, manifest.get(rel))
            manifest.put(row)
            entries.append(Entry(rel, path, row))
        planned = plan_outputs(out_dir, [e.rel for e in entries if e.row.is_video and not _unreadable(e.row)])
        planned_names = {final.relative_to(out_dir).as_posix() for final, _ in planned.values()}
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
            if not row.is_video or _unreadable(row):
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
            name = entry.final.relative_to(out_dir).as_posix()
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
                try:
                    os.unlink(os.path.join(root, name))
                    log.info("removed stale file %s", printable(os.path.join(root, name)))
                except OSError as e:
                    log.warning("could not remove stale file %s: %s", printable(os.path.join(root, name)), e)


def _remove_output(row: Row, out_dir: Path, planned: set[str]) -> None:
    """Forget (and delete) the output of a file that no longer gives one: it would pass for current.

    Left alone when the same name is now another video's output (that one replaces it).
    """
    if row.output is None:
        return
    if row.output not in planned:
        final = out_dir / row.output
        try:
            final.unlink(missing_ok=True)
            log.info("removed %s: its input %s no longer gives an output", printable(str(final)), printable(row.path))
        except OSError as e:
            log.warning("could not remove the outdated output %s: %s", printable(str(final)), e)
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
        if entry.final.exists() and not overwrite and entry.final.relative_to(out_dir).as_posix() not in owned:
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
        row.output = entry.final.relative_to(out_dir).as_posix()
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
        with _interrupts_deferred():
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
def _interrupts_deferred() -> Iterator[None]:
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
        try:
            p.unlink(missing_ok=True)
        except OSError as e:
            log.warning("could not remove temporary file %s: %s", printable(str(p)), e)


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
        try:
            entry.final.unlink()
        except OSError as e:
            log.warning("could not remove the outdated output %s: %s", printable(str(entry.final)), e)
    row.output = None
    _remove_stale(entry)
    manifest.put(row)
    _discard(staged, staged_too=True)
    summary.failed += 1
    events.finished(row)


def _remove_stale(entry: Entry) -> None:
    """The file's output of an earlier run, under a name it no longer has (see :func:`plan_outputs`)."""
    if entry.stale is not None:
        try:
            entry.stale.unlink(missing_ok=True)
        except OSError as e:
            log.warning("could not remove the outdated output %s: %s", printable(str(entry.stale)), e)


def _unseen(path: str, worker: str) -> str:
    """The error for a path a worker could not see, checked against what this machine sees."""
    if os.path.exists(path):
        return (
            f"{path}: not found on worker {worker}, though the machine running 'blurface batch' sees it: "
            f"{_SHARED_PATHS_HINT}"
        )
    return f"{path}: vanished while the batch ran: it is no longer there"
