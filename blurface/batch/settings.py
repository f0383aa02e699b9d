"""What a batch worker needs besides the file, built once by the client; and how many workers to start."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, replace

import numpy as np


# Peak RSS of one worker on 720p (README "Speed": 347 MB for blurface on 720p, 498 MB
# on 1080p) plus the pool's own process: the default job count leaves this much per worker.
WORKER_MEMORY_BYTES = 600 * 2**20


@dataclass(frozen=True)
class WorkSettings:
    """Everything a worker needs besides the file: plain numbers and strings, cheap to send.

    Attributes:
        analysis: :class:`~blurface.pipeline.AnalysisSettings`; ``embed_process`` is off
            (worker processes are daemonic on Dask, and the batch already uses every core).
        decision: :class:`~blurface.decisions.DecisionSettings`.
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
        from ..embedders import embedder_settings
        from ..gallery import Gallery, Person, embedder_tag

        tag = embedder_tag(embedder_settings(self.analysis.embedder))  # type: ignore[attr-defined]
        return Gallery([Person(n, e, ["batch"]) for n, e in zip(self.names, self.embeddings)], embedder=tag)

    def models(self) -> tuple[float, str]:
        """What picks a worker's face models: the detector's threshold and the embedder's name."""
        return self.analysis.detect_threshold, self.analysis.embedder  # type: ignore[attr-defined]

    def fingerprint(self) -> str:
        """Hash of every setting that changes an output, and of the gallery's embeddings.

        Execution knobs (detector threads, where embeddings run) change no pixel and
        are left out, so changing ``--jobs`` or moving to a cluster redoes nothing.
        """
        from ..rendering import RENDER_REVISION

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
                "render_revision": RENDER_REVISION,
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
    from ..pipeline import PRESETS, RenderSettings, Who
    from ..decisions import DecisionSettings

    settings = PRESETS[analysis] if isinstance(analysis, str) else analysis
    mode = Who.from_args(targets, keep, all_faces).mode
    refs = targets or keep
    names: tuple[str, ...] = ()
    embeddings: tuple[np.ndarray, ...] = ()
    if refs:
        from ..embedders import make_embedder
        from ..faces import FaceEngine
        from ..gallery import Gallery

        engine = FaceEngine(embedder=make_embedder(settings.embedder))  # type: ignore[attr-defined]
        gallery = Gallery.from_paths(list(refs), engine, strict=strict_reference)
        names = tuple(gallery.names)
        embeddings = tuple(np.asarray(p.embeddings, np.float32) for p in gallery.people)
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
