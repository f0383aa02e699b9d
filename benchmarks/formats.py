"""Render speed and quality per default output path (issue 16: masters in, masters out).

For each input format it makes a short 1080p master (a moving face from skimage's astronaut
photo on a textured background), then times:

* plain: a PyAV decode + encode with the very encoder, pixel format and options blurface picks;
* blurface: ``media.transcode`` with a mask on the face in every frame (the render step;
  the analysis is the same for every format and is measured by ``benchmarks/speed.py``).

It reports fps for both, their ratio, and the PSNR of the masked output against the input
outside the masks, at the input's bit depth.

    python benchmarks/formats.py --seconds 2
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import av
import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from blurface import media  # noqa: E402
from blurface.mask import Blur, Masker, padded_boxes  # noqa: E402
from blurface.media.common import pix_info, plane_samples  # noqa: E402

W, H, FPS, FACE = 1920, 1080, 25, 300

CASES = {
    "H.264 8-bit 4:2:0": ("h264.mp4", "libx264", "yuv420p", {"crf": "14", "preset": "ultrafast"}, (1, 1, 1, 1), False),
    "H.264 4:4:4": ("h264_444.mkv", "libx264", "yuv444p", {"crf": "14", "preset": "ultrafast"}, (1, 1, 1, 1), False),
    "HEVC 10-bit HLG": ("hevc.mp4", "libx265", "yuv420p10le",
                        {"crf": "14", "preset": "ultrafast", "x265-params": "log-level=error"}, (9, 18, 9, 1), False),
    "ProRes 422 HQ": ("prores.mov", "prores_ks", "yuv422p10le", {"profile": "3"}, (1, 1, 1, 1), False),
    "AV1 8-bit": ("av1.mkv", "libsvtav1", "yuv420p", {"crf": "20", "preset": "12"}, (1, 1, 1, 1), False),
    "MPEG-2 4:2:0 tff": ("mpeg2.mov", "mpeg2video", "yuv420p",
                         {"flags": "+ilme+ildct+qscale", "global_quality": "236", "qmin": "1"}, (1, 1, 1, 1), True),
}


def face_box(i: int) -> np.ndarray:
    x = 200 + 12 * i
    return np.array([[x, 300, x + FACE, 300 + FACE]], np.float32)


def make(path: Path, encoder: str, pix_fmt: str, options: dict, colour: tuple, interlaced: bool, n: int) -> None:
    from skimage.data import astronaut

    face = cv2.resize(cv2.cvtColor(astronaut()[30:210, 140:320], cv2.COLOR_RGB2BGR), (FACE, FACE))
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    background = np.clip(np.stack([80 + 60 * np.sin(x / 53), 100 + 50 * np.cos(y / 37),
                                   120 + 40 * np.sin((x + y) / 71)], axis=2), 0, 255).astype(np.uint8)
    with av.open(str(path), "w") as out:
        v = out.add_stream(encoder, rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, pix_fmt
        v.codec_context.color_primaries, v.codec_context.color_trc, v.codec_context.colorspace = colour[:3]
        v.codec_context.color_range = colour[3]
        if interlaced:
            v.codec_context.field_order = 2
        v.options = options
        for i in range(n):
            image = background.copy()
            x0, y0, x1, y1 = face_box(i)[0].astype(int)
            image[y0:y1, x0:x1] = face
            frame = av.VideoFrame.from_ndarray(image, format="bgr24")
            frame.colorspace = colour[2]
            frame = frame.reformat(format=pix_fmt, dst_colorspace=colour[2], dst_color_range=colour[3])
            frame.pts = i
            out.mux(v.encode(frame))
        out.mux(v.encode(None))


def plain(src: Path, dst: Path, target) -> float:
    """Seconds for a PyAV decode + encode with blurface's chosen encoder settings."""
    started = time.perf_counter()
    with av.open(str(src)) as inp, av.open(str(dst), "w") as out:
        s = inp.streams.video[0]
        s.thread_type = "AUTO"
        v = out.add_stream(target.encoder, rate=FPS)
        v.width, v.height, v.pix_fmt = W, H, target.pix_fmt
        v.codec_context.thread_type, v.codec_context.thread_count = "FRAME", 3
        options = dict(target.options)
        if target.flags:
            options["flags"] = options.get("flags", "") + "".join(f"+{f}" for f in target.flags)
        v.options = options
        for frame in inp.decode(s):
            frame.pict_type = 0
            out.mux(v.encode(frame))
        out.mux(v.encode(None))
    return time.perf_counter() - started


class Masks:
    def __init__(self) -> None:
        self.masker = Masker(Blur())
        self.apply, self.regions = self.masker.apply, self.masker.regions
        self.apply_planes, self.plane_fills = self.masker.apply_planes, self.masker.plane_fills

    def boxes(self, index: int) -> np.ndarray:
        return face_box(index)


def psnr_outside(src: Path, dst: Path, n: int) -> float:
    squared = count = 0.0
    with av.open(str(src)) as a, av.open(str(dst)) as b:
        for i, (fa, fb) in enumerate(zip(a.decode(video=0), b.decode(video=0), strict=True)):
            depth = pix_info(fa.format.name).depth
            keep = np.ones((H, W), bool)
            x0, y0, x1, y1 = padded_boxes(face_box(i), 0.4)[0]
            keep[max(0, int(y0) - 16):int(y1) + 16, max(0, int(x0) - 16):int(x1) + 16] = False
            for pa, pb in zip(fa.planes[:3], fb.planes[:3], strict=True):
                qa, qb = plane_samples(pa, depth), plane_samples(pb, depth)
                k = cv2.resize(keep.astype(np.uint8), (qa.shape[1], qa.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
                d = qa[k].astype(np.float64) - qb[k].astype(np.float64)
                squared += float((d * d).sum())
                count += d.size
    peak = (1 << depth) - 1
    return 10 * np.log10(peak * peak / (squared / count))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="clip length (default 2 s at 25 fps)")
    parser.add_argument("--only", help="run only cases whose name contains this")
    args = parser.parse_args()
    os.environ.setdefault("SVT_LOG", "1")
    n = round(args.seconds * FPS)
    print("| input | output | plain fps | blurface fps | ratio | PSNR outside masks |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        for name, (file, encoder, pix_fmt, options, colour, interlaced) in CASES.items():
            if args.only and args.only not in name:
                continue
            src = Path(folder) / file
            make(src, encoder, pix_fmt, options, colour, interlaced, n)
            info = media.probe(src)
            target = media.output_format(info)
            base = plain(src, Path(folder) / ("plain_" + file), target)
            dst = Path(folder) / ("out_" + file)
            started = time.perf_counter()
            media.transcode(info, dst, masks=Masks())
            ours = time.perf_counter() - started
            out = f"{target.encoder} {target.pix_fmt}" + (f" {target.field_order}" if target.interlaced else "")
            print(f"| {name} | {out} | {n / base:.1f} | {n / ours:.1f} | {base / ours:.2f} | "
                  f"{psnr_outside(src, dst, n):.1f} dB |", flush=True)


if __name__ == "__main__":
    main()
