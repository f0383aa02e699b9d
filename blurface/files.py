"""Writing side files (galleries, plans, reports) whole or not at all."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .types import BlurfaceError


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
