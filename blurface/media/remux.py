"""Remux: how each stream other than the video reaches the output.

Copied packet for packet where the container accepts it; otherwise audio becomes AAC,
text subtitles are converted, and anything else is left out with one warning sentence.
"""

from __future__ import annotations

import io
import logging

import av
import av.error

from .common import codec_name
from .outputs import OUTPUT_FORMATS
from .tags import TagPolicy

log = logging.getLogger(__name__)


# FFmpeg's default channel layout per channel count (av_channel_layout_default).
DEFAULT_LAYOUTS = {1: "mono", 2: "stereo", 3: "3.0", 4: "4.0", 5: "5.0", 6: "5.1", 7: "6.1", 8: "7.1"}


def _muxer_rejects(fmt: str, template: av.stream.Stream, sample: av.Packet | None = None) -> str | None:
    """Why ``fmt`` cannot hold a copy of ``template``, or ``None`` if it can.

    Asks the muxer itself by writing a small file into memory: the codec-tag
    tables (``avformat_query_codec``) do not cover data streams, and a refusal
    while writing the real file would sink the whole output. ``sample``, a packet
    of ``template``, is written too: some streams pass the header and fail at
    the trailer (a QuickTime timecode track copied as data does).
    """
    try:
        with av.open(io.BytesIO(), "w", format=fmt) as scratch:
            target = scratch.add_stream_from_template(template)
            scratch.start_encoding()
            if sample is not None:
                sample.stream = target
                scratch.mux(sample)
    except (ValueError, TypeError, av.error.FFmpegError) as e:
        return str(e) or type(e).__name__
    return None


def _first_packet(path: str, index: int, limit: int = 500) -> av.Packet | None:
    """First non-empty packet of stream ``index`` among the file's first ``limit`` packets.

    Bounded because a stream may start late (a subtitle at minute 40) and the
    answer is only a sample for :func:`_muxer_rejects`.
    """
    with av.open(path, metadata_errors="replace") as container:
        for n, packet in enumerate(container.demux()):
            if n >= limit:
                break
            if packet.stream.index == index and packet.size:
                return packet
    return None


def _describe(stream: av.stream.Stream) -> str:
    details = [codec_name(stream)]
    keys = ("language", "filename", "title") + (("handler_name",) if stream.type == "data" else ())
    for key in keys:
        value = stream.metadata.get(key)
        if value and value != "und":
            details.append(value)
    return f"{stream.type} stream #{stream.index} ({', '.join(details)})"


class Route:
    """What happens to the packets of one input stream.

    Damage is counted rather than logged packet by packet: :meth:`flush` reports
    it in one warning line per stream (the details are in the debug log).
    """

    def __init__(self, source: av.stream.Stream, target: av.stream.Stream, path: str) -> None:
        self.source, self.target, self.path = source, target, path
        self.dropped = 0  # packets left out: undecodable, or timestamps the muxer refuses

    def feed(self, packet: av.Packet, out: av.container.OutputContainer) -> None:
        raise NotImplementedError

    def flush(self, out: av.container.OutputContainer) -> None:
        """Drain encoders (x264 and AAC hold frames back: lookahead, priming) and report damage."""
        if self.dropped:
            log.warning(
                "%s: %d damaged or out-of-order packet(s) of %s were left out; it may have gaps there",
                self.path, self.dropped, _describe(self.source),
            )

    def _mux(self, out: av.container.OutputContainer, packets: av.Packet | list[av.Packet]) -> None:
        for packet in packets if isinstance(packets, list) else [packets]:
            try:
                out.mux(packet)
            except av.error.ArgumentError as e:
                # The muxer refuses a packet of a damaged file (typically a dts going
                # backwards) before writing anything: leave that packet out, keep the rest.
                self.dropped += 1
                log.debug("%s: %s: left out a packet at dts %s: %s", self.path, _describe(self.source), packet.dts, e)


class _CopyRoute(Route):
    """Bit-exact remux: payload untouched, pts/dts rescaled by the muxer."""

    def feed(self, packet: av.Packet, out: av.container.OutputContainer) -> None:
        # demux() ends each stream with an empty packet meant to flush decoders.
        if packet.pts is None and packet.dts is None and packet.size == 0:
            return
        packet.stream = self.target
        self._mux(out, packet)


class _AudioEncodeRoute(Route):
    """Decode and re-encode audio the container cannot hold as is (PCM into MP4)."""

    def feed(self, packet: av.Packet, out: av.container.OutputContainer) -> None:
        try:
            frames = packet.decode()
            # Keep the source's timing: PyAV rescales pts from the frame's time base.
            encoded = [p for frame in frames for p in self.target.encode(frame)]
        except av.error.FFmpegError as e:
            self.dropped += 1
            log.debug("%s: skipped a damaged audio packet at pts %s: %s", self.path, packet.pts, e)
            return
        self._mux(out, encoded)

    def flush(self, out: av.container.OutputContainer) -> None:
        self._mux(out, self.target.encode(None))
        super().flush(out)


class _SubtitleConvertRoute(Route):
    """Text subtitles re-encoded for the container (SRT/ASS -> mov_text, mov_text -> SRT)."""

    def feed(self, packet: av.Packet, out: av.container.OutputContainer) -> None:
        if packet.size == 0:
            return
        try:
            subtitle = self.source.codec_context.decode2(packet)
            if subtitle is None:
                return
            encoded = self.target.codec_context.encode_subtitle(subtitle)
        except av.error.FFmpegError as e:
            self.dropped += 1
            log.debug("%s: skipped a subtitle at pts %s that could not be converted: %s", self.path, packet.pts, e)
            return
        # Timing from the source packet, in its own time base: the subtitle's own
        # fields are relative display times, not positions in the file.
        encoded.time_base = packet.time_base
        encoded.pts = encoded.dts = packet.pts
        encoded.duration = packet.duration
        encoded.stream = self.target
        self._mux(out, encoded)


_TEXT_SUBTITLES = frozenset({"subrip", "srt", "ass", "ssa", "webvtt", "mov_text", "text"})


def plan_stream(
    stream: av.stream.Stream,
    fmt: str,
    out: av.container.OutputContainer,
    path: str,
    warnings: list[str],
    tags: TagPolicy,
) -> Route | None:
    """Add an output stream for ``stream`` and say how to feed it; ``None`` drops it (with a warning)."""

    def warn(message: str) -> None:
        warnings.append(message)
        log.warning("%s", message)

    codec = codec_name(stream)
    what = _describe(stream)
    if stream.type == "video":
        # A second picture stream (another angle, cover art) is not masked: copying
        # it would leak the faces this tool is asked to hide.
        warn(f"{what} was left out: only the first video stream is masked, and copying others would leak faces")
        return None

    # PCM is legal in MP4 (ISO 23003-5) but most players cannot play it there.
    pcm_in_mp4 = stream.type == "audio" and fmt == "mp4" and codec.startswith("pcm_")
    # Data streams (timecode, camera metadata) are the ones muxers accept in the
    # header and refuse later; a real packet settles it. So does it for a damaged
    # audio stream (AAC without its decoder config: Matroska refuses it at the
    # first packet, which would sink the whole output).
    sample = _first_packet(path, stream.index) if stream.type != "attachment" else None
    reason = "MP4 players rarely support PCM audio" if pcm_in_mp4 else _muxer_rejects(fmt, stream, sample)
    if reason is None:
        target = out.add_stream_from_template(stream)
        tags.copy_stream(stream, target)
        target.disposition = stream.disposition
        return _CopyRoute(stream, target, path)

    fits = [
        ext
        for ext, other in OUTPUT_FORMATS.items()
        if other != fmt
        and _muxer_rejects(other, stream, None if sample is None else _first_packet(path, stream.index)) is None
    ]
    kind_fix = f"a {' or '.join(fits)} output" if fits else "another tool"
    if not pcm_in_mp4:
        reason = f"the {fmt.upper() if fmt != 'matroska' else 'MKV'} muxer refuses {codec} {stream.type} streams"
    if stream.type == "audio":
        ctx = stream.codec_context
        if ctx is None:
            # FFmpeg has no decoder for it (or the header is damaged): nothing to re-encode from.
            warn(f"{what} was left out ({reason}, and it cannot be decoded to re-encode it); use {kind_fix} to keep it")
            return None
        layout = ctx.layout.name
        if "channels" in layout:
            # An unordered layout ("2 channels", typical of PCM in MOV): AAC needs a named one.
            layout = DEFAULT_LAYOUTS.get(ctx.channels, layout)
        try:
            target = out.add_stream("aac", rate=ctx.sample_rate, layout=layout)
        except (ValueError, TypeError, av.error.FFmpegError) as e:
            warn(f"{what} was left out ({reason}, and AAC cannot encode it: {e}); use {kind_fix} to keep it")
            return None
        # 96 kb/s per channel: transparent AAC for speech and music, as PCM sources deserve.
        target.bit_rate = 96_000 * max(1, ctx.channels)
        tags.copy_stream(stream, target)
        target.disposition = stream.disposition
        warn(f"{what} was re-encoded as AAC ({reason}); use {kind_fix} to keep it bit-exact")
        return _AudioEncodeRoute(stream, target, path)

    if stream.type == "subtitle" and codec in _TEXT_SUBTITLES:
        new_codec = "subrip" if fmt == "matroska" else "mov_text"
        try:
            stream.codec_context.open(strict=False)  # the decoder makes the ASS header the encoder needs
            target = out.add_stream(new_codec)
            target.codec_context.subtitle_header = stream.codec_context.subtitle_header
            target.time_base = stream.time_base
            target.codec_context.time_base = stream.time_base
            tags.copy_stream(stream, target)
            target.disposition = stream.disposition
        except (ValueError, av.error.FFmpegError) as e:
            warn(f"{what} was left out ({reason}, and converting it failed: {e}); use {kind_fix} to keep it")
            return None
        warn(
            f"{what} was converted to {new_codec} ({reason}); styling may be simplified: "
            f"use {kind_fix} to keep it as is"
        )
        return _SubtitleConvertRoute(stream, target, path)

    timecode = stream.metadata.get("timecode")
    if stream.type == "data" and timecode:
        # A QuickTime timecode track: the muxer writes a new one from the video's tag.
        video = out.streams.video[0]
        video.metadata.setdefault("timecode", timecode)
        warn(f"{what} was not copied ({reason}); its timecode {timecode} is kept as a tag of the video stream")
        return None
    warn(f"{what} was left out ({reason}); use {kind_fix} to keep it")
    return None

