"""Regenerate the files in samples/ from scikit-image's public-domain astronaut photo.

    python samples/make_samples.py

Writes:
    samples/astronaut.mp4        4 s, 640x360, 30 fps H.264 + 440 Hz AAC tone; the
                                 astronaut (Eileen Collins, NASA, public domain) drifts and zooms
    samples/astronaut_target.jpg a differently framed, mirrored crop of the same photo

Needs the test extras (scikit-image): pip install -e '.[test]'.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
from skimage import data

HERE = Path(__file__).resolve().parent
WIDTH, HEIGHT, FPS, SECONDS = 640, 360, 30, 4
SAMPLE_RATE = 44100


def astronaut_bgr() -> np.ndarray:
    return cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)


def make_target(path: Path) -> None:
    photo = astronaut_bgr()[20:400, 60:440]
    cv2.imwrite(str(path), cv2.flip(photo, 1), [cv2.IMWRITE_JPEG_QUALITY, 90])


def head_and_shoulders() -> np.ndarray:
    # Her face is ~88 px of this 380 px crop, so at 260-340 px it is 60-80 px wide:
    # well above the default smallest face (1/9 of the frame height, 40 px here).
    return astronaut_bgr()[0:380, 70:450]


def frame_at(i: int, n: int, photo: np.ndarray) -> np.ndarray:
    t = i / max(1, n - 1)
    # A plain gradient background, so the only face is the astronaut's.
    x = np.linspace(40, 120, WIDTH, dtype=np.float32)
    y = np.linspace(0, 60, HEIGHT, dtype=np.float32)[:, None]
    canvas = np.empty((HEIGHT, WIDTH, 3), np.uint8)
    canvas[:] = (x[None, :] + y)[:, :, None].astype(np.uint8)
    size = int(260 + 80 * t)
    scaled = cv2.resize(photo, (size, size), interpolation=cv2.INTER_AREA)
    left = int(20 + (WIDTH - size - 40) * t)
    top = max(0, (HEIGHT - size) // 2)
    y1, y2 = max(0, top), min(HEIGHT, top + size)
    canvas[y1:y2, left : left + size] = scaled[y1 - top : y2 - top]
    return canvas


def make_video(path: Path) -> None:
    photo = head_and_shoulders()
    n = FPS * SECONDS
    with av.open(str(path), "w", options={"movflags": "+faststart"}) as out:
        video = out.add_stream("libx264", rate=FPS)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        video.options = {"crf": "23", "preset": "medium"}
        audio = out.add_stream("aac", rate=SAMPLE_RATE)
        audio.layout = "mono"
        for i in range(n):
            frame = av.VideoFrame.from_ndarray(frame_at(i, n, photo), format="bgr24")
            frame.pts = i
            frame.time_base = Fraction(1, FPS)
            out.mux(video.encode(frame))
        out.mux(video.encode())
        samples_per_frame = 1024
        total = SAMPLE_RATE * SECONDS
        for start in range(0, total, samples_per_frame):
            t = (np.arange(start, min(total, start + samples_per_frame)) / SAMPLE_RATE).astype(np.float32)
            tone = (0.2 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None, :]
            frame = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            frame.sample_rate = SAMPLE_RATE
            frame.pts = start
            frame.time_base = Fraction(1, SAMPLE_RATE)
            out.mux(audio.encode(frame))
        out.mux(audio.encode())


if __name__ == "__main__":
    make_target(HERE / "astronaut_target.jpg")
    make_video(HERE / "astronaut.mp4")
    print(f"wrote {HERE / 'astronaut.mp4'} and {HERE / 'astronaut_target.jpg'}")
