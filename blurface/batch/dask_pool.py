"""A Dask cluster as the batch's pool: the same ``submit`` / ``wait`` / ``close`` as the local one."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from concurrent.futures import Future

from ..types import InputError
from .worker import Job, process_file

log = logging.getLogger(__name__)


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
