"""Masters in, masters out: the masked video keeps the input's format (issue 16).

Each test makes a short master with audio (a face from skimage's astronaut photo moving
across a textured background), runs ``blurface --all`` on it and checks, from the files:
the codec family, profile, pix_fmt, colour tags and HDR side data; the face masked (from
pixels, at the known face box); PSNR outside the masks at the input's bit depth; the
audio packets bit-exact.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from blurface import formats
from blurface.cli import main
from blurface.evaluate import box_is_masked
from blurface.mask import padded_boxes
from blurface.media.common import pix_info, plane_samples

W, H, FPS, N = 320, 240, 25, 20
FACE = 72  # face crop side, px
PSNR_FLOOR = 45.0


def _face() -> np.ndarray:
    from skimage.data import astronaut

    rgb = astronaut()[30:210, 140:320]  # her face, 180 px square
    return cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), (FACE, FACE), interpolation=cv2.INTER_AREA)


def _background() -> np.ndarray:
    """Smooth gradients plus mild texture: something an encoder must work for, but not noise."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    bgr = np.stack([80 + 60 * np.sin(x / 23), 100 + 50 * np.cos(y / 17), 120 + 40 * np.sin((x + y) / 31)], axis=2)
    return np.clip(bgr, 0, 255).astype(np.float32)


def face_box(t: float, speed: float) -> tuple[int, int, int, int]:
    """xyxy of the face at frame time ``t`` (in frames): it moves right by ``speed`` px a frame."""
    x = int(round(20 + speed * t))
    y = 80
    return x, y, x + FACE, y + FACE


def picture(t: float, speed: float) -> np.ndarray:
    """``(H, W, 3) uint16`` BGR in 16-bit: the face pasted at its place at time ``t``."""
    image = _background().copy()
    x0, y0, x1, y1 = face_box(t, speed)
    image[y0:y1, x0:x1] = _face()
    return np.round(image * 257).astype(np.uint16)


@dataclass
class Master:
    name: str
    encoder: str
    pix_fmt: str
    options: dict[str, str] = field(default_factory=dict)
    colour: tuple[int, int, int, int] = (1, 1, 1, 1)  # primaries, trc, space, range
    audio: str = "pcm_s16le"
    interlaced: bool = False  # top field first, each field from its own moment
    speed: float = 4.0


MASTERS = {
    "prores_hq": Master("prores_hq.mov", "prores_ks", "yuv422p10le", {"profile": "3", "vendor": "apl0"}),
    "hevc_hlg": Master(
        "hevc_hlg.mp4", "libx265", "yuv420p10le",
        {"crf": "14", "preset": "ultrafast", "x265-params": "log-level=error:repeat-headers=1:"
         "master-display=G(13250,34500)B(7500,3000)R(34000,16000)WP(15635,16450)L(10000000,50):max-cll=1000,400"},
        colour=(9, 18, 9, 1), audio="aac",
    ),
    "h264_444": Master("h264_444.mkv", "libx264", "yuv444p", {"crf": "12", "preset": "ultrafast"}),
    "av1": Master("av1.mp4", "libsvtav1", "yuv420p", {"crf": "15", "preset": "12"}, audio="aac"),
    "mpeg2_tff": Master(
        "mpeg2_tff.mov", "mpeg2video", "yuv420p",
        {"flags": "+ilme+ildct+qscale", "global_quality": str(2 * 118), "qmin": "1"},
        colour=(5, 5, 5, 1), interlaced=True, speed=10.0,
    ),
    "mpeg4": Master("mpeg4.mp4", "mpeg4", "yuv420p", {"flags": "+qscale", "global_quality": str(2 * 118)},
                    audio="aac"),
}


def _tff(graph_frame: av.VideoFrame, graph: av.filter.Graph) -> av.VideoFrame:
    graph.push(graph_frame)
    return graph.pull()


def make_master(path: Path, m: Master) -> Path:
    """Write ``m`` to ``path``: N frames of the moving face, and a second of audio."""
    import os

    os.environ.setdefault("SVT_LOG", "1")
    with av.open(str(path), "w") as out:
        v = out.add_stream(m.encoder, rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, m.pix_fmt
        ctx = v.codec_context
        ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range = m.colour
        if m.interlaced:
            ctx.field_order = 2  # tt
        v.options = dict(m.options)
        a = out.add_stream(m.audio, rate=48000, layout="stereo")
        graph = None
        if m.interlaced:
            # setfield flags each frame interlaced, top field first (PyAV cannot set the flags).
            graph = av.filter.Graph()
            src = graph.add_buffer(width=W, height=H, format=m.pix_fmt, time_base=Fraction(1, FPS))
            setfield = graph.add("setfield", "tff")
            sink = graph.add("buffersink")
            src.link_to(setfield)
            setfield.link_to(sink)
            graph.configure()
        for i in range(N):
            image = picture(i, m.speed)
            if m.interlaced:
                image[1::2] = picture(i + 0.5, m.speed)[1::2]  # the bottom field is half a frame later
            frame = av.VideoFrame.from_ndarray(image, format="bgr48le")
            frame.colorspace, frame.color_range = m.colour[2], 2
            frame = frame.reformat(format=m.pix_fmt, dst_colorspace=m.colour[2], dst_color_range=m.colour[3])
            frame.color_primaries, frame.color_trc = m.colour[0], m.colour[1]
            frame.pts, frame.time_base = i, Fraction(1, FPS)
            if graph is not None:
                frame = _tff(frame, graph)
                frame.pts, frame.time_base = i, Fraction(1, FPS)
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
        samples = int(48000 * N / FPS)
        tone = (np.sin(np.arange(samples) * 2 * np.pi * 440 / 48000) * 8000).astype(np.int16)
        fmt = "s16" if m.audio.startswith("pcm") else "fltp"
        for start in range(0, samples, 1024):
            chunk = tone[start:start + 1024]
            if fmt == "s16":
                af = av.AudioFrame.from_ndarray(np.repeat(chunk[None], 2, 0).T.reshape(1, -1).copy(), format="s16",
                                                layout="stereo")
            else:
                af = av.AudioFrame.from_ndarray(np.repeat((chunk / 32768).astype(np.float32)[None], 2, 0),
                                                format="fltp", layout="stereo")
            af.sample_rate, af.pts = 48000, start
            out.mux(a.encode(af))
        out.mux(a.encode(None))
    return path


def planes(path: Path) -> list[list[np.ndarray]]:
    """Every frame's planes in their own depth (uint16 above 8 bits), in presentation order."""
    out = []
    with av.open(str(path)) as c:
        for frame in c.decode(video=0):
            depth = pix_info(frame.format.name).depth
            out.append([plane_samples(p, depth).copy() for p in frame.planes[:3]])
    return out


def bgr(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as c:
        return [f.to_ndarray(format="bgr24") for f in c.decode(video=0)]


def audio_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(audio=0) if p.size]


def stream_facts(path: Path) -> dict:
    with av.open(str(path)) as c:
        s = c.streams.video[0]
        ctx = s.codec_context
        first = next(c.decode(s))
        side = {str(t).split(".")[-1]: bytes(sd) for t, sd in first.side_data.items()}
        return {
            "codec": s.codec.canonical_name if hasattr(s.codec, "canonical_name") else ctx.name,
            "profile": ctx.profile,
            "pix_fmt": ctx.pix_fmt,
            "colour": (ctx.color_primaries, ctx.color_trc, ctx.colorspace, ctx.color_range),
            "field_order": formats.FIELD_ORDERS.get(int(ctx.field_order or 0)),
            "side": side,
        }


def psnr_outside(src: Path, dst: Path, plan: dict, pad: float) -> float:
    """PSNR of every plane outside the masked regions (plus 16 px of encoder bleed), at the input's depth."""
    a, b = planes(src), planes(dst)
    assert len(a) == len(b)
    depth = pix_info(stream_facts(src)["pix_fmt"]).depth
    peak = (1 << depth) - 1
    squared, count = 0.0, 0
    for index, (pa, pb) in enumerate(zip(a, b, strict=True)):
        keep = np.ones((H, W), bool)
        boxes = [bx["box"] for bx in plan["frames"][index]["boxes"] if bx["masked"]] if index < len(plan["frames"]) else []
        for x0, y0, x1, y1 in padded_boxes(np.asarray(boxes, np.float32).reshape(-1, 4), pad):
            keep[max(0, int(y0) - 16):int(y1) + 16, max(0, int(x0) - 16):int(x1) + 16] = False
        for qa, qb in zip(pa, pb, strict=True):
            k = cv2.resize(keep.astype(np.uint8), (qa.shape[1], qa.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
            d = qa[k].astype(np.float64) - qb[k].astype(np.float64)
            squared += float((d * d).sum())
            count += d.size
    mse = squared / max(1, count)
    return float("inf") if mse == 0 else 10 * np.log10(peak * peak / mse)


def _run(tmp_path: Path, m: Master, *extra: str) -> tuple[Path, Path, dict]:
    src = make_master(tmp_path / m.name, m)
    dst = tmp_path / ("out_" + m.name)
    plan = tmp_path / "plan.json"
    args = [str(src), "--all", "-o", str(dst), "--plan", str(plan), "-q", "--overwrite", "--preset", "ultrafast", *extra]
    assert main(args) == 0
    return src, dst, json.loads(plan.read_text())


def _face_masked(src: Path, dst: Path, m: Master, field_of: int | None = None) -> int:
    """Frames whose face box is hidden in the output; ``field_of``: judge one field's lines only."""
    masked = 0
    for i, (a, b) in enumerate(zip(bgr(src), bgr(dst), strict=True)):
        t = i + (0.5 if field_of == 1 else 0.0)
        box = face_box(t, m.speed)
        if field_of is not None:
            a, b = a[field_of::2], b[field_of::2]
            box = (box[0], box[1] // 2, box[2], box[3] // 2)
            a = cv2.resize(a, (W, H), interpolation=cv2.INTER_NEAREST)
            b = cv2.resize(b, (W, H), interpolation=cv2.INTER_NEAREST)
            box = (box[0], box[1] * 2, box[2], box[3] * 2)
        masked += box_is_masked(a, b, list(box))
    return masked


@pytest.mark.parametrize("key", ["prores_hq", "hevc_hlg", "h264_444", "av1"])
def test_master_keeps_its_format_and_is_masked(tmp_path, key):
    m = MASTERS[key]
    src, dst, plan = _run(tmp_path, m)
    before, after = stream_facts(src), stream_facts(dst)
    assert after["codec"] == before["codec"]
    assert after["profile"] == before["profile"]
    assert after["pix_fmt"] == before["pix_fmt"]
    assert after["colour"] == before["colour"]
    assert _face_masked(src, dst, m) == N
    assert psnr_outside(src, dst, plan, 0.4) >= PSNR_FLOOR
    assert audio_packets(dst) == audio_packets(src)
    if key == "hevc_hlg":
        assert {"MASTERING_DISPLAY_METADATA", "CONTENT_LIGHT_LEVEL"} <= set(before["side"])
    if "MASTERING_DISPLAY_METADATA" in before["side"]:
        assert after["side"]["MASTERING_DISPLAY_METADATA"] == before["side"]["MASTERING_DISPLAY_METADATA"]
        assert after["side"]["CONTENT_LIGHT_LEVEL"] == before["side"]["CONTENT_LIGHT_LEVEL"]


def test_interlaced_mpeg2_keeps_top_field_first_and_masks_both_fields(tmp_path):
    m = MASTERS["mpeg2_tff"]
    src, dst, plan = _run(tmp_path, m)
    before, after = stream_facts(src), stream_facts(dst)
    assert before["field_order"] == "tt"
    assert (after["codec"], after["pix_fmt"], after["field_order"]) == ("mpeg2video", "yuv420p", "tt")
    assert after["colour"] == before["colour"]
    # The face moves 5 px between fields: each field's face is judged on that field's lines.
    assert _face_masked(src, dst, m, field_of=0) == N
    assert _face_masked(src, dst, m, field_of=1) == N
    assert psnr_outside(src, dst, plan, 0.4) >= PSNR_FLOOR
    assert audio_packets(dst) == audio_packets(src)


def test_interlaced_mpeg2_with_deinterlace_is_progressive_and_masked(tmp_path):
    m = MASTERS["mpeg2_tff"]
    src, dst, _ = _run(tmp_path, m, "--deinterlace")
    after = stream_facts(dst)
    assert (after["codec"], after["field_order"]) == ("mpeg2video", "progressive")
    assert _face_masked(src, dst, m, field_of=0) == N
    assert audio_packets(dst) == audio_packets(src)


def test_codec_outside_the_table_falls_back_to_h264_with_one_line(tmp_path, capsys):
    m = MASTERS["mpeg4"]
    src, dst, plan = _run(tmp_path, m)
    lines = [line for line in capsys.readouterr().err.splitlines() if "writing H.264" in line]
    assert len(lines) == 1 and "mpeg4 yuv420p input" in lines[0], lines
    after = stream_facts(dst)
    assert (after["codec"], after["pix_fmt"]) == ("h264", "yuv420p")
    assert _face_masked(src, dst, m) == N
    assert audio_packets(dst) == audio_packets(src)
