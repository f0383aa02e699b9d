"""Shared fixtures: small generated media, and the shared sample clips.

Clips are generated with PyAV so the tests need no sample files and no ffmpeg
binary. Frame values are spaced :data:`LEVEL_STEP` apart so each frame's
brightness survives lossy H.264 and can be read back to check frame order
(after trackers' ``VALUE_MULTIPLIER``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

# Background brightness of frame i is LEVELS[i % len(LEVELS)]. 40 apart: x264 at
# default quality moves flat areas by a few units, never by 20.
LEVEL_STEP = 40
LEVELS = tuple(range(20, 256, LEVEL_STEP))  # 20, 60, ..., 220
MARKER = 255  # the marker block in the top-left corner of the *stored* picture

# Distinct tones so the streams of a multi-track file are told apart by ear and by data.
TONES_HZ = (440.0, 660.0, 880.0, 1100.0)

_FORMATS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}


def frame_level(index: int) -> int:
    """Background brightness (0..255) of generated frame ``index``."""
    return LEVELS[index % len(LEVELS)]


def level_of(image: np.ndarray) -> int:
    """Index into :data:`LEVELS` nearest the median of ``image``.

    The marker covers 1/16 of the picture, so the median is the background.
    Frame ``i`` should give ``i % len(LEVELS)``.
    """
    value = float(np.median(image))
    return int(np.argmin([abs(value - v) for v in LEVELS]))


def make_image(index: int, width: int, height: int) -> np.ndarray:
    """``(height, width, 3) uint8`` BGR: flat grey level plus a white top-left marker.

    The marker (a quarter of each side) shows orientation after rotation.
    """
    image = np.full((height, width, 3), frame_level(index), np.uint8)
    image[: max(2, height // 4), : max(2, width // 4)] = MARKER
    return image


def marker_corner(image: np.ndarray) -> str:
    """Which corner of ``image`` (BGR) holds the white marker: 'tl', 'tr', 'bl' or 'br'."""
    h, w = image.shape[:2]
    qh, qw = max(1, h // 8), max(1, w // 8)
    corners = {
        "tl": image[:qh, :qw],
        "tr": image[:qh, w - qw :],
        "bl": image[h - qh :, :qw],
        "br": image[h - qh :, w - qw :],
    }
    return max(corners, key=lambda k: float(corners[k].mean()))


@dataclass
class ClipSpec:
    """What :func:`make_clip` writes. All times are seconds.

    Attributes:
        width, height: stored picture size (before rotation metadata).
        n_frames: video frames.
        fps: nominal rate; with ``vfr`` frame durations alternate 1x and 2x of 1/fps.
        audio: one audio track per codec name, e.g. ``("aac", "pcm_s16le")``.
        languages: language tag per audio track (defaults to none).
        subtitles: add an SRT track (mkv only) with one cue per second.
        video_start: presentation time of the first video frame (audio starts at 0).
        vfr: irregular frame durations.
        rotation: clockwise display rotation written as the display matrix (0/90/180/270).
        faststart: mp4/mov: put the moov atom before the media data.
        video_codec: encoder name.
        pix_fmt: stored pixel format.
        sample_rate: audio rate in Hz.
        title: container ``title`` metadata.
        timecode: start timecode such as ``"01:00:00:00"``.
    """

    width: int = 64
    height: int = 48
    n_frames: int = 24
    fps: Fraction = Fraction(30)
    audio: Sequence[str] = ()
    languages: Sequence[str | None] = ()
    subtitles: bool = False
    video_start: float = 0.0
    vfr: bool = False
    rotation: int = 0
    faststart: bool = False
    video_codec: str = "libx264"
    pix_fmt: str = "yuv420p"  # odd sizes need "yuv444p": 4:2:0 needs even sides
    sample_rate: int = 48000
    # None by default: blurface drops a title (identifying metadata) with a warning line.
    title: str | None = None
    timecode: str | None = None  # MOV/MP4: FFmpeg writes it as a timecode (tmcd) data track
    frame_pts: list[int] = field(default_factory=list)  # filled in: pts written, in video_time_base

    @property
    def video_time_base(self) -> Fraction:
        # 1/90000 fits every frame rate used here (30, 25, 30000/1001, ...).
        return Fraction(1, 90000)


def _video_pts(spec: ClipSpec) -> list[int]:
    tb = spec.video_time_base
    step = 1 / spec.fps / tb  # ticks per nominal frame
    start = round(Fraction(spec.video_start).limit_denominator(10**6) / tb)
    pts, t = [], Fraction(0)
    for i in range(spec.n_frames):
        pts.append(start + round(t))
        t += step * (2 if spec.vfr and i % 3 == 2 else 1)
    return pts


def _audio_frames(stream: av.AudioStream, seconds: float, hz: float) -> list[av.AudioFrame]:
    """Mono float sine frames of 1024 samples; the encoder converts to its own sample format."""
    rate = stream.codec_context.sample_rate
    n_total = int(math.ceil(seconds * rate))
    frames, chunk = [], 1024
    for start in range(0, n_total, chunk):
        n = min(chunk, n_total - start)
        t = np.arange(start, start + n, dtype=np.float64) / rate
        wave = (0.3 * np.sin(2 * np.pi * hz * t)).astype(np.float32).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(wave, format="fltp", layout="mono")
        frame.sample_rate = rate
        frame.pts = start
        frame.time_base = Fraction(1, rate)
        frames.append(frame)
    return frames


def make_clip(path: str | os.PathLike, spec: ClipSpec | None = None, **kwargs: object) -> Path:
    """Write a small clip described by ``spec`` (or by ``ClipSpec(**kwargs)``) to ``path``.

    The container is chosen from the extension (.mp4, .mov, .mkv). Returns the path.
    ``spec.frame_pts`` is filled with the video pts written (in ``spec.video_time_base``).
    """
    spec = spec or ClipSpec(**kwargs)  # type: ignore[arg-type]
    path = Path(path)
    fmt = _FORMATS[path.suffix.lower()]
    options = {"movflags": "+faststart"} if spec.faststart and fmt != "matroska" else {}
    out = av.open(str(path), "w", format=fmt, options=options)
    try:
        if spec.title:
            out.metadata["title"] = spec.title
        video = out.add_stream(spec.video_codec, rate=spec.fps)
        video.width, video.height = spec.width, spec.height
        video.pix_fmt = spec.pix_fmt
        video.time_base = spec.video_time_base
        video.codec_context.time_base = spec.video_time_base
        # Tiny GOP keeps seeking cheap and gives cutting tests several keyframes.
        video.codec_context.gop_size = 12
        video.options = {"crf": "18", "preset": "ultrafast"}
        if spec.timecode:
            video.metadata["timecode"] = spec.timecode
        if spec.rotation:
            # PyAV's degrees are counter-clockwise; ClipSpec.rotation is clockwise.
            video.set_display_rotation(-spec.rotation)
        audio_streams = []
        for i, codec in enumerate(spec.audio):
            a = out.add_stream(codec, rate=spec.sample_rate, layout="mono")
            lang = spec.languages[i] if i < len(spec.languages) else None
            if lang:
                a.metadata["language"] = lang
            audio_streams.append(a)
        subs = None
        if spec.subtitles:
            subs = out.add_mux_stream("subrip")
            subs.time_base = Fraction(1, 1000)
            subs.metadata["language"] = "eng"

        spec.frame_pts = _video_pts(spec)
        end = spec.frame_pts[-1] * spec.video_time_base + 1 / spec.fps
        seconds = float(end)
        for i, pts in enumerate(spec.frame_pts):
            frame = av.VideoFrame.from_ndarray(make_image(i, spec.width, spec.height), format="bgr24")
            frame.pts = pts
            frame.time_base = spec.video_time_base
            out.mux(video.encode(frame))
        out.mux(video.encode())  # flush: x264 holds frames in its lookahead
        for i, a in enumerate(audio_streams):
            for frame in _audio_frames(a, seconds, TONES_HZ[i % len(TONES_HZ)]):
                out.mux(a.encode(frame))
            out.mux(a.encode())
        if subs is not None:
            for k in range(max(1, int(seconds))):
                packet = av.Packet(f"cue {k + 1}".encode())
                packet.stream = subs
                packet.time_base = Fraction(1, 1000)
                packet.pts = packet.dts = k * 1000
                packet.duration = 500
                out.mux(packet)
    finally:
        out.close()
    return path


def make_audio_only(path: str | os.PathLike, codec: str = "aac", seconds: float = 0.5) -> Path:
    """Write an audio-only file (sine tone); container from the extension."""
    path = Path(path)
    fmt = {".m4a": "mp4", ".mp4": "mp4", ".mkv": "matroska", ".wav": "wav"}[path.suffix.lower()]
    out = av.open(str(path), "w", format=fmt)
    try:
        a = out.add_stream(codec, rate=48000, layout="mono")
        for frame in _audio_frames(a, seconds, TONES_HZ[0]):
            out.mux(a.encode(frame))
        out.mux(a.encode())
    finally:
        out.close()
    return path


def packet_bytes(path: str | os.PathLike, kind: str) -> list[list[bytes]]:
    """Payload of every packet of every stream of ``kind`` ('audio', 'subtitle', ...), per stream."""
    with av.open(str(path)) as container:
        streams = [s for s in container.streams if s.type == kind]
        indices = [s.index for s in streams]
        out: dict[int, list[bytes]] = {i: [] for i in indices}
        if streams:
            for packet in container.demux(streams):
                if packet.size:
                    out[packet.stream.index].append(bytes(packet))
    return [out[i] for i in indices]


def video_pts_seconds(path: str | os.PathLike) -> list[float]:
    """Presentation time (s) of every frame of the first video stream, decode order sorted."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sorted(float(f.pts * f.time_base) for f in container.decode(stream))


def decoded_images(path: str | os.PathLike) -> list[np.ndarray]:
    """Every frame of the first video stream as a stored-orientation BGR array."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


VideoFactory = Callable[..., Path]


@pytest.fixture
def video_factory(tmp_path: Path) -> VideoFactory:
    """Factory ``make(name=None, **ClipSpec fields) -> Path`` writing small clips into ``tmp_path``.

    Example: ``video_factory("a.mkv", audio=("aac", "pcm_s16le"), fps=Fraction(30000, 1001))``.
    The container follows the name's extension (default: a fresh ``clipN.mp4``).
    To read back what was written (e.g. the pts), call :func:`make_clip` with a
    :class:`ClipSpec` instead.
    """
    counter = iter(range(10**6))

    def make(name: str | None = None, **kwargs: object) -> Path:
        name = name or f"clip{next(counter)}.mp4"
        return make_clip(tmp_path / name, ClipSpec(**kwargs))  # type: ignore[arg-type]

    return make


@pytest.fixture
def shared_media() -> Path:
    """``../shared/media`` next to the repository: skipped when absent, a failure on CI."""
    path = Path(__file__).resolve().parents[1].parent / "shared" / "media"
    if not path.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"shared media folder {path} is missing: CI must provide it")
        pytest.skip(f"shared media folder {path} is absent")
    return path
