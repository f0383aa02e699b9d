"""Regenerate the README's pictures from the project's own sample (samples/astronaut.mp4).

    python docs/make_pictures.py

Writes:
    docs/preview_overlay.png  a frame of `blurface preview --overlay` (the target's box in red, masked)
    docs/contact_sheet.png    the contact sheet of the sample's tracks (crops unmasked, as for a reviewer)

Runs blurface exactly as a user would (analysis included), so the pictures change when the
detector or the drawing does. Nothing from ../shared is used.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import av
import cv2

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from blurface.cli import main  # noqa: E402

SAMPLE = REPO / "samples" / "astronaut.mp4"
TARGET = REPO / "samples" / "astronaut_target.jpg"
DOCS = REPO / "docs"


def run() -> None:
    with tempfile.TemporaryDirectory() as folder:
        plan = Path(folder) / "astronaut.plan.json"
        preview = Path(folder) / "preview.mp4"
        # Analyse once and keep the plan: the preview and the sheet then show exactly what a render masks.
        code = main([str(SAMPLE), "--target", str(TARGET), "-o", str(Path(folder) / "out.mp4"), "--plan", str(plan), "-q"])
        code = code or main(["preview", str(SAMPLE), "--plan", str(plan), "--from", "1.5", "--to", "2.5", "--overlay",
                             "-o", str(preview), "--contact-sheet", str(DOCS / "contact_sheet.png"), "--overwrite", "-q"])
        if code:
            raise SystemExit(code)
        with av.open(str(preview)) as container:
            frames = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
        cv2.imwrite(str(DOCS / "preview_overlay.png"), frames[len(frames) // 2])
    print(f"wrote {DOCS / 'preview_overlay.png'} and {DOCS / 'contact_sheet.png'}")


if __name__ == "__main__":
    run()
