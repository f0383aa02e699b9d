"""Local worker processes: a ``ProcessPoolExecutor`` that starts new workers when one dies."""

from __future__ import annotations

import logging
import multiprocessing as mp
import os
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor
from concurrent.futures import wait as futures_wait
from concurrent.futures.process import BrokenProcessPool

from .settings import WorkSettings
from .worker import Job, init_local_worker, process_file

log = logging.getLogger(__name__)


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
            initializer=init_local_worker,
            initargs=(*self._work.models(), os.getpid()),
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
