"""The naive per-frame approach, as in face_recognition's video examples, for comparison.

Every frame: HOG at full resolution with one upsample (face_recognition's default),
an embedding for every face, and a mask only where that face is within tolerance
of a target. No tracking, no gap filling: what it misses on a frame, it leaks.

    python benchmarks/baseline.py IN.mp4 OUT.mp4 --target PHOTO [--target PHOTO ...]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import cv2  # noqa: E402
import dlib  # noqa: E402

from blurface import media  # noqa: E402
from blurface.embedders import Dlib  # noqa: E402
from blurface.faces import FaceEngine  # noqa: E402
from blurface.gallery import Gallery  # noqa: E402
from blurface.mask import Blur, Masker  # noqa: E402
from blurface.types import DecodedFrame  # noqa: E402


def naive_blur(src: str | Path, dst: str | Path, gallery: Gallery, *, tolerance: float = 0.6,
               max_frames: int | None = None) -> dict:
    """Mask per frame; returns frames, seconds, and faces embedded.

    The naive approach as people write it: dlib's HOG detector at full resolution with
    one upsample on every frame (blurface itself no longer uses HOG), an embedding for
    every face, a mask where it matches. No tracking, no whole-track decisions.
    """
    hog = dlib.get_frontal_face_detector()
    embedder = Dlib()
    masker = Masker(Blur())
    info = media.probe(src)
    stats = {"frames": 0, "faces": 0, "masked": 0}

    def process(frame: DecodedFrame) -> np.ndarray:
        image = frame.image
        if max_frames is not None and frame.index >= max_frames:
            # Time only the frames processed (their decode, detection and encode so far):
            # the rest of the clip is a plain transcode, and the caller extrapolates fps
            # from ``frames`` and ``seconds``.
            stats.setdefault("seconds", time.perf_counter() - started)
            return image
        stats["frames"] += 1
        rects = hog(cv2.cvtColor(image, cv2.COLOR_BGR2RGB), 1)
        xyxy = np.array([[r.left(), r.top(), r.right() + 1, r.bottom() + 1] for r in rects], np.float32).reshape(-1, 4)
        if len(xyxy):
            stats["faces"] += len(xyxy)
            # HOG's own boxes are what dlib's landmark model expects: embed them as they are.
            d = gallery.distances(embedder.embed_dlib_box(image, xyxy)).min(axis=1)
            hit = d <= tolerance
            if hit.any():
                stats["masked"] += int(hit.sum())
                masker.apply(image, xyxy[hit])
        return image

    started = time.perf_counter()
    media.transcode(info, dst, process, overwrite=True)
    stats.setdefault("seconds", time.perf_counter() - started)
    return stats


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--target", action="append", required=True)
    p.add_argument("--tolerance", type=float, default=0.6)
    args = p.parse_args()
    # The naive approach embeds with dlib, as face_recognition does.
    gallery = Gallery.from_paths(args.target, FaceEngine(embedder=Dlib()))
    stats = naive_blur(args.input, args.output, gallery, tolerance=args.tolerance)
    print(f"{stats['frames']} frames in {stats['seconds']:.1f} s ({stats['frames'] / stats['seconds']:.1f} fps), "
          f"{stats['faces']} faces embedded, {stats['masked']} masked")


if __name__ == "__main__":
    main()
