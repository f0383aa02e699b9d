"""The archive side: walk and probe the inputs, and decide every video's output name (collisions included)."""

from __future__ import annotations

import logging
import os
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from .. import manifest as mf
from .. import media
from ..manifest import Row
from ..text import printable
from ..types import MediaError

log = logging.getLogger(__name__)


@dataclass
class Entry:
    """One file found in the archive."""

    rel: str
    path: Path
    row: Row
    final: Path | None = None  # the output, for videos
    stale: Path | None = None  # its output of an earlier run under another name: removed once redone


def output_name(out_dir: Path, output: Path) -> str:
    """``output`` as the manifest records it: relative to ``out_dir``, with ``/``."""
    return output.relative_to(out_dir).as_posix()


def output_path(out_dir: Path, rel: str) -> tuple[Path, str | None]:
    """Where ``rel`` goes under ``out_dir`` by its name alone, and the container change, if any.

    MP4, MOV and MKV keep their name; anything else gets ``.mp4`` appended
    (``clip.avi`` -> ``clip.avi.mp4``). Two inputs may still meet there: see :func:`plan_outputs`.
    """
    target = out_dir / rel
    if target.suffix.lower() in media.OUTPUT_FORMATS:
        return target, None
    was = target.suffix.lstrip(".") or "(no extension)"
    return target.with_name(target.name + ".mp4"), f"container {was} -> mp4 (blurface writes mp4, mov or mkv)"


def _output_key(rel_out: str) -> str:
    """Names that are one file somewhere: case (macOS, Windows, SMB shares) and Unicode normal form (macOS)."""
    return unicodedata.normalize("NFC", rel_out).casefold()


def plan_outputs(out_dir: Path, rels: Iterable[str]) -> dict[str, tuple[Path, str | None]]:
    """The output of every video ``rel`` under ``out_dir``, no two the same: ``rel -> (output, change)``.

    Decided for the whole archive before any work. By name, ``clip.avi`` goes to
    ``clip.avi.mp4``, which a real ``clip.avi.mp4`` keeps too; then both said ``done``
    and one output was lost. Names that differ only in case or Unicode form count as
    one (they are one file on macOS, Windows and most network shares), and a file may
    not take the name of a folder other outputs need. Rule: the file whose own name is
    its output keeps it, then the first in sorted order; each other gets `` (2)``,
    `` (3)``, ... before its extension (``clip.avi (2).mp4``), which ``change`` says.
    The rule depends only on the archive's names, so reruns plan the same outputs.
    """
    natural = {rel: output_path(out_dir, rel) for rel in rels}
    owner: dict[str, str] = {}  # output key -> what holds it
    for final, _ in natural.values():
        for folder in PurePosixPath(output_name(out_dir, final)).parents:
            if str(folder) != ".":
                owner.setdefault(_output_key(str(folder)), f"the folder {folder}")
    plan: dict[str, tuple[Path, str | None]] = {}
    losers = []
    for rel in sorted(natural, key=lambda r: (natural[r][1] is not None, r)):  # kept names first
        final, change = natural[rel]
        key = _output_key(output_name(out_dir, final))
        if key in owner:
            losers.append(rel)
        else:
            owner[key] = f"the output of {rel}"
            plan[rel] = natural[rel]
    for rel in losers:
        final, change = natural[rel]
        taken = owner[_output_key(output_name(out_dir, final))]
        n = 2
        while True:
            candidate = final.with_name(f"{final.stem} ({n}){final.suffix}")
            key = _output_key(output_name(out_dir, candidate))
            if key not in owner:
                break
            n += 1
        owner[key] = f"the output of {rel}"
        renamed = f"output named {candidate.name}: {final.name} is {taken}"
        log.warning("%s: %s", printable(rel), printable(renamed))
        plan[rel] = (candidate, "; ".join(c for c in (change, renamed) if c))
    return plan


def walk(archive: Path, out_dir: Path) -> Iterable[tuple[str, Path]]:
    """Every file under ``archive``, sorted, as (relative '/' path, path); skips ``out_dir``."""
    skip = os.path.realpath(out_dir)
    for root, dirs, files in os.walk(archive):
        dirs[:] = sorted(d for d in dirs if os.path.realpath(os.path.join(root, d)) != skip)
        for name in sorted(files):
            path = Path(root, name)
            yield path.relative_to(archive).as_posix(), path


def unreadable(row: Row) -> bool:
    """A video (by extension or signature) that could not be probed: failed before any work."""
    return row.is_video and row.status == mf.FAILED and row.duration is None


def probe_row(rel: str, path: Path, known: Row | None) -> Row:
    """The manifest row for ``path``: probed again when its size or mtime changed, or it was unreadable.

    What is not a video is skipped; a video that cannot be read is failed (see :func:`_probe_failure`).
    """
    try:
        st = path.stat()
    except OSError as e:  # vanished since the walk, or a broken link
        row = Row(path=rel, size=-1, mtime_ns=-1, is_video=False, status=mf.SKIPPED, reason=f"cannot read it: {e.strerror}")
        if known is not None:
            row.output = known.output  # removed by the caller: no input, no output
        return row
    if known is not None and (known.size, known.mtime_ns) == (st.st_size, st.st_mtime_ns) and not unreadable(known):
        return known
    row = Row(path=rel, size=st.st_size, mtime_ns=st.st_mtime_ns, is_video=True)
    try:
        info = media.probe(path)
    except MediaError as e:
        # The probe names the file first; the report has its own column for that.
        _probe_failure(row, path, str(e).removeprefix(f"{path}: "), readable=isinstance(e, media.NotVideoError))
    except Exception as e:  # noqa: BLE001 - one odd file must not stop the walk
        reason = " ".join(f"could not be probed ({type(e).__name__}: {e})".splitlines())
        _probe_failure(row, path, reason, readable=False)
    else:
        row.duration, row.frame_count = info.duration, info.frame_count
    if known is not None:  # keep the history: a changed file is redone, not forgotten
        row.attempts, row.completions, row.output = known.attempts, known.completions, known.output
    return row


def _probe_failure(row: Row, path: Path, reason: str, *, readable: bool) -> None:
    """Skip what is not a video; fail a video that cannot be read.

    Read and found without video (audio only, a still image): skipped. Unreadable and
    meant to be a video (a video extension or container signature: a truncated copy, a
    damaged card): failed, so the batch exits 1 and its earlier output is removed, never
    passed off as current. Unreadable and neither: not media at all, skipped.
    """
    row.reason = reason
    if not readable and media.looks_like_video(path):
        row.is_video, row.status = True, mf.FAILED
    else:
        row.is_video, row.status = False, mf.SKIPPED
