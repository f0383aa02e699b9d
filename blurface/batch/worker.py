"""The worker side: one file masked into a staged output, in a worker process (local or Dask).

A worker loads the face models once per process (per thread on Dask) and sends back
an :class:`Outcome`, never an exception, for anything that goes wrong with the file.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from types import FrameType

from ..text import printable
from ..types import BlurfaceError, Interrupted, Result
from .settings import WorkSettings

log = logging.getLogger(__name__)


# What a worker reports when the file's path does not exist where it runs.
SHARED_PATHS_HINT = "every worker must see the archive and the output folder at the same paths (shared storage)"


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
        from ..detectors import make_detector
        from ..embedders import make_embedder
        from ..faces import FaceEngine

        cached = _engines.engine = FaceEngine(detector=make_detector(threshold=threshold),
                                              embedder=make_embedder(embedder))
    return cached


def init_local_worker(threshold: float, embedder: str, parent: int) -> None:
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
    worker = f"{socket.gethostname()}:{os.getpid()}"
    outcome = Outcome(job.rel, worker=worker)
    if not os.path.exists(job.src):
        outcome.error = f"{job.src}: not found on worker {worker}: {SHARED_PATHS_HINT}"
        outcome.unseen = job.src
        return outcome
    if not os.path.isdir(os.path.dirname(job.staged)):
        outcome.error = f"{os.path.dirname(job.staged)}: output folder not found on worker {worker}: {SHARED_PATHS_HINT}"
        outcome.unseen = os.path.dirname(job.staged)
        return outcome

    global _busy
    started = time.perf_counter()
    _busy = True
    try:
        result = _mask(job)
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


def _mask(job: Job) -> Result:
    """Analyse ``job.src`` and render it into ``job.staged``: the job's one call into the pipeline.

    The staged file is the worker's own (a fresh name); the client moves it onto the output.
    The face models stay loaded from file to file (``_engine``).
    """
    from ..pipeline import Outputs, Request, Who, run

    work = job.work
    decision = work.decision
    request = Request(
        source=job.src, outputs=Outputs(video=job.staged), who=Who(decision.mode, work.gallery()),  # type: ignore[attr-defined]
        analysis=work.analysis, tolerance=decision.tolerance, mask_unsure=decision.mask_unsure,  # type: ignore[attr-defined]
        render=work.render, overwrite=True,  # type: ignore[arg-type]
    )
    return run(request, engine=_engine(*work.models()))
