"""Data passed between blurface's stages.

Everything here imports numpy only, so every stage (media, faces, track, plan,
mask, render) can share these types without importing each other.

Conventions used throughout blurface:

* Images are ``(H, W, 3) uint8`` **BGR**, C-contiguous (OpenCV's order).
  dlib (``--embedder dlib``) wants RGB; :mod:`blurface.embedders` converts with ``cv2.cvtColor``.
* Boxes are pixel ``[x1, y1, x2, y2]`` float32 in the *display* orientation of
  the full-resolution frame (after any rotation metadata is applied).
* Frame indices count decoded frames from 0 in presentation order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Callable, Iterable, Literal, get_args

import numpy as np

EMBEDDING_DIM = 128

Mode = Literal["target", "keep", "all"]
MODES: tuple[str, ...] = get_args(Mode)


class BlurfaceError(Exception):
    """Base of every error blurface raises on purpose.

    ``exit_code`` is what the CLI returns for it: 2 for bad usage or bad input,
    1 for a failure while processing.
    """

    exit_code: int = 1


class InputError(BlurfaceError, ValueError):
    """A file or argument given by the user cannot be used (exit code 2)."""

    exit_code = 2


class MediaError(InputError):
    """A video cannot be opened, probed or fully decoded (exit code 2)."""


class GalleryError(InputError):
    """A reference photo or gallery is unusable (exit code 2)."""


class OutputError(BlurfaceError):
    """The output cannot be written: exists, same as input, not writable (exit code 2)."""

    exit_code = 2


class ProcessingError(BlurfaceError):
    """Processing failed after the inputs were accepted (exit code 1)."""

    exit_code = 1


class Interrupted(BlurfaceError):
    """Stopped by SIGINT or SIGTERM; nothing was written (exit code 130)."""

    exit_code = 130


# Called with the stage ("analyse", "render", "matte", ...) and the number of steps just done.
Progress = Callable[[str, int], None]

@dataclass
class Faces:
    """Faces found in one frame, as parallel arrays (after supervision's ``Detections``).

    Attributes:
        xyxy: ``(N, 4)`` float32 boxes ``[x1, y1, x2, y2]`` in full-frame pixels.
        score: ``(N,)`` float32 detector confidence (higher is surer).
        track_id: ``(N,)`` int64, ``-1`` until a tracker assigns one.
        embedding: ``(N, 128)`` float32 descriptors, or ``None`` when not computed.
        landmarks: ``(N, 5, 2)`` float32 ``(x, y)`` of the left eye, right eye, nose and
            the mouth's left and right corners, in the same pixels as ``xyxy``, or ``None``
            when the detector gives none.
    """

    xyxy: np.ndarray
    score: np.ndarray = field(default=None)  # type: ignore[assignment]
    track_id: np.ndarray = field(default=None)  # type: ignore[assignment]
    embedding: np.ndarray | None = None
    landmarks: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        n = len(self.xyxy)
        self.score = (
            np.ones(n, np.float32) if self.score is None else np.asarray(self.score, np.float32).reshape(-1)
        )
        self.track_id = (
            np.full(n, -1, np.int64) if self.track_id is None else np.asarray(self.track_id, np.int64).reshape(-1)
        )
        if self.embedding is not None:
            self.embedding = np.asarray(self.embedding, np.float32).reshape(-1, EMBEDDING_DIM)
        if self.landmarks is not None:
            self.landmarks = np.asarray(self.landmarks, np.float32).reshape(-1, 5, 2)
        for name in ("score", "track_id", "embedding", "landmarks"):
            value = getattr(self, name)
            if value is not None and len(value) != n:
                raise ValueError(f"Faces.{name} has {len(value)} rows but xyxy has {n}")

    @classmethod
    def empty(cls) -> Faces:
        return cls(np.zeros((0, 4), np.float32))

    def __len__(self) -> int:
        return len(self.xyxy)

    def __getitem__(self, index: int | slice | np.ndarray | list[int]) -> Faces:
        """Select rows by index, slice or boolean mask; always returns ``Faces``."""
        if isinstance(index, int):
            index = [index]
        return Faces(
            self.xyxy[index],
            self.score[index],
            self.track_id[index],
            None if self.embedding is None else self.embedding[index],
            None if self.landmarks is None else self.landmarks[index],
        )

    @property
    def width(self) -> np.ndarray:
        return self.xyxy[:, 2] - self.xyxy[:, 0]

    @property
    def height(self) -> np.ndarray:
        return self.xyxy[:, 3] - self.xyxy[:, 1]

    @classmethod
    def concat(cls, parts: Iterable[Faces]) -> Faces:
        parts = [p for p in parts if len(p)]
        if not parts:
            return cls.empty()
        embeddings = landmarks = None
        if all(p.embedding is not None for p in parts):
            embeddings = np.concatenate([p.embedding for p in parts])  # type: ignore[misc]
        if all(p.landmarks is not None for p in parts):
            landmarks = np.concatenate([p.landmarks for p in parts])  # type: ignore[misc]
        return cls(
            np.concatenate([p.xyxy for p in parts]),
            np.concatenate([p.score for p in parts]),
            np.concatenate([p.track_id for p in parts]),
            embeddings,
            landmarks,
        )


# Why a box is in a track on a given frame. Stored per row of Track.source.
SOURCE_DETECTED = 0  # the detector found it on this frame
SOURCE_INTERPOLATED = 1  # between two detections (skipped frame or detector miss)
SOURCE_EXTENDED = 2  # before the first / after the last detection, as a safety margin
SOURCE_NAMES = {SOURCE_DETECTED: "detected", SOURCE_INTERPOLATED: "interpolated", SOURCE_EXTENDED: "extended"}

Decision = Literal["target", "unsure", "other", "keep", "all", "manual", "switch"]
# Every decision a plan may hold: Plan.load refuses any other (a plan file is untrusted input,
# and the decision reaches the review page). Add a new decision to ``Decision`` above only.
DECISIONS: tuple[str, ...] = get_args(Decision)


@dataclass
class Track:
    """One face followed through consecutive frames of one shot.

    Attributes:
        id: unique within one analysis.
        frames: ``(n,)`` int64 ascending frame indices the track covers, with no holes
            (gaps are interpolated).
        xyxy: ``(n, 4)`` float32 box on each of those frames.
        source: ``(n,)`` uint8, one of ``SOURCE_*`` per row.
        embeddings: ``(m, 128)`` float32 descriptors from the track's best crops.
        embedding_frames: ``(m,)`` int64 frames those crops came from.
        identity: best-matching gallery person, or ``None`` when the gallery is empty.
        distance: aggregated embedding distance to ``identity`` (lower is closer), or ``None``.
        decision: what the plan does with it: ``target`` (masked: matches a target),
            ``unsure`` (distance in the unsure band), ``other`` (someone else),
            ``keep`` (a protected person), ``all`` (``--all`` mode), ``manual`` (a box a
            reviewer drew on a missed face, followed by a visual tracker), ``switch`` (the
            unseen frames where a split track changed from one face to another: masked
            when a part beside it is).
        masked: whether the render masks this track.
        reason: one human-readable sentence: why masked or not.
    """

    id: int
    frames: np.ndarray
    xyxy: np.ndarray
    source: np.ndarray
    embeddings: np.ndarray = field(default_factory=lambda: np.zeros((0, EMBEDDING_DIM), np.float32))
    embedding_frames: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    identity: str | None = None
    distance: float | None = None
    decision: Decision = "other"
    masked: bool = False
    reason: str = ""

    def __post_init__(self) -> None:
        self.frames = np.asarray(self.frames, np.int64).reshape(-1)
        self.xyxy = np.asarray(self.xyxy, np.float32).reshape(-1, 4)
        self.source = np.asarray(self.source, np.uint8).reshape(-1)
        self.embeddings = np.asarray(self.embeddings, np.float32).reshape(-1, EMBEDDING_DIM)
        self.embedding_frames = np.asarray(self.embedding_frames, np.int64).reshape(-1)
        if not (len(self.frames) == len(self.xyxy) == len(self.source)):
            raise ValueError(
                f"Track {self.id}: frames ({len(self.frames)}), xyxy ({len(self.xyxy)}) and "
                f"source ({len(self.source)}) must have the same length"
            )
        if len(self.embeddings) != len(self.embedding_frames):
            raise ValueError(f"Track {self.id}: embeddings and embedding_frames differ in length")

    @property
    def first(self) -> int:
        return int(self.frames[0])

    @property
    def last(self) -> int:
        return int(self.frames[-1])

    @property
    def detected_count(self) -> int:
        return int(np.count_nonzero(self.source == SOURCE_DETECTED))

    def __len__(self) -> int:
        return len(self.frames)


@dataclass(frozen=True)
class StreamInfo:
    """One stream of the input container, as found by :func:`blurface.media.probe`."""

    index: int
    kind: str  # "video", "audio", "subtitle", "data", "attachment"
    codec: str
    language: str | None = None


@dataclass(frozen=True)
class VideoInfo:
    """What :func:`blurface.media.probe` learns about an input file.

    ``width``/``height`` are the display size (after rotation). ``frame_count`` is the
    number of frames the container promises; decoding fewer is an error (truncation).
    """

    path: str
    container: str
    width: int
    height: int
    rotation: int
    fps: Fraction
    time_base: Fraction
    start_time: float
    duration: float
    frame_count: int
    codec: str
    pix_fmt: str
    bit_rate: int | None
    streams: tuple[StreamInfo, ...] = ()
    # "progressive", or the field order of interlaced video: "tt" (top field first), "bb", "tb", "bt".
    field_order: str = "progressive"

    @property
    def interlaced(self) -> bool:
        return self.field_order in ("tt", "bb", "tb", "bt")

    def to_dict(self) -> dict:
        return {
            "path": self.path,
            "container": self.container,
            "width": self.width,
            "height": self.height,
            "rotation": self.rotation,
            "fps": str(self.fps),
            "time_base": str(self.time_base),
            "start_time": self.start_time,
            "duration": self.duration,
            "frame_count": self.frame_count,
            "codec": self.codec,
            "pix_fmt": self.pix_fmt,
            "bit_rate": self.bit_rate,
            "streams": [
                {"index": s.index, "kind": s.kind, "codec": s.codec, "language": s.language} for s in self.streams
            ],
        }

    @classmethod
    def from_dict(cls, d: dict) -> VideoInfo:
        return cls(
            path=str(d["path"]),
            container=str(d["container"]),
            width=int(d["width"]),
            height=int(d["height"]),
            rotation=int(d["rotation"]),
            fps=Fraction(d["fps"]),
            time_base=Fraction(d["time_base"]),
            start_time=float(d["start_time"]),
            duration=float(d["duration"]),
            frame_count=int(d["frame_count"]),
            codec=str(d["codec"]),
            pix_fmt=str(d["pix_fmt"]),
            bit_rate=None if d.get("bit_rate") is None else int(d["bit_rate"]),
            streams=tuple(
                StreamInfo(int(s["index"]), str(s["kind"]), str(s["codec"]), s.get("language"))
                for s in d.get("streams", [])
            ),
        )


@dataclass(frozen=True)
class DecodedFrame:
    """One decoded frame.

    Attributes:
        index: 0-based position in presentation order.
        time: presentation time in seconds (stream start offset included).
        image: ``(H, W, 3) uint8`` BGR, display orientation, C-contiguous. May be
            downscaled when the decoder was asked for a smaller size.
        full: when ``image`` is scaled, returns the full-resolution BGR frame
            (display orientation). It keeps the decoded frame alive until dropped.
        thumb: with grey decoding, a ``(~36, 64, 3) uint8`` BGR thumbnail for cheap
            whole-frame colour statistics (scene cuts); otherwise ``None``.
    """

    index: int
    time: float
    image: np.ndarray
    full: Callable[[], np.ndarray] | None = None
    thumb: np.ndarray | None = None

    def full_image(self) -> np.ndarray:
        """The frame at full resolution, BGR; converted on first call when ``image`` is scaled."""
        return self.image if self.full is None else self.full()


@dataclass
class Result:
    """What a run returns (:func:`blurface.pipeline.run`, :func:`~blurface.pipeline.blur_video`, the stages' ``render``)."""

    output: str
    frames: int
    masked_frames: int
    masked_boxes: int
    tracks: int
    masked_tracks: int
    seconds_analyse: float
    seconds_render: float
    warnings: list[str] = field(default_factory=list)
    # Identifying metadata left out of the output, by key, never value (see blurface.metadata):
    # "location", "stream #1 handler_name", "chapter 2 title", "data stream #3".
    metadata_dropped: list[str] = field(default_factory=list)
    # Tracks by decision ("target", "unsure", "other", ...), for the summary line.
    decisions: dict[str, int] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.seconds_analyse + self.seconds_render

    def tracks_line(self) -> str:
        """``3 of 26 face tracks masked (2 matched, 1 unsure, 23 other)``: what the masks are, in one phrase.

        Says how many masks come from a confident match and how many only from doubt.
        """
        words = {"target": "matched", "keep": "kept people", "unsure": "unsure", "other": "other",
                 "manual": "drawn", "all": "every face", "switch": "unseen switches"}
        counts = [f"{n} {words.get(d, d)}" for d, n in self.decisions.items() if n]
        return f"{self.masked_tracks} of {self.tracks} face tracks masked" + (f" ({', '.join(counts)})" if counts else "")

