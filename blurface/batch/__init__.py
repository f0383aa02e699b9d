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

Modules: :mod:`.settings` (what a worker gets, built by :func:`prepare`), :mod:`.archive`
(walking, probing, output names), :mod:`.worker` (the per-file job), :mod:`.local_pool`
and :mod:`.dask_pool` (where jobs run), :mod:`.client` (:func:`run_batch`).
"""

from .archive import Entry, output_path, plan_outputs, walk
from .client import Events, Summary, run_batch
from .dask_pool import DaskPool
from .local_pool import LocalPool
from .settings import WORKER_MEMORY_BYTES, WorkSettings, default_jobs, prepare
from .worker import Job, Outcome, process_file

__all__ = [
    "WORKER_MEMORY_BYTES",
    "DaskPool",
    "Entry",
    "Events",
    "Job",
    "LocalPool",
    "Outcome",
    "Summary",
    "WorkSettings",
    "default_jobs",
    "output_path",
    "plan_outputs",
    "prepare",
    "process_file",
    "run_batch",
    "walk",
]
