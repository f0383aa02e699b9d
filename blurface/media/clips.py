"""New clips: previews, excerpts and mattes.

:func:`~blurface.media.transcode` re-encodes a whole input and copies its other streams.
:class:`ClipWriter` writes a *new* video from pictures the caller makes (a masked range,
a scaled proxy, a black-and-white matte), with the first audio track of a time range.
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from .. import formats
from ..types import OutputError, ProcessingError, VideoInfo
from .common import (
    ACCURATE_TO_YUV,
    EXTRA_MUX_OPTIONS,
    bgr_to_yuv,
    count_video_packets,
    demux,
    open_input,
    remove_quietly,
    temp_path,
    video_input,
)
from .outputs import EncodeSettings, checked_muxer, cleanup_stale_temps
from .remux import DEFAULT_LAYOUTS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipCodec:
    """Encoder of a :class:`ClipWriter`: FFmpeg codec, pixel format and private options."""

    codec: str
    pix_fmt: str
    options: tuple[tuple[str, str], ...] = ()
    threads: int = EncodeSettings.threads  # fixed, for reproducible bytes (see there)

    @classmethod
    def x264(cls, settings: EncodeSettings) -> ClipCodec:
        crf = settings.crf if settings.crf is not None else formats.DEFAULT_CRF["libx264"]
        preset = settings.preset or formats.DEFAULT_PRESET
        return cls("libx264", "yuv420p", (("crf", str(crf)), ("preset", preset)), settings.threads)


# A matte must open in editing software: ProRes 422 HQ in QuickTime is imported by
# Premiere, Resolve and Final Cut alike, and PyAV ships FFmpeg's prores_ks encoder. Its
# luma is full resolution (only chroma is 4:2:2), 10-bit, and flat black and white come
# back exact. FFV1 (lossless, Matroska) suits FFmpeg-based tools and archives.
MATTE_CODECS: dict[str, ClipCodec] = {
    ".mov": ClipCodec("prores_ks", "yuv422p10le", (("profile", "3"), ("vendor", "apl0"))),
    ".mkv": ClipCodec("ffv1", "gray", (("level", "3"),)),
}


class _AudioRange:
    """The first audio track of ``src`` between ``start`` and ``end`` s, re-encoded as AAC
    and moved ``offset`` s earlier. Cut at sample precision (copying packets would cut
    at ~21 ms AAC frames and keep the encoder delay of the source's first packet)."""

    def __init__(self, src: Path, out: av.container.OutputContainer, start: float, end: float, offset: float) -> None:
        self.inp = open_input(src)
        self.src, self.start, self.end, self.offset = src, start, end, offset
        streams = [s for s in self.inp.streams.audio]
        self.stream = streams[0] if streams else None
        self.target = None
        self._frames: Iterator[av.AudioFrame] = iter(())
        self._next: av.AudioFrame | None = None
        if self.stream is None or self.stream.codec_context is None:
            self.stream = None
            return
        ctx = self.stream.codec_context
        self.rate = ctx.sample_rate
        layout = ctx.layout.name
        if "channels" in layout:
            layout = DEFAULT_LAYOUTS.get(ctx.channels, "stereo")
        self.layout = layout
        self.target = out.add_stream("aac", rate=self.rate, layout=layout)
        self.target.bit_rate = 96_000 * max(1, ctx.channels)
        self.resampler = av.AudioResampler(format="fltp", layout=layout, rate=self.rate)
        tb = Fraction(self.stream.time_base)
        # Half a second early: the decoder needs a frame or two before its output is clean.
        self.inp.seek(max(0, int((start - 0.5) / tb)), stream=self.stream, backward=True)
        self._frames = self._trimmed()

    def _trimmed(self) -> Iterator[av.AudioFrame]:
        assert self.stream is not None
        written = None  # output sample position of the next sample
        for packet in demux(self.inp, [self.stream], self.src):
            try:
                decoded = packet.decode()
            except av.error.FFmpegError as e:
                log.debug("%s: skipped a damaged audio packet: %s", self.src, e)
                continue
            for frame in decoded:
                if frame.pts is None:
                    continue
                t0 = float(frame.pts * frame.time_base)
                for part in self.resampler.resample(frame):
                    samples = part.to_ndarray()  # (channels, n) float32
                    n = samples.shape[1]
                    times = t0 + np.arange(n) / self.rate
                    keep = (times >= self.start) & (times < self.end)
                    t0 += n / self.rate
                    if not keep.any():
                        if times[0] >= self.end:
                            return
                        continue
                    chunk = np.ascontiguousarray(samples[:, keep])
                    out = av.AudioFrame.from_ndarray(chunk, format="fltp", layout=self.layout)
                    out.sample_rate = self.rate
                    if written is None:
                        written = max(0, round((float(times[keep][0]) - self.offset) * self.rate))
                    out.pts = written
                    out.time_base = Fraction(1, self.rate)
                    written += chunk.shape[1]
                    yield out

    def pump(self, out: av.container.OutputContainer, until: float | None) -> None:
        """Encode and mux the audio up to output time ``until`` (all of it when ``None``)."""
        if self.target is None:
            return
        while True:
            if self._next is None:
                self._next = next(self._frames, None)
                if self._next is None:
                    return
            if until is not None and float(self._next.pts / self.rate) > until:
                return
            out.mux(self.target.encode(self._next))
            self._next = None

    def close(self, out: av.container.OutputContainer | None) -> None:
        try:
            if out is not None and self.target is not None:
                self.pump(out, None)
                out.mux(self.target.encode(None))
        finally:
            self.inp.close()


class ClipWriter:
    """Write a new video file from pictures, whole or not at all.

    Used as a context manager: the file is written to a hidden temporary file beside
    ``dst`` and renamed onto it when the block ends without an error, after its video
    frame count is checked; on an error (or Ctrl-C) the temporary file is removed.

    Args:
        dst: ``.mp4``, ``.mov`` or ``.mkv``.
        size: ``(width, height)`` of the pictures; H.264 and ProRes need even sides.
        time_base: of the ``pts`` given to :meth:`write`.
        rate: nominal frame rate (for the container's header; the pts decide timing).
        codec: the encoder (:meth:`ClipCodec.x264`, :data:`MATTE_CODECS`).
        audio: ``(src, start, end, offset)``: add ``src``'s first audio track between
            ``start`` and ``end`` s, moved ``offset`` s earlier (``offset`` = the source time
            of output time 0). ``None``: no audio.
        src: the input, which ``dst`` must not be.
        overwrite: replace an existing ``dst``.

    Raises:
        OutputError: ``dst`` is unusable (see :func:`check_output`), before anything is written.
        ProcessingError: encoding failed or the file failed its check.
    """

    def __init__(
        self,
        dst: str | os.PathLike,
        *,
        size: tuple[int, int],
        time_base: Fraction,
        rate: Fraction,
        codec: ClipCodec,
        audio: tuple[str | os.PathLike, float, float, float] | None = None,
        src: str | os.PathLike | None = None,
        overwrite: bool = False,
    ) -> None:
        self.dst = Path(dst)
        self.fmt = checked_muxer(Path(src) if src is not None else Path("/nonexistent"), self.dst, overwrite)
        cleanup_stale_temps(self.dst)
        self.tmp = temp_path(self.dst)
        self.size, self.time_base, self.codec = size, Fraction(time_base), codec
        self.frames = 0
        self.last_pts: int | None = None
        options = {"movflags": "+faststart"} if self.fmt in ("mp4", "mov") else {}
        options.update(EXTRA_MUX_OPTIONS.get(self.fmt, {}))
        # bitexact: no random Matroska UIDs and no library version tag, so the same
        # pictures give the same bytes (see EncodeSettings.threads).
        options["fflags"] = "+bitexact"
        try:
            self.out = av.open(str(self.tmp), "w", format=self.fmt, container_options=options)
        except av.error.FFmpegError as e:
            raise OutputError(f"{self.tmp.parent}: cannot create the output file: {e}") from e
        try:
            self.stream = self.out.add_stream(codec.codec, rate=rate)
            self.stream.width, self.stream.height = size
            self.stream.pix_fmt = codec.pix_fmt
            self.stream.time_base = self.time_base
            ctx = self.stream.codec_context
            ctx.time_base = self.time_base
            ctx.thread_type = "FRAME"
            ctx.thread_count = codec.threads
            ctx.color_range = 1
            self.stream.options = dict(codec.options)
            self.audio = None
            if audio is not None:
                a_src, a_start, a_end, a_offset = audio
                self.audio = _AudioRange(Path(a_src), self.out, a_start, a_end, a_offset)
        except BaseException:
            self.out.close()
            remove_quietly(self.tmp)
            raise

    def write(self, image: np.ndarray, pts: int) -> None:
        """Encode one picture: ``(H, W, 3) uint8`` BGR or ``(H, W) uint8`` grey, at ``pts`` (``time_base`` units)."""
        if image.shape[:2] != (self.size[1], self.size[0]):
            raise ProcessingError(f"{self.dst}: picture of {image.shape[1]}x{image.shape[0]} for a {self.size[0]}x{self.size[1]} clip")
        if self.last_pts is not None and pts <= self.last_pts:
            pts = self.last_pts + 1
        self.last_pts = pts
        if image.ndim == 2:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="gray")
            frame.color_range = 2  # grey pictures are full range: 255 is white
            frame = frame.reformat(format=self.codec.pix_fmt, dst_color_range=1, interpolation=ACCURATE_TO_YUV)
        else:
            frame = bgr_to_yuv(np.ascontiguousarray(image), 0) if self.codec.pix_fmt == "yuv420p" else (
                av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="bgr24").reformat(
                    format=self.codec.pix_fmt, interpolation=ACCURATE_TO_YUV))
        frame.pts = pts
        frame.time_base = self.time_base
        self.out.mux(self.stream.encode(frame))
        self.frames += 1
        if self.audio is not None:
            self.audio.pump(self.out, float(pts * self.time_base))

    def __enter__(self) -> ClipWriter:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: object) -> None:
        try:
            if kind is None:
                try:
                    self.out.mux(self.stream.encode(None))
                    if self.audio is not None:
                        self.audio.close(self.out)
                        self.audio = None
                    self.out.close()
                    count = count_video_packets(self.tmp)
                    if count != self.frames:
                        raise ProcessingError(f"{self.dst}: holds {count} frames instead of {self.frames}")
                    os.replace(self.tmp, self.dst)
                except (OSError, av.error.FFmpegError) as e:
                    if getattr(e, "errno", None) == errno.ENOSPC:
                        raise ProcessingError(f"{self.dst.parent}: no space left on the disk: free some space") from e
                    raise ProcessingError(f"{self.dst}: encoding failed: {e}") from e
        finally:
            if self.audio is not None:
                self.audio.close(None)
            try:
                self.out.close()
            except Exception:  # already closed, or failing: the first error counts
                pass
            remove_quietly(self.tmp)


def copy_video_range(info: VideoInfo, dst: str | os.PathLike, start: float, end: float) -> None:
    """Copy the video packets from the keyframe before ``start`` to ``end`` s into ``dst`` (``.mkv``).

    No re-encoding: the copy decodes to the very pictures of the source (from that
    keyframe on), with the source's timestamps, so it can be analysed in its place.
    """
    src = Path(info.path)
    with video_input(src) as (inp, stream):
        tb = Fraction(stream.time_base)
        with av.open(str(dst), "w", format="matroska", container_options={"avoid_negative_ts": "disabled"}) as out:
            target = out.add_stream_from_template(stream)
            inp.seek(max(0, int(start / tb)), stream=stream, backward=True)
            for packet in demux(inp, [stream], src):
                if packet.size == 0:
                    continue
                if packet.dts is not None and packet.dts * tb > end + 1.0:
                    break  # a second past the end: every frame shown before ``end`` is in
                packet.stream = target
                out.mux(packet)

