"""What an analysis is asked to do: whom to mask (:class:`Who`), its settings and presets, and the scales they set.

Shared by the composer (:mod:`blurface.pipeline`), the analysis stage (:mod:`blurface.analysis`),
batch workers and the CLI, none of which needs the analysis loop itself to read them.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

from .embedders import DEFAULT_EMBEDDER
from .gallery import Gallery
from .types import InputError, Mode

@dataclass(frozen=True)
class AnalysisSettings:
    """Knobs of the analysis pass.

    Attributes:
        min_face: smallest face to find: a fraction of the frame height when < 1, else
            pixels. Sets the scale of the whole-frame passes (never above full size):
            lower finds smaller faces, at a cost that grows with 1/min_face squared.
            Default 1/30: 24 px at 720p, 36 px at 1080p.
        min_face_all: ``min_face`` when every face is masked (``--all``): no identity is
            needed there, so the detection budget goes to smaller faces. Default 1/45:
            16 px at 720p (the fine passes then run at full size).
        full_every: frames between whole-frame passes. Lower finds a newly appearing face
            sooner; the frames before it was found are recovered by following it backwards.
        follow_every: frames between looks at followed faces (1 = every frame).
        fine_every: one whole-frame pass in this many is at the scale ``min_face`` needs;
            the others are at half that scale (a quarter of the pixels) and find faces of
            twice ``min_face`` and more, together with the regions of the faces already
            followed. A face smaller than that is found by the next fine pass and followed
            backwards. Default 3 (every 24th frame fine). Before 2026-12-08 it was 1 with
            ``--target``/``--keep``: with 3, a motion-blurred bystander of held-out seed 105
            had been masked as unsure in 13 of 150 frames. Since the detector's shrinks
            average exactly (:mod:`blurface.resample`) that case is 0, and on two seeds
            never run before (108, 109) 3 did as well as 1 everywhere and better once (a
            blurred target leaked 6 of 112 frames with 1, none with 3); docs/speed.md.
        fine_every_all: ``fine_every`` with ``--all``, where no identity is decided and the
            passes for ``min_face_all`` are the costly ones. Default 3.
        detect_threshold: detector score threshold; lower finds more (blurred, dim,
            turned) faces and more false positives.
        crops_per_track: face crops kept per track to decide its identity, spread over its
            whole life (the best of each stretch) and all embedded: more finds a switch
            to another face sooner and costs about 20 ms a crop (SFace).
        max_gap_seconds: a lost track that reappears within this time is the same track,
            and the frames between are masked at interpolated positions.
        extend_seconds: mask this long before a track's first and after its last detection
            (within its shot), for faces found late or lost early.
        buffer_frames: recent frames kept to follow new faces backwards (0: the frames
            between two fine passes and ``full_every`` more, capped at 256 MB of pixels).
        threads: detector threads.
        embed_process: embed face crops in a worker process (a second core while the main
            thread decodes and detects); off, in the main thread.
        embedder: who each face is: ``sface`` (default) or ``dlib`` (see :mod:`blurface.embedders`).
    """

    min_face: float = 1 / 30
    min_face_all: float = 1 / 45
    full_every: int = 8
    follow_every: int = 2
    fine_every: int = 3
    fine_every_all: int = 3
    detect_threshold: float = 0.3
    crops_per_track: int = 10
    max_gap_seconds: float = 1.0
    extend_seconds: float = 0.2
    buffer_frames: int = 0
    threads: int = 2
    embed_process: bool = True
    embedder: str = DEFAULT_EMBEDDER


PRESETS: dict[str, AnalysisSettings] = {
    "fast": AnalysisSettings(min_face=1 / 20, min_face_all=1 / 20, full_every=12, follow_every=3, crops_per_track=6),
    "balanced": AnalysisSettings(),
    "thorough": AnalysisSettings(
        min_face=1 / 45, full_every=3, follow_every=1, fine_every=1, fine_every_all=1, detect_threshold=0.2,
        crops_per_track=16,
    ),
}

def preset(name: str) -> AnalysisSettings:
    """The analysis preset called ``name`` (``fast``, ``balanced``, ``thorough``).

    Raises:
        InputError: no such preset.
    """
    if name not in PRESETS:
        raise InputError(f"unknown analysis preset {name!r}: use one of {', '.join(PRESETS)}")
    return PRESETS[name]


References = Sequence["str | os.PathLike[str]"] | Gallery


@dataclass(frozen=True)
class Who:
    """Whom to mask: the ``targets``, everyone but ``keep``, or ``all`` faces. Exactly one.

    ``people``: photos, folders or galleries of the targets (``mode="target"``) or of
    the people to keep (``mode="keep"``); empty for ``mode="all"``.
    """

    mode: Mode
    people: tuple[str | os.PathLike, ...] | Gallery = ()

    @classmethod
    def from_args(
        cls,
        targets: References | None = None,
        keep: References | None = None,
        all_faces: bool = False,
        *,
        names: tuple[str, str, str] = ("targets", "keep", "all_faces"),
    ) -> Who:
        """The one place that enforces "exactly one of": the CLI, batch and the library all call it.

        ``names``: how the caller spells the three choices, for the message
        (the CLI passes ``("--target", "--keep", "--all")``).

        Raises:
            InputError: none or several of them given.
        """
        chosen = [bool(targets), bool(keep), bool(all_faces)]
        if sum(chosen) != 1:
            raise InputError(f"give exactly one of {names[0]}, {names[1]} or {names[2]}")
        if all_faces:
            return cls("all")
        people = targets if targets else keep
        return cls("target" if targets else "keep", people if isinstance(people, Gallery) else tuple(people))

    def plan_options(self) -> dict:
        """``targets``/``keep``/``all_faces`` as :func:`~blurface.analysis.make_plan` takes them."""
        people = self.people if isinstance(self.people, Gallery) else list(self.people)
        return {"targets": people if self.mode == "target" else None,
                "keep": people if self.mode == "keep" else None,
                "all_faces": self.mode == "all"}



def min_face_px(settings: AnalysisSettings, frame_height: int, mode: Mode = "target") -> float:
    """The smallest face ``settings`` look for in a frame ``frame_height`` high, masking ``mode``."""
    m = settings.min_face_all if mode == "all" else settings.min_face
    return m * frame_height if m < 1 else float(m)


def detection_scale(
    settings: AnalysisSettings, detector_min_px: float, width: int, height: int, mode: Mode = "target"
) -> float:
    """Scale of the whole-frame passes: the smallest wanted face at the detector's smallest findable size.

    Never above full size (upscaling invents no detail; faces under the detector's
    minimum at full size are not promised), and never below a 64 px frame, except
    that a tiny frame is upscaled to at most 512 px on its long side: a 32768x2
    frame brought to 64 px high would be a 1 M x 64 px (6 GB) picture.
    """
    scale = detector_min_px / max(1.0, min_face_px(settings, height, mode))
    return max(min(scale, 1.0), _scale_floor(width, height))


def coarse_scale(fine: float, width: int, height: int) -> float:
    """Scale of the coarse whole-frame passes: half the fine one (faces twice as large), same floor."""
    return max(fine / 2, _scale_floor(width, height))


def _scale_floor(width: int, height: int) -> float:
    return min(64 / max(1, min(width, height)), max(1.0, 512 / max(1, width, height)))
