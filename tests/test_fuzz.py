"""Mutated media: probing, decoding and transcoding damaged files raise MediaError or succeed.

A seeded, bounded set of mutations (bit flips, truncations, chunk duplications
and deletions, random byte runs) of two small valid MP4s with audio (index at
the end, and at the front) goes through ``media.probe``, ``media.iter_frames``
and, for every third, ``media.transcode`` with an identity ``process``. Any
exception other than :class:`~blurface.types.MediaError` is a bug, and so is a
hang or a crash of the interpreter.

The cases run in one child process (one import of PyAV for all of them) that
reports each case on its own line; a per-case alarm catches a hang, and the
parent's timeout and the last reported case name any crash.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_clip

SEED = 20240505
CASES = 60
CASE_SECONDS = 20  # per-case alarm: a hang, not slowness (each case takes ~0.05 s)

CHILD = r"""
import json, signal, sys, traceback
from pathlib import Path
from blurface import media
from blurface.types import MediaError

class Hang(Exception):
    pass

def on_alarm(signum, frame):
    raise Hang()

signal.signal(signal.SIGALRM, on_alarm)
limit = int(sys.argv[1])
for line in sys.stdin:
    case = json.loads(line)
    path, out = Path(case["path"]), Path(case["out"])
    outcome = {"case": case["name"]}
    signal.alarm(limit)
    try:
        info = media.probe(path)
        frames = sum(1 for _ in media.iter_frames(info))
        if case["transcode"]:
            media.transcode(info, out, lambda frame: frame.image)
            leftovers = [p.name for p in out.parent.iterdir() if ".blurface-tmp" in p.name]
            outcome["leftovers"] = leftovers
        outcome.update(result="ok", frames=frames)
    except MediaError as e:
        outcome.update(result="MediaError", message=str(e))
        if case["transcode"]:
            outcome["leftovers"] = [p.name for p in out.parent.iterdir() if ".blurface-tmp" in p.name or p == out]
    except Hang:
        outcome.update(result="hang")
    except BaseException as e:
        outcome.update(result=type(e).__name__, message=str(e), traceback=traceback.format_exc())
    finally:
        signal.alarm(0)
    print(json.dumps(outcome), flush=True)
"""


def mutate(data: bytes, rng: random.Random) -> tuple[str, bytes]:
    """One random mutation of ``data``: its kind and the result."""
    b = bytearray(data)
    n = len(b)
    kind = rng.choice(["flip", "truncate", "duplicate", "delete", "random-run"])
    if kind == "flip":
        for _ in range(rng.randint(1, 30)):
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
    elif kind == "truncate":
        del b[rng.randrange(1, n) :]
    elif kind == "duplicate":
        i = rng.randrange(n)
        chunk = b[i : i + rng.randint(1, 2000)]
        at = rng.randrange(n)
        b[at:at] = chunk
    elif kind == "delete":
        i = rng.randrange(n)
        del b[i : i + rng.randint(1, 2000)]
    else:
        i = rng.randrange(n)
        run = rng.randint(1, 64)
        b[i : i + run] = bytes(rng.randrange(256) for _ in range(run))
    return kind, bytes(b)


def test_mutated_mp4s_raise_only_media_error(tmp_path: Path) -> None:
    bases = [
        make_clip(tmp_path / "base.mp4", n_frames=8, width=32, height=24, audio=("aac",)).read_bytes(),
        make_clip(tmp_path / "fast.mp4", n_frames=8, width=32, height=24, audio=("aac",), faststart=True).read_bytes(),
    ]
    rng = random.Random(SEED)
    cases = []
    for k in range(CASES):
        kind, data = mutate(bases[k % 2], rng)
        folder = tmp_path / f"case{k:02d}"
        folder.mkdir()
        path = folder / "in.mp4"
        path.write_bytes(data)
        name = f"{k:02d}-{kind}-{'faststart' if k % 2 else 'moov-at-end'}"
        cases.append({"name": name, "path": str(path), "out": str(folder / "out.mp4"), "transcode": k % 3 == 0})

    try:
        done = subprocess.run(
            [sys.executable, "-c", CHILD, str(CASE_SECONDS)],
            input="".join(json.dumps(c) + "\n" for c in cases),
            capture_output=True, text=True, timeout=CASE_SECONDS * CASES,
        )
        stdout, stderr, code = done.stdout, done.stderr, done.returncode
    except subprocess.TimeoutExpired as e:
        stdout = e.stdout.decode() if isinstance(e.stdout, bytes) else e.stdout or ""
        stderr, code = "timed out", None
    outcomes = [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]
    if len(outcomes) < len(cases):
        crashed = cases[len(outcomes)]["name"]
        pytest.fail(f"the child died (exit {code}) on case {crashed}: {stderr[-2000:]}")
    assert code == 0, stderr

    bad = [o for o in outcomes if o["result"] not in ("ok", "MediaError")]
    assert bad == [], "\n".join(f"{o['case']}: {o['result']}: {o.get('traceback', '')}" for o in bad)
    # A refused transcode leaves neither an output nor a temporary file; a finished one no temporary file.
    assert [o["case"] for o in outcomes if o.get("leftovers")] == []
    # Every MediaError names the file it is about.
    assert [o["case"] for o in outcomes if o["result"] == "MediaError" and "in.mp4" not in o["message"]] == []
    # The mutations are not all fatal, nor all harmless: the test exercises both paths.
    results = {o["result"] for o in outcomes}
    assert results == {"ok", "MediaError"}, results
