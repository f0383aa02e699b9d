"""The audit report: what was done to which file, with which models and settings, and why.

``report.json`` (for machines) and ``report.html`` (for people) are written atomically,
beside each other. They hold hashes, settings and per-track decisions; never embeddings.
"""

from __future__ import annotations

import hashlib
import html
import importlib
import json
import os
import platform
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from .version import __version__
from .files import write_atomically
from .faces import model_files
from .plan import Plan
from .decisions import who
from .types import OutputError, ProcessingError, Track

REPORT_FORMAT = "blurface-report"
REPORT_VERSION = 1

# Why a re-render gives the same bytes, for the auditor reading the report.
REPRODUCIBILITY = (
    "Rendering a plan is deterministic: masks come from the saved plan (boxes to 0.1 px), x264 runs with a fixed "
    "number of frame threads (its output depends on the thread count, and 'auto' follows the CPUs a process may use), "
    "and the muxer writes no random IDs (bitexact). 'blurface render VIDEO --plan PLAN' with the same settings, "
    "blurface and PyAV/FFmpeg versions gives a file with the same SHA-256. Previews and excerpts are deterministic "
    "the same way."
)


def sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks (memory does not grow with size)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def frame_runs(frames: np.ndarray) -> list[list[int]]:
    """``[[first, last], ...]`` runs of consecutive frame numbers."""
    frames = np.unique(np.asarray(frames, np.int64))
    if len(frames) == 0:
        return []
    breaks = np.flatnonzero(np.diff(frames) != 1)
    starts = np.concatenate([[0], breaks + 1])
    ends = np.concatenate([breaks, [len(frames) - 1]])
    return [[int(frames[a]), int(frames[b])] for a, b in zip(starts, ends, strict=True)]


def expected_masked(track: Track, plan: Plan) -> bool:
    """What the analysis decided for ``track``'s decision, before any reviewer edit."""
    if track.decision in ("target", "all"):
        return True
    if track.decision in ("keep", "manual"):
        return False  # a manual track is a reviewer's box: the analysis never masked it
    if track.decision == "switch":
        # Masked when a part of the same split track beside it was (as the analysis decided them).
        for split in plan.settings.get("splits", []):
            parts = split.get("parts", []) if isinstance(split, dict) else []
            if track.id in parts:
                k = parts.index(track.id)
                return any(expected_masked(plan.track(t), plan) for t in parts[max(0, k - 1) : k + 2] if t != track.id)
        return track.masked
    if track.decision == "other":
        return plan.mode == "keep"
    # unsure: --keep always masks; --target masks unless --unsure keep
    return plan.mode == "keep" or bool(plan.settings.get("decision", {}).get("mask_unsure", True))


def _jsonable(value: object) -> object:
    if is_dataclass(value) and not isinstance(value, type):
        return {k: _jsonable(v) for k, v in asdict(value).items()}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


class AuditReport:
    """Collects the facts of one run; :meth:`finish` hashes the files and writes the report.

    Make it *before* the work starts: it hashes the input then, and checks at the end
    that the input is unchanged.

    Args:
        path: ``report.json``; ``report.html`` is written beside it.
        src: the input video.
        command: the command line (or a description of the call), for the record.
        settings: every setting of the run (render, analysis, range, ...), JSON-able.
    """

    def __init__(self, path: str | os.PathLike, src: str | os.PathLike, *, command: list[str], settings: dict) -> None:
        self.path = Path(path)
        self.src = Path(src)
        self.command = command
        self.settings = settings
        self.started = datetime.now(timezone.utc)
        self.input_sha256 = sha256(self.src)

    def finish(
        self, plan: Plan, output: str | os.PathLike, *, side_files: dict[str, str | os.PathLike] | None = None,
        result: object = None,
    ) -> dict:
        """Hash the output (and side files), check the input, write JSON and HTML; return the JSON data.

        Raises:
            ProcessingError: the input changed during the run (the report is written first, saying so).
            OutputError: the report cannot be written.
        """
        input_now = sha256(self.src)
        models = []
        for role, path in model_files():
            models.append({"role": role, "file": path.name, "path": str(path),
                           "sha256": sha256(path) if path.is_file() else None})
        overrides = []
        tracks = []
        for t in plan.tracks:
            inside = t.frames[(t.frames >= 0) & (t.frames < plan.frame_count)]
            override = t.masked != expected_masked(t, plan) or "override" in t.reason.lower()
            entry = {
                "id": t.id,
                # Only a matched face is named; "identity" is the nearest reference, for the record.
                "who": who(t)[0],
                "identity": t.identity,
                "distance": t.distance,
                "decision": t.decision,
                "masked": t.masked,
                "reason": t.reason,
                "first_frame": t.first,
                "last_frame": t.last,
                "time_range": [round(float(plan.times[min(t.first, plan.frame_count - 1)]), 3),
                               round(float(plan.times[min(t.last, plan.frame_count - 1)]), 3)],
                "masked_frames": frame_runs(inside) if t.masked else [],
                "masked_frame_count": int(len(inside)) if t.masked else 0,
                "reviewer_override": override,
            }
            tracks.append(entry)
            if override:
                overrides.append({"track": t.id, "decision": t.decision, "masked": t.masked, "reason": t.reason})
        versions = {"python": platform.python_version(), "numpy": np.__version__}
        # Each library on its own: versions are informative, and a missing one (dlib is only for
        # --embedder dlib) must not hide the others.
        for name, module, attribute in (("pyav", "av", "__version__"), ("opencv", "cv2", "__version__"),
                                        ("onnxruntime", "onnxruntime", "__version__"), ("dlib", "dlib", "__version__")):
            try:
                versions[name] = getattr(importlib.import_module(module), attribute)
            except Exception:  # noqa: BLE001 - not installed, or broken: say nothing of it
                continue
        if "pyav" in versions:
            versions["ffmpeg"] = importlib.import_module("av").library_versions.get("libavcodec")
        files = {name: {"path": str(p), "sha256": sha256(p)} for name, p in (side_files or {}).items()}
        data = {
            "format": REPORT_FORMAT,
            "version": REPORT_VERSION,
            "blurface_version": __version__,
            "software": versions,
            "started": self.started.isoformat(timespec="seconds"),
            "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "command": self.command,
            "models": models,
            "settings": _jsonable({**self.settings, "mode": plan.mode, "analysis": plan.settings}),
            "input": {"path": str(self.src), "sha256": self.input_sha256, "unchanged": input_now == self.input_sha256,
                      "video": plan.video.to_dict()},
            "output": {"path": str(output), "sha256": sha256(output), **_result_fields(result)},
            "side_files": files,
            "reproducibility": REPRODUCIBILITY,
            "tracks": tracks,
            "reviewer_overrides": overrides,
            # Who changed what on the review page, and why (blurface review's Save).
            "review_log": list(plan.review),
            "warnings": list(plan.warnings),
        }
        text = json.dumps(data, indent=1)
        page = to_html(data)
        write_atomically(self.path, lambda tmp: tmp.write_text(text, encoding="utf-8"), what="report", error=OutputError)
        html_path = self.path.with_suffix(".html")
        write_atomically(html_path, lambda tmp: tmp.write_text(page, encoding="utf-8"), what="report", error=OutputError)
        if input_now != self.input_sha256:
            raise ProcessingError(
                f"{self.src}: the input changed while blurface ran (SHA-256 {self.input_sha256[:12]}... became "
                f"{input_now[:12]}...): its outputs were removed; run it again on the finished file (see {self.path})"
            )
        return data


def _result_fields(result: object) -> dict:
    if result is None:
        return {}
    return {k: getattr(result, k) for k in ("frames", "masked_frames", "masked_boxes", "tracks", "masked_tracks")
            if hasattr(result, k)}


def to_html(data: dict) -> str:
    """A self-contained readable page of the report (no scripts, no external resources)."""
    e = html.escape

    def table(rows: list[list[object]], head: list[str]) -> str:
        out = ["<table><tr>" + "".join(f"<th>{e(h)}</th>" for h in head) + "</tr>"]
        for row in rows:
            out.append("<tr>" + "".join(f"<td>{e('' if v is None else str(v))}</td>" for v in row) + "</tr>")
        return "\n".join(out) + "</table>"

    def runs(r: list[list[int]]) -> str:
        return ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in r) or "none"

    tracks = [[t["id"], t["who"], t["identity"], t["distance"], t["decision"], "yes" if t["masked"] else "no",
               "yes" if t["reviewer_override"] else "", f"{t['time_range'][0]:.3f}-{t['time_range'][1]:.3f} s",
               runs(t["masked_frames"]), t["reason"]] for t in data["tracks"]]
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'><title>blurface report</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1em 0}"
        "td,th{border:1px solid #bbb;padding:3px 6px;text-align:left;vertical-align:top}"
        "code{word-break:break-all}</style></head><body>",
        f"<h1>blurface {e(data['blurface_version'])} audit report</h1>",
        f"<p>Started {e(data['started'])}, finished {e(data['finished'])}.</p>",
        f"<p>Command: <code>{e(' '.join(data['command']))}</code></p>",
        "<h2>Files</h2>",
        table([["input", data["input"]["path"], data["input"]["sha256"],
                "unchanged" if data["input"]["unchanged"] else "CHANGED DURING THE RUN"],
               ["output", data["output"]["path"], data["output"]["sha256"], ""]]
              + [[k, v["path"], v["sha256"], ""] for k, v in data["side_files"].items()],
              ["", "path", "SHA-256", ""]),
        "<h2>Models</h2>",
        table([[m["role"], m["file"], m["sha256"]] for m in data["models"]], ["role", "file", "SHA-256"]),
        f"<p>Software: {e(', '.join(f'{k} {v}' for k, v in data['software'].items()))}</p>",
        "<h2>Tracks</h2>",
        table(tracks, ["id", "who", "nearest reference", "distance", "decision", "masked", "override", "time", "masked frames", "reason"]),
        f"<h2>Reviewer overrides</h2><p>{len(data['reviewer_overrides'])} track(s) changed by a reviewer.</p>",
        "<h2>Settings</h2>",
        f"<pre>{e(json.dumps(data['settings'], indent=1))}</pre>",
        f"<h2>Reproducibility</h2><p>{e(data['reproducibility'])}</p>",
        "<h2>Warnings</h2>",
        "<ul>" + "".join(f"<li>{e(w)}</li>" for w in data["warnings"]) + "</ul>" if data["warnings"] else "<p>None.</p>",
        "</body></html>",
    ]
    return "\n".join(parts)
