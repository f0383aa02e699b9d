"""Writing side files (galleries, plans, reports) whole or not at all, and private temporary folders."""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from .types import BlurfaceError

log = logging.getLogger(__name__)

# blurface-KIND-PID-RANDOM: what make_temp_dir names a folder, so a later run can tell whose it is.
_TEMP_DIR_RE = re.compile(r"blurface-([a-z]+)-(\d+)-[A-Za-z0-9_]+")


def write_atomically(
    path: str | os.PathLike, write: Callable[[Path], None], *, what: str, error: type[BlurfaceError]
) -> None:
    """Call ``write(tmp)`` on a hidden file beside ``path``, then rename it onto ``path``.

    An interrupted or failed write leaves neither a half-written ``path`` nor the
    temporary file. ``OSError`` becomes ``error`` naming ``what`` and the path.
    """
    path = Path(path)
    # Same suffix, so writers that add one (np.savez adds .npz) write where we look.
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException as e:
        try:
            tmp.unlink(missing_ok=True)
        except OSError:  # the folder itself is the problem (missing, or a file)
            pass
        if isinstance(e, OSError):
            raise error(f"cannot write {what} {str(path)!r}: {e.strerror or e}") from e
        raise


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` is running (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # alive, but someone else's
        return True
    return True


def make_temp_dir(kind: str) -> Path:
    """A new private folder (mode 0700) in the system temp folder, for unmasked working copies.

    Named ``blurface-KIND-PID-*`` so that a later run can remove it should this process
    be killed (SIGKILL, power loss) before it removes it itself; stale folders are
    removed here first. The caller removes the folder when done.
    """
    remove_stale_temp_dirs()
    return Path(tempfile.mkdtemp(prefix=f"blurface-{kind}-{os.getpid()}-"))


def remove_stale_temp_dirs(root: str | os.PathLike | None = None) -> list[str]:
    """Delete this user's ``blurface-KIND-PID-*`` folders whose process is no longer running.

    They hold unmasked video (a review proxy, an excerpt's analysis copy) that a killed
    run left. Folders of live processes and of other users are left alone.

    Returns:
        The folders removed.
    """
    removed: list[str] = []
    try:
        entries = list(os.scandir(root if root is not None else tempfile.gettempdir()))
    except OSError:
        return removed
    for entry in entries:
        match = _TEMP_DIR_RE.fullmatch(entry.name)
        if not match or pid_alive(int(match.group(2))):
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_uid != os.geteuid():
                continue
            shutil.rmtree(entry.path)
        except OSError as e:
            log.warning("could not remove a killed run's temporary folder %s: %s", entry.path, e)
            continue
        log.info("removed a killed run's temporary folder %s", entry.path)
        removed.append(entry.path)
    return removed
