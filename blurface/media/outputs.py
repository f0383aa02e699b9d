"""Outputs: encode settings, output paths, checks before any work, and temporary files.

Every output is written to a hidden temporary file beside its target and renamed onto it
after a verified finish; :func:`cleanup_stale_temps` removes those a killed run left.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import formats
from ..files import pid_alive as _pid_alive
from ..types import OutputError

log = logging.getLogger(__name__)


# Output extension -> FFmpeg muxer. WebM is left out on purpose: it cannot hold H.264.
OUTPUT_FORMATS: dict[str, str] = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}


# What follows ".{dst.name}.blurface-tmp-" in a temporary file's name: pid, then dst's suffix.
_TEMP_RE = re.compile(r"(\d+)(\.\w+|)")


@dataclass(frozen=True)
class EncodeSettings:
    """How :func:`transcode` encodes the video stream, and which metadata it keeps.

    Attributes:
        crf: constant rate factor (``None``: the encoder's default, see
            :mod:`blurface.formats`); lower is better quality and bigger files. For x264:
            The input is already lossy, so the aim is a second generation no one
            can tell from the first: at 18 (x264's "visually lossless" point) the
            unmasked picture of hamilton_clip.mp4 keeps 47.6 dB PSNR against the
            decoded source, at 1.65x its bitrate; 23 matches the source bitrate
            at 44.6 dB. Raise it for smaller files.
        preset: x264 speed against file size at equal quality. "veryfast" encodes
            720p at about 75 fps on two cores; "superfast" is ~40% faster but the
            files nearly double; slower presets save little on re-encodes.
        codec: ``"auto"`` keeps the input's codec family, depth, chroma, colour and
            field order (:func:`blurface.formats.choose`); or h264, hevc, av1, prores, ffv1.
        lossless: FFV1 (or x264 at QP 0 where the container cannot hold FFV1).
        deinterlace: write interlaced input as progressive (bwdif, one picture per frame).
        keep_metadata: keep every tag, data stream, attachment and chapter title of
            the input. Off (the default), the output keeps only what players need
            (see :mod:`blurface.metadata`): an anonymised file must not say where,
            when and with what it was filmed.
        threads: x264 frame threads. Fixed, not "one per core", because x264's bytes
            depend on its thread count (each frame thread limits the motion search of
            the next): with "auto" the same plan gave different files on one core
            (``taskset -c 0``: 158 of 275 packets differed) and on two. A fixed count
            gives the same file on any machine. 3 is what "auto" (1.5 per core) picks on
            two cores, so files and measurements made on such a machine stay the same byte
            for byte (a borderline leak of the naive baseline, verified in test_verify,
            moved from distance 0.589 to 0.644 with 4). 0 = auto: faster on many cores,
            not reproducible across machines.
    """

    crf: int | None = None
    preset: str | None = None
    codec: str = "auto"
    keep_metadata: bool = False
    threads: int = 3
    lossless: bool = False
    deinterlace: bool = False

    def request(self) -> formats.Request:
        codec = "h264" if self.codec == "libx264" else self.codec
        return formats.Request(codec=codec, crf=self.crf, preset=self.preset, lossless=self.lossless,
                               deinterlace=self.deinterlace)


def default_output_path(src: str | os.PathLike) -> Path:
    """``dir/video.mp4`` -> ``dir/video.blurred.mp4``.

    MP4, MOV and MKV keep their extension; any other container becomes ``.mp4``.
    """
    p = Path(src)
    suffix = p.suffix.lower() if p.suffix.lower() in OUTPUT_FORMATS else ".mp4"
    return p.with_name(f"{p.stem}.blurred{suffix}")


def cleanup_stale_temps(dst: str | os.PathLike) -> list[str]:
    """Delete temporary files left next to ``dst`` by runs that were killed (SIGKILL, power loss).

    A temporary file is stale when the process id in its name is no longer
    running. Files of live processes (a run in progress) are left alone.

    Returns:
        Paths of the files removed.
    """
    dst = Path(dst)
    prefix = f".{dst.name}.blurface-tmp-"
    removed: list[str] = []
    try:
        candidates = [p for p in dst.parent.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return removed
    for p in candidates:
        match = _TEMP_RE.fullmatch(p.name[len(prefix) :])
        if not match or match.group(2) != dst.suffix or _pid_alive(int(match.group(1))):
            continue
        try:
            p.unlink()
        except OSError as e:
            log.warning("could not remove stale temporary file %s: %s", p, e)
            continue
        log.info("removed stale temporary file %s", p)
        removed.append(str(p))
    return removed


def check_output(src: str | os.PathLike, dst: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Refuse an unusable output path before any work is done.

    :func:`transcode` runs the same check; call this first to fail before a long analysis.

    Raises:
        OutputError: ``dst`` has an extension other than .mp4/.mov/.mkv, is ``src``
            itself, is a directory, exists (unless ``overwrite``), or its folder is
            missing or not writable.
    """
    checked_muxer(Path(src), Path(dst), overwrite)


def checked_muxer(src: Path, dst: Path, overwrite: bool) -> str:
    """:func:`check_output`, returning the muxer name for ``dst``."""
    if dst.is_dir():
        raise OutputError(f"{dst}: is a directory: give a file path such as {dst / 'video.blurred.mp4'}")
    fmt = OUTPUT_FORMATS.get(dst.suffix.lower())
    if fmt is None:
        shown = dst.suffix or "(none)"
        raise OutputError(f"{dst}: output extension {shown} is not supported: use one of {', '.join(OUTPUT_FORMATS)}")
    if dst.exists():
        try:
            same = os.path.samefile(src, dst)
        except OSError:
            same = os.path.realpath(src) == os.path.realpath(dst)
        if same:
            raise OutputError(f"{dst}: is the input file itself: choose another output path")
        if not overwrite:
            raise OutputError(f"{dst} exists: use --overwrite to replace it")
    parent = dst.parent
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"{parent}: is a file, not a folder: the output {dst.name} cannot be written inside it")
    if not parent.is_dir():
        raise OutputError(f"{parent}: output folder does not exist: create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{parent}: output folder is not writable: choose another folder")
    return fmt


# A side file's folder with less free space than this is refused up front: a plan or
# report of a short clip takes a few kB, and the video must not be written first only
# for its plan to fail on a full disk.
MIN_SIDE_FILE_SPACE = 64 * 1024


def check_side_output(
    path: str | os.PathLike,
    option: str,
    *,
    inputs: Sequence[str | os.PathLike] = (),
    outputs: Sequence[str | os.PathLike] = (),
    overwrite: bool = False,
) -> None:
    """Refuse a side file (plan, report, matte, contact sheet, gallery) before any work.

    The rules of :func:`check_output` for the video, for a file of any extension:
    ``path`` must not be a directory, an input or another output of the same command
    (a hard or symbolic link to one counts), nor exist unless ``overwrite``; its folder
    must exist, be writable and have at least :data:`MIN_SIDE_FILE_SPACE` free.

    Raises:
        OutputError: naming the path, ``option`` and the fix.
    """
    p = Path(path)
    if p.is_dir():
        raise OutputError(f"{p}: {option} is a directory: give a file path such as {p / ('x' + p.suffix)}")
    for other in [*inputs, *outputs]:
        if _same_file(p, Path(other)):
            raise OutputError(f"{p}: {option} would replace {other}: choose another path for it")
    if p.exists() and not overwrite:
        raise OutputError(f"{p} exists: use --overwrite to replace it")
    parent = p.parent
    if parent.exists() and not parent.is_dir():
        raise OutputError(f"{parent}: is a file, not a folder: {option} {p.name} cannot be written inside it")
    if not parent.is_dir():
        raise OutputError(f"{parent}: the folder for {option} does not exist: create it first")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{parent}: the folder for {option} is not writable: choose another folder")
    try:
        stat = os.statvfs(parent)
    except OSError:
        return
    free = stat.f_bavail * stat.f_frsize
    if free < MIN_SIDE_FILE_SPACE:
        raise OutputError(
            f"{parent}: the folder for {option} is full ({free // 1024} kB free): free some space or choose another folder"
        )


def _same_file(a: Path, b: Path) -> bool:
    """Whether ``a`` and ``b`` name one file: the same path, or links (hard or symbolic) to one."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet)
        return os.path.realpath(a) == os.path.realpath(b)


