"""Encode: :func:`transcode` re-encodes a whole input, masked, and copies its other streams.

Timing rule: timestamps are copied, never regenerated (see :mod:`blurface.media`).
"""

from __future__ import annotations

import errno
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import av.error
import numpy as np

from .. import formats
from ..types import DecodedFrame, MediaError, OutputError, ProcessingError, VideoInfo
from .common import (
    EXTRA_MUX_OPTIONS,
    count_video_packets,
    demux,
    even_display_size,
    open_input,
    pix_info,
    remove_quietly,
    resized_frame,
    temp_path,
    video_stream,
)
from .decode import Deinterlacer, FrameDecoder
from .native import FrameMasks, NativeFrames, encoder_formats, source_format
from .outputs import OUTPUT_FORMATS, EncodeSettings, checked_muxer, cleanup_stale_temps
from .probing import probe
from .remux import Route, plan_stream
from .tags import TagPolicy, file_tags, is_chapter_track

log = logging.getLogger(__name__)


def transcode(
    info: VideoInfo,
    dst: str | os.PathLike,
    process: Callable[[DecodedFrame], np.ndarray] | None = None,
    *,
    settings: EncodeSettings = EncodeSettings(),
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    masks: FrameMasks | None = None,
) -> list[str]:
    """Re-encode ``info.path`` to ``dst`` with every frame passed through ``process``.

    ``process`` gets each frame as a :class:`DecodedFrame` whose ``image`` is the
    full-size ``(H, W, 3) uint8`` BGR picture in display orientation, and returns
    the picture to encode: same shape, uint8, BGR (it may change ``image`` in
    place and return it).

    ``masks`` (instead of ``process``): where to mask each frame and the masker that
    does it. Then masks are drawn into the decoded planes in their own pixel format and
    bit depth (a 10-bit source is masked in 10 bits), frames without masks go to the
    encoder as decoded, and ``process`` is not needed.

    The video keeps the input's format where an encoder exists (see
    :func:`blurface.formats.choose` and ``settings.codec``): codec family and profile,
    depth, chroma, colour tags, HDR mastering metadata and field order; otherwise it is
    H.264 at the closest depth and chroma, with one warning saying so. Odd sides are
    padded by one repeated row/column. Frames are encoded upright and the output carries **no rotation
    metadata**: players must not rotate it again. Each output frame keeps its
    source pts, so frame rate (variable included) and the video's start offset
    are unchanged. Audio, subtitle, data and attachment streams are copied
    packet for packet where the container accepts them; otherwise audio becomes
    AAC, text subtitles are converted (SRT/ASS <-> mov_text), and anything else is
    left out. Every such change is returned as a sentence (and logged).

    Metadata: by default only what players need is kept (stream languages, font
    attachments, chapter times; see :mod:`blurface.metadata`), and one sentence
    names the keys that were dropped (never their values). With
    ``settings.keep_metadata`` every container and stream tag, data stream,
    attachment and chapter title is kept. Either way only tags change: copied
    packets stay bit-exact.

    The output is written to a hidden temporary file next to ``dst``, checked
    (frame count, duration and start time against the input), then renamed onto
    ``dst``: ``dst`` is never left half-written.

    Args:
        info: from :func:`probe`.
        dst: output path; ``.mp4``, ``.mov`` or ``.mkv``.
        process: frame callback, see above.
        settings: x264 quality and speed; whether to keep metadata.
        overwrite: replace an existing ``dst``.
        progress: called after each frame with the number of frames written so far.

    Returns:
        Warnings: one human sentence per stream that was converted or left out.

    Raises:
        OutputError: before any work, when ``dst`` has an unsupported extension,
            is the input, exists (without ``overwrite``), or its folder is missing
            or not writable.
        MediaError: the input cannot be read, or is truncated (fewer frames than promised).
        ProcessingError: ``process`` returned a wrong array, the disk filled up,
            encoding failed, or the result failed its check.
        Any exception raised by ``process`` (and ``KeyboardInterrupt``) propagates
        unchanged after the temporary file is removed.
    """
    src = Path(info.path)
    dst = Path(dst)
    fmt = checked_muxer(src, dst, overwrite)
    cleanup_stale_temps(dst)
    tmp = temp_path(dst)
    try:
        try:
            warnings, written, exact_input = _encode(
                info, tmp, fmt, process, settings, progress, masks
            )
            _verify(info, tmp, written, exact_input)
            os.replace(tmp, dst)
        except (OSError, av.error.FFmpegError) as e:
            if getattr(e, "errno", None) == errno.ENOSPC:
                raise ProcessingError(f"{dst.parent}: no space left on the disk: free some space and run again") from e
            if isinstance(e, av.error.FFmpegError):
                # Input read errors were already turned into MediaError; what is left
                # is the encoder or muxer refusing something.
                raise ProcessingError(f"{dst}: encoding failed: {e}") from e
            raise
    except BaseException:
        remove_quietly(tmp)
        raise
    return warnings


def _encode(
    info: VideoInfo,
    tmp: Path,
    fmt: str,
    process: Callable[[DecodedFrame], np.ndarray] | None,
    settings: EncodeSettings,
    progress: Callable[[int], None] | None,
    masks: FrameMasks | None = None,
) -> tuple[list[str], _Written, bool]:
    """Write ``tmp``; return (warnings, what was written, whether the input's frame count was exact)."""
    src = Path(info.path)
    warnings: list[str] = []
    inp = open_input(src)
    out: av.container.OutputContainer | None = None
    try:
        in_video = video_stream(inp)
        if in_video is None:
            raise MediaError(f"{src}: has no video stream")
        # faststart moves the index to the front so playback can begin before download ends.
        # (container_options: PyAV would also hand plain options to every encoder.)
        tags = TagPolicy(file_tags(inp, src), settings.keep_metadata)
        options = {"movflags": "+faststart" + tags.movflags()} if fmt in ("mp4", "mov") else {}
        options.update(EXTRA_MUX_OPTIONS.get(fmt, {}))
        # Matroska otherwise writes random segment and track UIDs: same plan, different bytes.
        options["fflags"] = "+bitexact"
        try:
            out = av.open(str(tmp), "w", format=fmt, container_options=options)
        except av.error.FFmpegError as e:
            raise OutputError(f"{tmp.parent}: cannot create the output file: {e}") from e
        tags.copy_container(inp.metadata, out.metadata)

        decoder = FrameDecoder(info, in_video)
        in_tb = decoder.time_base
        out_size = even_display_size(info)
        in_ctx = in_video.codec_context
        try:
            target = formats.choose(source_format(info), settings.request(), encoder_formats, pix_info, fmt)
        except ValueError as e:
            raise OutputError(f"{tmp.name.split('.blurface-tmp-')[0].lstrip('.')}: {e}") from e
        if target.fallback:
            warnings.append(target.fallback)
            log.warning("%s", target.fallback)
        if target.encoder == "libsvtav1":
            # SVT-AV1 prints its whole configuration to stderr unless told otherwise, and
            # only an environment variable tells it (1 = errors only).
            os.environ.setdefault("SVT_LOG", "1")
        out_video = out.add_stream(target.encoder, rate=info.fps)
        out_video.width, out_video.height = out_size
        out_video.pix_fmt = target.pix_fmt
        # Source time base in and out: pts are copied verbatim, no rounding.
        out_video.time_base = in_tb
        ctx = out_video.codec_context
        # MPEG-2 only knows its standard frame rates as a time base; PyAV rescales each
        # frame's pts to it, and the stream keeps the source's.
        ctx.time_base = 1 / Fraction(info.fps) if target.encoder == "mpeg2video" else in_tb
        # Slice threads (PyAV's default) cost x264 compression; frame threads are its own default.
        ctx.thread_type = "FRAME"
        ctx.thread_count = settings.threads
        ctx.color_primaries = target.color_primaries
        ctx.color_trc = target.color_trc
        ctx.colorspace = target.colorspace
        ctx.color_range = target.color_range
        ctx.field_order = formats.FIELD_ORDER_CODES[target.field_order]
        if in_video.sample_aspect_ratio and in_video.sample_aspect_ratio != 1:
            sar = Fraction(in_video.sample_aspect_ratio)
            ctx.sample_aspect_ratio = 1 / sar if info.rotation in (90, 270) else sar
        options = dict(target.options)
        if target.flags:
            options["flags"] = options.get("flags", "") + "".join(f"+{flag}" for flag in target.flags)
        out_video.options = options
        tags.copy_stream(in_video, out_video)

        chapters = inp.chapters()
        routes: dict[int, Route] = {}
        for stream in inp.streams:
            if stream is in_video or (chapters and is_chapter_track(stream)):
                continue  # the chapter track is written again from ``chapters`` below
            if not tags.keeps_stream(stream):
                continue  # named in the metadata warning at the end
            route = plan_stream(stream, fmt, out, str(src), warnings, tags)
            if route is not None:
                routes[stream.index] = route
        if chapters:
            try:
                out.set_chapters(tags.chapters(chapters))
            except (ValueError, TypeError, av.error.FFmpegError) as e:
                message = f"chapters were left out: {e}"
                warnings.append(message)
                log.warning("%s", message)

        if process is None and masks is None:
            raise ValueError("transcode needs process or masks")
        # Every format, 8-bit 4:2:0 H.264 included, is built in its own pixel format and
        # depth: masks are drawn into the decoded planes (chroma at its own size) and
        # unmasked frames go to the encoder as decoded, with no conversion at all.
        native = NativeFrames(info, target, out_size, masks, process)
        deinterlacer = Deinterlacer(info.field_order) if target.deinterlace else None
        stored_size = (in_ctx.width, in_ctx.height)
        written = _Written()
        last_pts: int | None = None
        fixed_pts = 0

        def emit(index: int, time: float, frame: av.VideoFrame) -> None:
            nonlocal last_pts, fixed_pts
            if (frame.width, frame.height) != stored_size:
                # A mid-stream size change (adaptive streams): the encoder's size is fixed.
                frame = resized_frame(frame, stored_size)
            encoded = native.frame(frame, index, time)
            pts = frame.pts
            if pts is None:
                pts = round((Fraction(info.start_time) + index / info.fps) / in_tb)
            if last_pts is not None and pts <= last_pts:
                # x264 refuses non-increasing pts; nudge by one tick rather than fail.
                pts = last_pts + 1
                fixed_pts += 1
            last_pts = pts
            encoded.pts = pts
            encoded.time_base = in_tb
            encoded.duration = frame.duration
            out.mux(out_video.encode(encoded))
            written.frames += 1
            if written.first is None:
                written.first = float(pts * in_tb)
            step = frame.duration if frame.duration else round(1 / (info.fps * in_tb))
            written.end = float((pts + step) * in_tb)
            if progress is not None:
                progress(written.frames)

        wanted = [in_video] + [s for s in inp.streams if s.index in routes]
        for packet in demux(inp, wanted, src):
            if packet.stream is not in_video:
                routes[packet.stream.index].feed(packet, out)
                continue
            items = decoder.decode(packet)
            for index, time, frame in deinterlacer.push(items) if deinterlacer is not None else items:
                emit(index, time, frame)
        if deinterlacer is not None:
            for index, time, frame in deinterlacer.flush():
                emit(index, time, frame)
        decoder.finish()
        if fixed_pts:
            log.warning("%s: %d video frames had repeated or missing timestamps; shifted by one tick", src, fixed_pts)
        out.mux(out_video.encode(None))  # drain x264's lookahead and B-frame queue
        for route in routes.values():
            route.flush(out)
        out.close()  # writes the trailer (and moves the index up front for faststart)
        out = None
        dropped = tags.summary()
        if dropped:
            warnings.append(dropped)
            log.warning("%s", dropped)
        return warnings, written, decoder.exact_count
    finally:
        if out is not None:
            try:
                out.close()
            except Exception as e:  # already failing: keep the first error
                log.debug("closing the unfinished output failed: %s", e)
        inp.close()


@dataclass
class _Written:
    """What :func:`_encode` put in the video stream."""

    frames: int = 0
    first: float | None = None  # first frame's presentation time, s
    end: float | None = None  # last frame's presentation time plus its duration, s


def _verify(info: VideoInfo, tmp: Path, written: _Written, exact_input: bool) -> None:
    """Re-read the finished file; raise :class:`ProcessingError` unless it holds what was written.

    ``exact_input``: the input's duration comes from an MP4/MOV sample table and
    is compared too (Matroska and other inputs may only state a container
    duration that includes the audio's tail).
    """
    try:
        result = probe(tmp)
    except MediaError as e:
        raise ProcessingError(f"the encoded output cannot be read back: {e}") from e
    count = result.frame_count
    if OUTPUT_FORMATS.get(tmp.suffix.lower()) not in ("mp4", "mov"):
        count = count_video_packets(tmp)  # Matroska states no frame count
    # A frame plus a millisecond: Matroska rounds timestamps to milliseconds.
    slack = 1 / float(info.fps) + 0.001
    problems = []
    if count != written.frames:
        problems.append(f"{count} frames instead of {written.frames}")
    if written.first is not None and abs(result.start_time - written.first) > slack:
        problems.append(f"video starts at {result.start_time:.3f} s instead of {written.first:.3f} s")
    expected = [written.end - written.first] if written.first is not None and written.end is not None else []
    if exact_input and info.duration > 0:
        expected.append(info.duration)
    for duration in expected:
        if abs(result.duration - duration) > slack:
            problems.append(f"video lasts {result.duration:.3f} s instead of {duration:.3f} s")
            break
    if problems:
        raise ProcessingError(f"the encoded output failed its check: {'; '.join(problems)}")

