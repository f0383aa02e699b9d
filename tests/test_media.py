"""Tests for blurface.media: probe, decode, transcode with stream copy and exact timing."""

from __future__ import annotations

import contextlib
import errno
import os
import subprocess
import sys
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest
from conftest import (
    LEVELS,
    ClipSpec,
    decoded_images,
    level_of,
    make_audio_only,
    make_clip,
    make_image,
    marker_corner,
    packet_bytes,
    video_pts_seconds,
)

from blurface import media
from blurface.types import DecodedFrame, MediaError, OutputError, ProcessingError


def identity(frame: DecodedFrame) -> np.ndarray:
    return frame.image


def leftovers(folder: Path) -> list[str]:
    """Temporary files transcode may have left in ``folder``."""
    return sorted(p.name for p in folder.iterdir() if ".blurface-tmp-" in p.name)


def stream_starts(path: Path) -> dict[str, list[float]]:
    """Start time (s) of each stream, by kind."""
    with av.open(str(path)) as container:
        out: dict[str, list[float]] = {}
        for s in container.streams:
            start = float(s.start_time * s.time_base) if s.start_time is not None else float("nan")
            out.setdefault(s.type, []).append(start)
        return out


# --------------------------------------------------------------------------- probe


@pytest.mark.parametrize(
    ("name", "fps", "video_start"),
    [
        ("a.mp4", Fraction(30000, 1001), 0.0),
        ("b.mp4", Fraction(25), 0.5),
        ("c.mov", Fraction(24000, 1001), 0.25),
        ("d.mkv", Fraction(30), 0.5),
    ],
)
def test_probe_reports_exact_rate_start_and_count(video_factory, name, fps, video_start):
    path = video_factory(name, fps=fps, video_start=video_start, n_frames=20, audio=("aac",))
    info = media.probe(path)

    assert isinstance(info.fps, Fraction) and info.fps == fps
    assert isinstance(info.time_base, Fraction)
    assert info.start_time == pytest.approx(video_start, abs=0.002)
    assert info.frame_count == 20
    assert info.duration == pytest.approx(20 / fps, abs=0.002)
    assert (info.width, info.height, info.rotation) == (64, 48, 0)
    assert info.codec == "h264" and info.pix_fmt == "yuv420p"
    assert [s.kind for s in info.streams] == ["video", "audio"]
    assert info.path == str(path)


@pytest.mark.parametrize(("rotation", "size"), [(0, (64, 48)), (90, (48, 64)), (180, (64, 48)), (270, (48, 64))])
def test_probe_reports_display_size_under_rotation(video_factory, rotation, size):
    info = media.probe(video_factory(rotation=rotation, n_frames=3))
    assert info.rotation == rotation
    assert (info.width, info.height) == size


def test_probe_lists_every_stream_with_language(video_factory):
    path = video_factory("multi.mkv", audio=("aac", "pcm_s16le"), languages=("eng", "fra"), subtitles=True)
    info = media.probe(path)
    assert [(s.index, s.kind, s.codec, s.language) for s in info.streams] == [
        (0, "video", "h264", None),
        (1, "audio", "aac", "eng"),
        (2, "audio", "pcm_s16le", "fra"),
        (3, "subtitle", "subrip", "eng"),
    ]
    assert media.probe(path).to_dict() == info.to_dict()  # plain data, stable


def test_probe_frame_count_excludes_frames_cut_by_an_edit_list(video_factory):
    # Frames with negative pts sit before the MP4 edit list start: stored, never shown.
    path = video_factory(video_start=-0.1, n_frames=30)
    info = media.probe(path)
    assert info.frame_count == 27
    assert sum(1 for _ in media.iter_frames(info)) == 27
    dst = path.with_name("out.mp4")
    media.transcode(info, dst, identity)
    out = media.probe(dst)
    assert (out.frame_count, out.start_time) == (27, pytest.approx(info.start_time, abs=1e-6))



# --------------------------------------------------------------------------- AVI

# An mp3 encoder, as in the report's ``ffmpeg -c:a mp3``; MP2 (which AVI also holds) if this FFmpeg lacks one.
AVI_AUDIO = next((c for c in ("libmp3lame", "mp3", "mp2") if c in av.codecs_available), "mp2")
AVI_FPS = Fraction(30000, 1001)


def make_avi(path: Path, video_codec: str, n_frames: int = 45) -> Path:
    """A 1.5 s AVI (45 frames at 29.97 fps, 320x240) with audio, muxed by FFmpeg (through PyAV).

    ``libx264`` uses x264's default B-frames and pyramid, as ``ffmpeg -c:v libx264`` does.
    FFmpeg shifts every stream so that the audio encoder's priming does not start before
    zero; the AVI muxer then stores an empty chunk for the slot the video skips.
    """
    out = av.open(str(path), "w", format="avi")
    video = out.add_stream(video_codec, rate=AVI_FPS)
    video.width, video.height, video.pix_fmt = 320, 240, "yuv420p"
    if video_codec == "libx264":
        video.options = {"crf": "18"}
    audio = out.add_stream(AVI_AUDIO, rate=44100, layout="mono")
    for i in range(n_frames):
        frame = av.VideoFrame.from_ndarray(make_image(i, 320, 240), format="bgr24")
        frame.pts, frame.time_base = i, 1 / AVI_FPS
        out.mux(video.encode(frame))
    out.mux(video.encode())
    samples = int(n_frames / AVI_FPS * 44100)
    for start in range(0, samples, 1152):
        t = np.arange(start, min(samples, start + 1152)) / 44100
        frame = av.AudioFrame.from_ndarray((0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None], format="fltp",
                                           layout="mono")
        frame.sample_rate, frame.pts, frame.time_base = 44100, start, Fraction(1, 44100)
        out.mux(audio.encode(frame))
    out.mux(audio.encode())
    out.close()
    return path


def avi_slots(path: Path) -> list[float]:
    """Seconds of each stored (non-empty) video chunk of an AVI: where its pictures are shown."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        return sorted(float(e.timestamp * stream.time_base) for e in stream.index_entries if e.size > 0)


@pytest.mark.parametrize("codec", ["mpeg4", "libx264"])
def test_avi_is_counted_timed_and_masked_end_to_end(tmp_path, codec, capsys):
    """Issue 21 #8: mpeg4 + mp3 AVI "decoded only 45 of 46 frames"; H.264 AVI had its frames' times scrambled."""
    from blurface.cli import main

    src = make_avi(tmp_path / "x.avi", codec)
    with av.open(str(src)) as container:
        stated = container.streams.video[0].frames
    if codec == "mpeg4":  # the case of the report: the header counts an empty chunk
        assert stated == 46, "the AVI should state 46 frames (one empty chunk) for this test to mean anything"
    info = media.probe(src)
    assert info.frame_count == 45
    frames = list(media.iter_frames(info))
    assert [level_of(f.image) for f in frames] == [i % len(LEVELS) for i in range(45)]
    # Each picture at its own slot, in order: B-frames reordered the pictures but not the packets' times.
    times = [f.time for f in frames]
    slots = avi_slots(src)
    assert [t - times[0] for t in times] == pytest.approx([s - slots[0] for s in slots], abs=1e-6)
    assert list(media.frame_times(info) - times[0]) == pytest.approx([t - times[0] for t in times], abs=1e-6)
    assert level_of(media.frame_at(info, 31)) == 31 % len(LEVELS)  # a seek and a range decode

    assert main([str(src), "--all", "-q"]) == 0, capsys.readouterr().err
    out = tmp_path / "x.blurred.mp4"
    result = media.probe(out)
    assert result.frame_count == 45
    assert [level_of(im) for im in decoded_images(out)] == [i % len(LEVELS) for i in range(45)]
    shown = video_pts_seconds(out)
    assert [t - shown[0] for t in shown] == pytest.approx([s - slots[0] for s in slots], abs=1e-3)
    assert result.duration == pytest.approx(slots[-1] - slots[0] + float(1 / AVI_FPS), abs=1e-3)


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda d: d / "missing.mp4", "no such file"),
        (lambda d: d, "is a directory"),
        (lambda d: _write(d / "empty.mp4", b""), "is empty"),
        (lambda d: _write(d / "noise.mp4", np.random.default_rng(1).bytes(4096)), "not a readable video"),
        (lambda d: _write(d / "notes.mp4", b"just some text, not a video\n" * 100), "not a readable video"),
        (lambda d: make_audio_only(d / "song.m4a"), "has no video stream"),
        (lambda d: make_audio_only(d / "song.mp4"), "has no video stream"),
    ],
    ids=["missing", "directory", "empty", "random-bytes", "text-as-mp4", "audio-only-m4a", "audio-only-mp4"],
)
def test_probe_refuses_non_videos(tmp_path, make, message):
    path = make(tmp_path)
    with pytest.raises(MediaError, match=message) as caught:
        media.probe(path)
    assert str(path) in str(caught.value)


@pytest.mark.parametrize("ext", [".png", ".jpg"])
def test_probe_refuses_still_images(tmp_path, ext):
    path = tmp_path / f"photo{ext}"
    cv2.imwrite(str(path), np.full((48, 64, 3), 128, np.uint8))
    with pytest.raises(MediaError, match="is a still image, not a video"):
        media.probe(path)


def test_probe_wraps_av_errors(tmp_path):
    path = _write(tmp_path / "noise.mkv", b"\x1a\x45\xdf\xa3" + bytes(200))  # EBML magic, then nothing
    with pytest.raises(MediaError) as caught:
        media.probe(path)
    assert isinstance(caught.value.__cause__, av.error.FFmpegError)


# --------------------------------------------------------------------------- iter_frames


def test_iter_frames_yields_every_frame_in_order(video_factory):
    info = media.probe(video_factory(n_frames=14, fps=Fraction(30000, 1001), video_start=0.5))
    frames = list(media.iter_frames(info))

    assert [f.index for f in frames] == list(range(14))
    assert [level_of(f.image) for f in frames] == [i % len(LEVELS) for i in range(14)]
    assert frames[0].time == pytest.approx(0.5, abs=1e-3)
    assert frames[1].time - frames[0].time == pytest.approx(1001 / 30000, abs=1e-4)
    for f in frames:
        assert f.image.shape == (48, 64, 3) and f.image.dtype == np.uint8
        assert f.image.flags["C_CONTIGUOUS"]
        assert f.full is None and f.full_image() is f.image


@pytest.mark.parametrize("spec", [dict(vfr=True), dict(video_start=0.5)])
def test_frame_at_a_time_is_the_frame_on_screen_then(video_factory, spec):
    info = media.probe(video_factory(n_frames=14, **spec))
    frames = list(media.iter_frames(info))
    times = media.frame_times(info)
    ends = [f.time for f in frames[1:]] + [frames[-1].time + 1 / float(info.fps)]
    for i in (0, 5, 13):
        assert level_of(media.frame_at(info, frames[i].time, times=times)) == i % len(LEVELS)
        # Halfway to the next frame the same frame is still on screen.
        halfway = (frames[i].time + ends[i]) / 2
        assert np.array_equal(media.frame_at(info, halfway), frames[i].image)
        assert np.array_equal(media.frame_at(info, i), frames[i].image)  # an int is an index
    for outside in (frames[0].time - 0.01, ends[-1] + 0.01):
        with pytest.raises(MediaError, match="has no frame at"):
            media.frame_at(info, outside, times=times)


def test_iter_frames_scales_and_gives_full_frame_lazily(video_factory):
    info = media.probe(video_factory(width=160, height=120, n_frames=4))
    for f in media.iter_frames(info, size=(80, 60)):
        assert f.image.shape == (60, 80, 3)
        full = f.full_image()
        assert full.shape == (120, 160, 3) and full.flags["C_CONTIGUOUS"]
        assert level_of(full) == level_of(f.image) == f.index % len(LEVELS)


def test_iter_frames_rgb_is_bgr_reversed_and_full_stays_bgr(video_factory):
    info = media.probe(video_factory(n_frames=2))
    bgr = [f.image for f in media.iter_frames(info)]
    for f, b in zip(media.iter_frames(info, fmt="rgb24"), bgr, strict=True):
        np.testing.assert_allclose(f.image.astype(int), b[..., ::-1].astype(int), atol=2)
        np.testing.assert_array_equal(f.full_image(), b)


@pytest.mark.parametrize(("rotation", "corner"), [(0, "tl"), (90, "tr"), (180, "br"), (270, "bl")])
def test_iter_frames_applies_rotation(video_factory, rotation, corner):
    info = media.probe(video_factory(width=64, height=48, rotation=rotation, n_frames=2))
    for f in media.iter_frames(info, size=(info.width // 2, info.height // 2)):
        assert f.image.shape[:2] == (info.height // 2, info.width // 2)
        assert marker_corner(f.image) == corner
        assert f.full_image().shape[:2] == (info.height, info.width)
        assert marker_corner(f.full_image()) == corner


def test_iter_frames_rejects_unknown_format(video_factory):
    info = media.probe(video_factory(n_frames=2))
    with pytest.raises(ValueError, match="fmt"):
        next(media.iter_frames(info, fmt="yuv420p"))


@pytest.mark.parametrize("rotation", [0, 90])
def test_gray_frames_are_scaled_luma_with_colour_thumbnail(video_factory, rotation):
    info = media.probe(video_factory(width=160, height=96, n_frames=3, rotation=rotation))
    frames = list(media.iter_frames(info, size=(info.width // 2, info.height // 2), fmt="gray"))
    assert len(frames) == 3
    for f in frames:
        assert f.image.shape == (info.height // 2, info.width // 2) and f.image.flags["C_CONTIGUOUS"]
        full = f.full_image()
        assert full.shape == (info.height, info.width, 3)
        # Same picture and orientation as the full frame's grey version (the Y plane is
        # limited range, 16-235, so compare by correlation rather than by level).
        grey = cv2.resize(cv2.cvtColor(full, cv2.COLOR_BGR2GRAY), (info.width // 2, info.height // 2))
        assert np.corrcoef(grey.ravel().astype(float), f.image.ravel().astype(float))[0, 1] > 0.98
        assert f.thumb is not None and f.thumb.shape[2] == 3 and f.thumb.shape[1] in (64, round(64 * 96 / 160))


# --------------------------------------------------------------------------- truncated input


def _cut_in_half(path: Path) -> Path:
    data = path.read_bytes()
    cut = path.with_name("cut_" + path.name)
    cut.write_bytes(data[: len(data) // 2])
    return cut


def test_truncated_mp4_with_index_at_end_is_refused_by_probe(video_factory):
    cut = _cut_in_half(video_factory(n_frames=60, width=160, height=120, audio=("aac",)))
    with pytest.raises(MediaError, match="damaged, incomplete"):
        media.probe(cut)


@pytest.mark.parametrize("name", ["fast.mp4", "cut.mkv"])
def test_truncated_file_is_refused_after_decoding(video_factory, tmp_path, name):
    # faststart: the index is intact up front and promises 60 frames; the data stops halfway.
    cut = _cut_in_half(video_factory(name, n_frames=60, width=160, height=120, audio=("aac",), faststart=True))
    info = media.probe(cut)
    assert info.frame_count == 60
    with pytest.raises(MediaError, match=r"decoded only \d+ of 60 frames: the file is truncated or damaged"):
        for _ in media.iter_frames(info):
            pass

    dst = tmp_path / "out.mp4"
    with pytest.raises(MediaError, match="truncated"):
        media.transcode(info, dst, identity)
    assert not dst.exists() and leftovers(tmp_path) == []


def test_damaged_packets_are_skipped_then_reported_as_media_error(video_factory, caplog):
    path = video_factory(n_frames=60, width=160, height=120, faststart=True)
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(1)
    for k in range(5):  # garbage over five spots in the middle of the picture data
        at = int(len(data) * (0.3 + 0.1 * k))
        data[at : at + 300] = rng.bytes(300)
    path.write_bytes(bytes(data))
    info = media.probe(path)

    # One error that says how many packets were skipped (each one is only in the debug log).
    with pytest.raises(
        MediaError, match=r"decoded only \d+ of 60 frames: the file is truncated or damaged \(\d+ damaged video packets"
    ):
        for _ in media.iter_frames(info):
            pass


# --------------------------------------------------------------------------- transcode: timing and streams


def test_transcode_identity_keeps_audio_bytes_timing_and_tags(video_factory, tmp_path):
    src = video_factory(
        "in.mp4", fps=Fraction(30000, 1001), video_start=0.5, n_frames=20, audio=("aac",), languages=("eng",),
        title="blurface test clip",
    )
    info = media.probe(src)
    dst = tmp_path / "out.mp4"
    calls: list[int] = []

    keep = media.EncodeSettings(keep_metadata=True)
    warnings = media.transcode(info, dst, identity, settings=keep, progress=calls.append)

    assert warnings == []
    assert calls == list(range(1, 21))
    out = media.probe(dst)
    assert out.frame_count == 20
    assert out.fps == info.fps
    assert out.start_time == pytest.approx(info.start_time, abs=1e-6)
    assert out.duration == pytest.approx(info.duration, abs=1e-6)
    assert video_pts_seconds(dst) == pytest.approx(video_pts_seconds(src), abs=1e-6)
    assert stream_starts(dst)["audio"] == pytest.approx(stream_starts(src)["audio"], abs=1e-6)
    assert packet_bytes(dst, "audio") == packet_bytes(src, "audio")
    assert [level_of(i) for i in decoded_images(dst)] == [i % len(LEVELS) for i in range(20)]
    assert [(s.kind, s.codec, s.language) for s in out.streams] == [("video", "h264", None), ("audio", "aac", "eng")]
    with av.open(str(dst)) as container:
        assert container.metadata.get("title") == "blurface test clip"
    assert leftovers(tmp_path) == []


def test_transcode_keeps_variable_frame_timing(tmp_path):
    spec = ClipSpec(vfr=True, n_frames=18, audio=("aac",))
    src = make_clip(tmp_path / "vfr.mp4", spec)
    expected = [float(p * spec.video_time_base) for p in spec.frame_pts]
    assert video_pts_seconds(src) == pytest.approx(expected, abs=1e-6)
    for name in ("out.mp4", "out.mkv"):
        media.transcode(media.probe(src), tmp_path / name, identity)
        assert video_pts_seconds(tmp_path / name) == pytest.approx(expected, abs=0.0006)  # mkv: 1 ms ticks

    # Matroska gives no frame count: the estimate (duration x average rate) is off
    # for VFR, and that must not read as truncation.
    mkv = media.probe(tmp_path / "out.mkv")
    assert sum(1 for _ in media.iter_frames(mkv)) == 18
    media.transcode(mkv, tmp_path / "again.mp4", identity)
    assert video_pts_seconds(tmp_path / "again.mp4") == pytest.approx(expected, abs=0.0006)


def test_transcode_to_mkv_keeps_video_start_despite_aac_priming(video_factory, tmp_path):
    # AAC from MP4 starts at -1024 samples; FFmpeg's Matroska default would shift
    # every stream by those 21 ms to start at zero.
    src = video_factory(fps=Fraction(60), video_start=0.5, n_frames=12, audio=("aac",))
    info = media.probe(src)
    media.transcode(info, tmp_path / "out.mkv", identity)
    out = media.probe(tmp_path / "out.mkv")
    assert out.start_time == pytest.approx(info.start_time, abs=0.001)
    assert packet_bytes(tmp_path / "out.mkv", "audio") == packet_bytes(src, "audio")


def test_transcode_without_audio(video_factory, tmp_path):
    info = media.probe(video_factory(n_frames=6))
    assert media.transcode(info, tmp_path / "out.mp4", identity) == []
    out = media.probe(tmp_path / "out.mp4")
    assert [s.kind for s in out.streams] == ["video"] and out.frame_count == 6


def test_transcode_mkv_keeps_every_audio_track_and_subtitles_bit_exact(video_factory, tmp_path):
    src = video_factory("in.mkv", audio=("aac", "pcm_s16le"), languages=("eng", "fra"), subtitles=True, n_frames=40)
    dst = tmp_path / "out.mkv"
    assert media.transcode(media.probe(src), dst, identity) == []

    out = media.probe(dst)
    assert [(s.kind, s.codec, s.language) for s in out.streams] == [
        ("video", "h264", None),
        ("audio", "aac", "eng"),
        ("audio", "pcm_s16le", "fra"),
        ("subtitle", "subrip", "eng"),
    ]
    assert packet_bytes(dst, "audio") == packet_bytes(src, "audio")
    assert packet_bytes(dst, "subtitle") == packet_bytes(src, "subtitle")


def test_transcode_pcm_into_mp4_warns_and_keeps_the_stream(video_factory, tmp_path):
    src = video_factory("in.mov", audio=("aac", "pcm_s16le"), languages=("eng", "fra"))
    dst = tmp_path / "out.mp4"
    warnings = media.transcode(media.probe(src), dst, identity)

    assert len(warnings) == 1
    assert "audio stream #2 (pcm_s16le, fra) was re-encoded as AAC" in warnings[0]
    assert ".mov" in warnings[0]
    out = media.probe(dst)
    assert [(s.kind, s.codec, s.language) for s in out.streams] == [
        ("video", "h264", None),
        ("audio", "aac", "eng"),
        ("audio", "aac", "fra"),
    ]
    assert packet_bytes(dst, "audio")[0] == packet_bytes(src, "audio")[0]  # the AAC track is still copied
    with av.open(str(dst)) as container:
        pcm = container.streams.audio[1]
        assert float(pcm.start_time * pcm.time_base) == pytest.approx(0.0, abs=0.001)
        assert float(pcm.duration * pcm.time_base) == pytest.approx(24 / 30, abs=0.03)


def test_transcode_pcm_into_mov_is_copied(video_factory, tmp_path):
    src = video_factory("in.mov", audio=("pcm_s16le",))
    assert media.transcode(media.probe(src), tmp_path / "out.mov", identity) == []
    assert packet_bytes(tmp_path / "out.mov", "audio") == packet_bytes(src, "audio")


def test_transcode_srt_into_mp4_becomes_mov_text_with_a_warning(video_factory, tmp_path):
    src = video_factory("in.mkv", subtitles=True, n_frames=40)
    dst = tmp_path / "out.mp4"
    warnings = media.transcode(media.probe(src), dst, identity)
    assert len(warnings) == 1 and "converted to mov_text" in warnings[0] and ".mkv" in warnings[0]
    out = media.probe(dst)
    assert [(s.kind, s.codec, s.language) for s in out.streams][1] == ("subtitle", "mov_text", "eng")
    with av.open(str(dst)) as container:
        stream = container.streams.subtitles[0]
        texts = [stream.codec_context.decode2(p)[0].ass.decode() for p in container.demux(stream) if p.size]
    assert [t.rsplit(",", 1)[-1] for t in texts] == ["cue 1"]


def test_transcode_drops_an_attachment_mp4_cannot_hold_with_a_warning(video_factory, tmp_path):
    plain = video_factory("plain.mkv", n_frames=4)
    src = tmp_path / "font.mkv"
    with av.open(str(plain)) as inp, av.open(str(src), "w") as out:
        video = out.add_stream_from_template(inp.streams.video[0])
        out.add_attachment("font.ttf", "application/x-truetype-font", b"\0\1\0\0" + b"\0" * 60)  # a TrueType head
        for packet in inp.demux(inp.streams.video[0]):
            if packet.size:
                packet.stream = video
                out.mux(packet)

    kept = media.transcode(media.probe(src), tmp_path / "out.mkv", identity)
    assert kept == [] and [s.kind for s in media.probe(tmp_path / "out.mkv").streams] == ["video", "attachment"]

    warnings = media.transcode(media.probe(src), tmp_path / "out.mp4", identity)
    assert len(warnings) == 1 and "attachment stream #1" in warnings[0] and "left out" in warnings[0]
    assert ".mkv" in warnings[0]


@pytest.mark.parametrize("out_name", ["out.mov", "out.mkv"])
def test_transcode_timecode_track_is_kept_as_a_tag_with_a_warning(video_factory, tmp_path, out_name):
    src = video_factory("in.mov", timecode="01:00:00:00", audio=("aac",), n_frames=6)
    assert [s.kind for s in media.probe(src).streams] == ["video", "audio", "data"]

    keep = media.EncodeSettings(keep_metadata=True)  # by default the timecode (a time of day) is dropped
    warnings = media.transcode(media.probe(src), tmp_path / out_name, identity, settings=keep)
    assert len(warnings) == 1
    assert "data stream #2" in warnings[0] and "timecode 01:00:00:00 is kept" in warnings[0]
    with av.open(str(tmp_path / out_name)) as container:
        tags = {k.lower(): v for k, v in container.streams.video[0].metadata.items()}
    assert tags["timecode"] == "01:00:00:00"
    assert packet_bytes(tmp_path / out_name, "audio") == packet_bytes(src, "audio")


# --------------------------------------------------------------------------- transcode: pictures


def test_transcode_pads_odd_sizes_by_repeating_the_edge(video_factory, tmp_path):
    src = video_factory(width=65, height=49, pix_fmt="yuv444p", n_frames=6)
    media.transcode(media.probe(src), tmp_path / "out.mp4", identity)
    out = media.probe(tmp_path / "out.mp4")
    # 4:4:4 in, 4:4:4 out (issue 16); the sides stay even, as 4:2:0 players expect.
    assert (out.width, out.height, out.pix_fmt) == (66, 50, "yuv444p")
    images = decoded_images(tmp_path / "out.mp4")
    assert [level_of(i) for i in images] == [i % len(LEVELS) for i in range(6)]
    last = images[3].astype(int)  # bright frame: a black pad would show
    assert np.abs(last[:, -1] - last[:, -2]).max() <= 6
    assert np.abs(last[-1, :] - last[-2, :]).max() <= 6


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv444p"])
def test_transcode_rotated_input_gives_upright_output_without_rotation(video_factory, tmp_path, pix_fmt):
    src = video_factory(width=64, height=48, rotation=90, pix_fmt=pix_fmt, n_frames=6)
    media.transcode(media.probe(src), tmp_path / "out.mp4", identity)

    out = media.probe(tmp_path / "out.mp4")
    assert (out.width, out.height, out.rotation) == (48, 64, 0)
    with av.open(str(tmp_path / "out.mp4")) as container:
        frame = next(container.decode(video=0))
        assert frame.rotation == 0
        assert (frame.width, frame.height) == (48, 64)
    images = decoded_images(tmp_path / "out.mp4")
    assert all(marker_corner(i) == "tr" for i in images)
    assert [level_of(i) for i in images] == [i % len(LEVELS) for i in range(6)]


@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv444p"])
def test_transcode_identity_does_not_shift_colours(video_factory, tmp_path, pix_fmt):
    # Flat grey frames survive x264 almost exactly; a lossy colour round trip would
    # shift them all the same way.
    src = video_factory(width=64, height=48, n_frames=6, pix_fmt=pix_fmt)
    media.transcode(media.probe(src), tmp_path / "out.mp4", identity)
    before = np.stack([i.astype(float) for i in decoded_images(src)])
    after = np.stack([i.astype(float) for i in decoded_images(tmp_path / "out.mp4")])
    assert abs((after - before).mean()) < 0.5


def test_transcode_changes_only_what_process_changed(video_factory, tmp_path):
    src = video_factory(width=160, height=120, n_frames=6)

    def paint(frame: DecodedFrame) -> np.ndarray:
        frame.image[60:100, 80:140] = (0, 0, 255)  # red box, BGR
        return frame.image

    media.transcode(media.probe(src), tmp_path / "out.mp4", paint)
    for before, after in zip(decoded_images(src), decoded_images(tmp_path / "out.mp4"), strict=True):
        box = after[64:96, 84:136].reshape(-1, 3).mean(axis=0)
        assert box[2] > 200 and box[0] < 40 and box[1] < 40
        np.testing.assert_allclose(after[:50].astype(int), before[:50].astype(int), atol=4)


def test_transcode_checks_what_process_returns(video_factory, tmp_path):
    info = media.probe(video_factory(n_frames=4))
    with pytest.raises(ProcessingError, match="process\\(\\) must return a uint8 array of shape"):
        media.transcode(info, tmp_path / "out.mp4", lambda f: f.image[:10])
    assert not (tmp_path / "out.mp4").exists() and leftovers(tmp_path) == []


# --------------------------------------------------------------------------- transcode: output safety


def test_transcode_refuses_bad_destinations_before_any_work(video_factory, tmp_path):
    src = video_factory("in.mp4", n_frames=4)
    info = media.probe(src)
    existing = tmp_path / "existing.mp4"
    existing.write_bytes(b"keep me")
    called: list[int] = []

    def process(frame: DecodedFrame) -> np.ndarray:
        called.append(frame.index)
        return frame.image

    cases = [
        (src, "is the input file itself"),
        (tmp_path / "." / "in.mp4", "is the input file itself"),
        (existing, "exists: use --overwrite to replace it"),
        (tmp_path / "missing" / "out.mp4", "output folder does not exist"),
        (tmp_path, "is a directory"),
        (tmp_path / "out.webm", r"extension \.webm is not supported: use one of \.mp4, \.mov, \.mkv"),
        (tmp_path / "out.avi", "not supported"),
    ]
    for dst, message in cases:
        with pytest.raises(OutputError, match=message):
            media.check_output(src, dst)
        with pytest.raises(OutputError, match=message):
            media.transcode(info, dst, process)
    with pytest.raises(OutputError, match="is the input file itself"):
        media.transcode(info, src, process, overwrite=True)
    assert called == []
    assert existing.read_bytes() == b"keep me"
    assert leftovers(tmp_path) == []


def test_transcode_overwrite_replaces_existing_output(video_factory, tmp_path):
    info = media.probe(video_factory("in.mp4", n_frames=4))
    dst = tmp_path / "out.mp4"
    dst.write_bytes(b"old")
    media.transcode(info, dst, identity, overwrite=True)
    assert media.probe(dst).frame_count == 4


@contextlib.contextmanager
def read_only_folder(path: Path) -> Iterator[Path]:
    """``path`` as a folder nobody can write to: a read-only mount as root (who ignores
    permissions, and CI runs as root), a folder without write permission otherwise."""
    path.mkdir()
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(path)], capture_output=True)
        if done.returncode != 0:
            why = f"root, and cannot mount a read-only tmpfs: {done.stderr.decode().strip()}"
            if os.environ.get("CI", "").lower() == "true":
                pytest.fail(why)
            pytest.skip(why)
        try:
            yield path
        finally:
            subprocess.run(["umount", str(path)], check=True)
    else:
        path.chmod(0o500)
        try:
            yield path
        finally:
            path.chmod(0o700)


def test_transcode_refuses_read_only_folder(video_factory, tmp_path):
    info = media.probe(video_factory("in.mp4", n_frames=2))
    with read_only_folder(tmp_path / "locked") as locked:
        with pytest.raises(OutputError, match="not writable"):
            media.transcode(info, locked / "out.mp4", identity)
        assert list(locked.iterdir()) == []


@pytest.mark.parametrize("error", [RuntimeError("boom"), KeyboardInterrupt()])
def test_failure_inside_process_leaves_nothing(video_factory, tmp_path, error):
    info = media.probe(video_factory("in.mp4", n_frames=30, audio=("aac",)))
    dst = tmp_path / "out.mp4"
    seen: list[str] = []

    def process(frame: DecodedFrame) -> np.ndarray:
        if frame.index == 15:
            seen.extend(leftovers(tmp_path))  # the temp file exists while working...
            raise error
        return frame.image

    with pytest.raises(type(error)):
        media.transcode(info, dst, process)
    assert len(seen) == 1 and seen[0].startswith(".out.mp4.blurface-tmp-")
    assert not dst.exists() and leftovers(tmp_path) == []  # ...and is gone after


def test_disk_full_becomes_processing_error(video_factory, tmp_path):
    info = media.probe(video_factory("in.mp4", n_frames=4))

    def process(frame: DecodedFrame) -> np.ndarray:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(ProcessingError, match="no space left"):
        media.transcode(info, tmp_path / "out.mp4", process)
    assert leftovers(tmp_path) == []


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_cleanup_stale_temps_removes_only_dead_runs(video_factory, tmp_path):
    dst = tmp_path / "out.mp4"
    stale = tmp_path / f".out.mp4.blurface-tmp-{_dead_pid()}.mp4"
    live = tmp_path / f".out.mp4.blurface-tmp-{os.getpid()}.mp4"
    other = tmp_path / f".other.mp4.blurface-tmp-{_dead_pid()}.mp4"
    for p in (stale, live, other):
        p.write_bytes(b"partial")

    assert media.cleanup_stale_temps(dst) == [str(stale)]
    assert not stale.exists() and live.exists() and other.exists()

    live.unlink()
    stale.write_bytes(b"partial")
    media.transcode(media.probe(video_factory("in.mp4", n_frames=2)), dst, identity)
    assert not stale.exists() and dst.exists()


@pytest.mark.parametrize(
    ("src", "expected"),
    [
        ("/v/video.mp4", "/v/video.blurred.mp4"),
        ("/v/clip.MOV", "/v/clip.blurred.mov"),
        ("/v/film.mkv", "/v/film.blurred.mkv"),
        ("/v/old.avi", "/v/old.blurred.mp4"),
        ("/v/stream.webm", "/v/stream.blurred.mp4"),
        ("rel/a.b.mp4", "rel/a.b.blurred.mp4"),
    ],
)
def test_default_output_path(src, expected):
    assert media.default_output_path(src) == Path(expected)


# --------------------------------------------------------------------------- shared sample clip


@pytest.mark.shared
def test_hamilton_clip_keeps_its_edit_list_offset_and_audio(shared_media, tmp_path):
    src = shared_media / "hamilton_clip.mp4"
    info = media.probe(src)
    assert info.start_time == pytest.approx(0.852, abs=0.001)  # video starts after the audio
    assert info.fps == Fraction(2997, 100) and info.frame_count == 275

    dst = tmp_path / "hamilton.blurred.mp4"
    assert media.transcode(info, dst, identity) == []

    out = media.probe(dst)
    assert abs(out.start_time - info.start_time) < 1 / 29.97
    assert out.start_time == pytest.approx(info.start_time, abs=1e-6)
    assert out.frame_count == info.frame_count
    assert out.duration == pytest.approx(info.duration, abs=1 / 29.97)
    assert stream_starts(dst)["audio"] == pytest.approx(stream_starts(src)["audio"], abs=1e-6)
    assert packet_bytes(dst, "audio") == packet_bytes(src, "audio")
