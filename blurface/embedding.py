"""Embedding face crops (a track's, spread over its life, or the tracker's), in this process or in a worker.

The caller may pass an executor (:class:`InlineExecutor`, :class:`WorkerExecutor`) to the
analysis. Without one, ``Analyser.run`` (:mod:`blurface.pipeline`) starts a worker process
itself, through :func:`default_executor`, when identities are to be decided (a gallery, and
not ``--all``) and ``AnalysisSettings.embed_process`` is on (``batch`` turns it off), and
closes it when the run ends; otherwise it embeds in its own thread.

Why the worker is a plain subprocess (``python -m blurface.embedding``) speaking
length-prefixed ``.npz`` messages over its stdin and stdout, not a
``multiprocessing`` pool:

* ``multiprocessing``'s spawn start re-imports the user's ``__main__`` script in the
  child. A library script without an ``if __name__ == "__main__":`` guard then ran
  ``blur_video`` again inside the worker and printed a 77-line ``RuntimeError``.
* Daemonic processes (Dask workers, ``ProcessPoolExecutor`` workers) may not have
  ``multiprocessing`` children: the first ``submit`` raised ``AssertionError``. A
  subprocess is allowed anywhere.
* ``.npz`` messages, no pickle: numbers only.

An embedding costs 16-25 ms of CPU a face with SFace (80 ms with dlib, GIL held); in a
worker it runs on the second core beside decoding and detection instead of stalling them.
"""

from __future__ import annotations

import io
import logging
import os
import signal
import struct
import subprocess
import sys
import queue
import threading
from collections import deque
from concurrent.futures import Future
from dataclasses import dataclass
from typing import BinaryIO, Protocol

import numpy as np

from .embedders import DEFAULT_EMBEDDER, Embedder
from .types import EMBEDDING_DIM, ProcessingError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EmbedJob:
    """Face crops to embed: one track's crops spread over its life, or faces the tracker must tell apart.

    Attributes:
        crops: ``(h, w, 3) uint8`` BGR C-contiguous face crops.
        boxes: ``(k, 4)`` float32 detector box of the face in each crop.
        landmarks: ``(k, 5, 2)`` float32 the detector's landmarks in each crop, NaN where
            unknown (the embedder then finds them itself).
    """

    crops: list[np.ndarray]
    boxes: np.ndarray
    landmarks: np.ndarray


# What the embedding code needs of an embedder: the protocol of blurface.embedders.
Embeds = Embedder


def person_distances(embeddings: np.ndarray, people: list[np.ndarray]) -> np.ndarray:
    """``(n, P)`` distance of each embedding to each person: the median over the person's photos.

    The one rule for a person's distance, used by the gallery and so by every decision.
    The median, not the minimum: the minimum falls for *everyone* as photos are added
    (more chances of a chance likeness). Measured on the hamilton audience with 5 photos
    of Obama (dlib): median distances Obama 0.648, Lin 0.731 (one photo: 0.649, 0.749);
    with the minimum Lin dropped to 0.692 and was masked as unsure.
    """
    a = np.asarray(embeddings, np.float32).reshape(-1, EMBEDDING_DIM)
    out = np.full((len(a), len(people)), np.inf, np.float32)
    for j, refs in enumerate(people):
        refs = np.asarray(refs, np.float32).reshape(-1, EMBEDDING_DIM)
        if len(a) and len(refs):
            out[:, j] = np.median(np.linalg.norm(a[:, None, :] - refs[None, :, :], axis=2), axis=1)
    return out


def embed_job(job: EmbedJob, embedder: Embeds) -> np.ndarray:
    """Embed every crop of ``job``.

    Every crop, with no early stop once the identity looks clear: a track is split
    where its crops disagree, and a stop after the first two would hide a track that
    slid onto another face later in its life.

    Returns:
        ``(k, 128)`` float32, in the order of ``job.crops``.
    """
    marks = np.asarray(job.landmarks, np.float32).reshape(-1, 5, 2)
    boxes = np.asarray(job.boxes, np.float32).reshape(-1, 4)
    out = [embedder.embed(crop, boxes[i][None], landmarks=marks[i][None])[0] for i, crop in enumerate(job.crops)]
    return np.stack(out).astype(np.float32) if out else np.zeros((0, EMBEDDING_DIM), np.float32)


class EmbedExecutor(Protocol):
    """Runs :func:`embed_job` jobs; results come back as futures, in any order of completion."""

    def submit(self, job: EmbedJob) -> Future: ...

    def close(self) -> None: ...


class InlineExecutor:
    """Runs each job at once in the calling thread. Deterministic, no process; uses one core."""

    def __init__(self, embedder: Embeds) -> None:
        self.embedder = embedder

    def submit(self, job: EmbedJob) -> Future:
        future: Future = Future()
        try:
            future.set_result(embed_job(job, self.embedder))
        except Exception as e:  # delivered like a worker's failure
            future.set_exception(e)
        return future

    def close(self) -> None:
        pass


class WorkerGone(ProcessingError):
    """The embedding worker process stopped; its unfinished jobs must be redone elsewhere."""


class WorkerExecutor:
    """Runs jobs in one ``python -m blurface.embedding NAME`` subprocess, first in, first out.

    Args:
        embedder: the name of the embedder the worker loads (see :data:`blurface.embedders.EMBEDDERS`).

    Raises:
        ProcessingError: the worker cannot be started.
    """

    def __init__(self, embedder: str = DEFAULT_EMBEDDER) -> None:
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-m", "blurface.embedding", embedder],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                # Its own session: a Ctrl-C in the terminal is the parent's to handle;
                # the parent closes the worker's stdin and the worker exits.
                start_new_session=True,
            )
        except OSError as e:
            raise ProcessingError(f"cannot start the embedding worker: {e}") from e
        self._pending: deque[Future] = deque()
        self._lock = threading.Lock()
        self._gone = False
        # Jobs go out through a writer thread: the worker reads its pipe only between jobs,
        # so writing a job's crops from the caller blocked it for up to 70 ms each.
        self._outbox: queue.Queue[dict[str, np.ndarray] | None] = queue.Queue()
        self._writer = threading.Thread(target=self._write, name="blurface-embed-writer", daemon=True)
        self._reader = threading.Thread(target=self._read, name="blurface-embed-reader", daemon=True)
        self._writer.start()
        self._reader.start()

    def submit(self, job: EmbedJob) -> Future:
        future: Future = Future()
        with self._lock:
            if self._gone:
                future.set_exception(WorkerGone("the embedding worker has stopped"))
                return future
            self._pending.append(future)
        self._outbox.put(_job_message(job))
        return future

    @property
    def idle(self) -> bool:
        """No job is waiting or running: work given now starts at once."""
        with self._lock:
            return not self._pending and not self._gone

    def _write(self) -> None:
        while (message := self._outbox.get()) is not None:
            try:
                _send(self._proc.stdin, message)  # type: ignore[arg-type]
            except (BrokenPipeError, OSError, ValueError):
                with self._lock:
                    self._fail_pending()
                return

    def _read(self) -> None:
        while True:
            message = _receive(self._proc.stdout)  # type: ignore[arg-type]
            with self._lock:
                if message is None:
                    self._fail_pending()
                    return
                future = self._pending.popleft()
            if "error" in message:
                future.set_exception(ProcessingError(f"embedding worker failed: {message['error'].item()}"))
            else:
                future.set_result(message["embeddings"])

    def _fail_pending(self) -> None:
        self._gone = True
        while self._pending:
            self._pending.popleft().set_exception(WorkerGone("the embedding worker stopped"))

    def close(self) -> None:
        with self._lock:
            self._gone = True
        self._outbox.put(None)
        self._writer.join(timeout=5)
        try:
            if self._proc.stdin:
                self._proc.stdin.close()
        except OSError:
            pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        if self._proc.stdout:
            self._proc.stdout.close()
        self._reader.join(timeout=5)


def embed_now(
    crops: list[np.ndarray], boxes: np.ndarray, landmarks: np.ndarray, embedder: Embeds,
    executor: EmbedExecutor | None,
) -> np.ndarray:
    """Embed every crop now, sharing them with ``executor``'s worker when it is idle.

    For the tracker, which needs faces embedded before it can link the frame (faces
    crossing). The worker embeds every other crop while this thread embeds the rest, so
    two or three faces cost about one embedding's wall time instead of two or three.
    Results do not depend on who embedded what: both processes give the same bits
    (``tests/test_detectors.py``), so plans stay the same whatever the timing.

    Args:
        crops: BGR C-contiguous crops, one face each.
        boxes: ``(n, 4)`` the face's detector box in each crop.
        landmarks: ``(n, 5, 2)`` its landmarks in the crop, NaN where unknown.

    Returns:
        ``(n, 128)`` float32, in the order of ``crops``.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    landmarks = np.asarray(landmarks, np.float32).reshape(-1, 5, 2)
    out = np.zeros((len(crops), EMBEDDING_DIM), np.float32)
    away = list(range(1, len(crops), 2))
    future: Future | None = None
    # Only an idle worker: one busy with a track's crops would make this thread wait.
    if away and isinstance(executor, WorkerExecutor) and executor.idle:
        future = executor.submit(EmbedJob([crops[i] for i in away], boxes[away], landmarks[away]))

    def embed_here(rows: list[int]) -> None:
        for i in rows:
            out[i] = embedder.embed(crops[i], boxes[i][None], landmarks=landmarks[i][None])[0]

    embed_here([i for i in range(len(crops)) if future is None or i not in away])
    if future is not None:
        try:
            out[away] = future.result()
        except WorkerGone as e:
            # The worker's own track jobs are redone by their owner; these are redone here.
            log.warning("%s; embedding these faces in this process", e)
            embed_here(away)
    return out


def default_executor(embedder: Embeds) -> EmbedExecutor:
    """A worker process where one can start (a second core for embeddings), else inline."""
    if (os.cpu_count() or 1) < 2:
        return InlineExecutor(embedder)
    try:
        return WorkerExecutor(getattr(embedder, "name", DEFAULT_EMBEDDER))
    except ProcessingError as e:
        log.warning("embedding in this process: %s", e)
        return InlineExecutor(embedder)


# --------------------------------------------------------------------------- wire format

_HEADER = struct.Struct("<Q")
# A job holds a few face crops (each well under 1 MB); anything near this is corruption.
_MAX_MESSAGE = 512 * 1024 * 1024


def _job_message(job: EmbedJob) -> dict[str, np.ndarray]:
    arrays = {f"crop{i}": np.ascontiguousarray(c) for i, c in enumerate(job.crops)}
    arrays["boxes"] = np.asarray(job.boxes, np.float32).reshape(-1, 4)
    arrays["landmarks"] = np.asarray(job.landmarks, np.float32).reshape(-1, 5, 2)
    return arrays


def _job_from_message(arrays: dict[str, np.ndarray]) -> EmbedJob:
    crops = [arrays[f"crop{i}"] for i in range(sum(k.startswith("crop") for k in arrays))]
    return EmbedJob(crops, arrays["boxes"], arrays["landmarks"])


def _send(stream: BinaryIO, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    stream.write(_HEADER.pack(len(data)))
    stream.write(data)
    stream.flush()


def _receive(stream: BinaryIO) -> dict[str, np.ndarray] | None:
    """The next message, or ``None`` at end of stream or on a malformed one."""
    head = stream.read(_HEADER.size)
    if len(head) < _HEADER.size:
        return None
    (size,) = _HEADER.unpack(head)
    if size > _MAX_MESSAGE:
        return None
    data = stream.read(size)
    if len(data) < size:
        return None
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {k: npz[k] for k in npz.files}


def _serve(stdin: BinaryIO, stdout: BinaryIO, embedder_name: str = DEFAULT_EMBEDDER) -> int:
    """The worker's loop: one job in, its embeddings (or one error line) out, until stdin closes."""
    import cv2

    from .embedders import make_embedder

    # The worker is the second core's job beside the analysis (which runs the detector on
    # both): one OpenCV thread for SFace, not a pool contending with it. The bits are the
    # same whatever the thread count, so plans do not depend on who embedded a face.
    cv2.setNumThreads(1)
    embedder = make_embedder(embedder_name)
    while True:
        message = _receive(stdin)
        if message is None:
            return 0
        try:
            reply = {"embeddings": embed_job(_job_from_message(message), embedder)}
        except Exception as e:  # reported to the parent, which decides what to do
            reply = {"error": np.array(f"{type(e).__name__}: {e}")}
        _send(stdout, reply)


if __name__ == "__main__":
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    sys.exit(_serve(sys.stdin.buffer, sys.stdout.buffer, *sys.argv[1:2]))
