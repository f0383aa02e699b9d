"""The batch manifest: one SQLite row per archive file, so a batch can be resumed.

It lives in the output folder (``MASKED/blurface-batch.sqlite``) and is written by
the batch's client process only; workers return their results to it. Each row
records the input's relative path, size and mtime, what probing found, the
fingerprint of the settings and gallery it was (or is being) processed with, its
status and its result.

A finished output is committed in two steps so that no kill loses or duplicates
one: the row is marked ``done`` (naming the staged file) and committed, then the
staged file is renamed onto the output. A run killed between the two finds the
staged file on its next start and finishes the rename (:meth:`Manifest.recover`).
"""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from .files import write_atomically
from .types import OutputError

MANIFEST_NAME = "blurface-batch.sqlite"
REPORT_NAME = "blurface-batch-report.csv"
SCHEMA_VERSION = 1

# Row statuses. "running" rows found at start belong to a run that was killed: redone.
PENDING, RUNNING, DONE, FAILED, SKIPPED = "pending", "running", "done", "failed", "skipped"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,          -- relative to the archive, '/'-separated
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    is_video INTEGER NOT NULL,      -- what probing found
    duration REAL,                  -- seconds of video
    frame_count INTEGER,
    status TEXT NOT NULL,
    reason TEXT,                    -- why skipped, or the error line of a failure
    fingerprint TEXT,               -- settings + gallery the output was (being) made with
    output TEXT,                    -- relative to the output folder
    output_size INTEGER,
    staged TEXT,                    -- staged file of a committed output not yet renamed
    changes TEXT,                   -- what changed besides the masks (container, streams)
    seconds REAL,
    frames INTEGER,
    masked_frames INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,     -- times handed to a worker
    completions INTEGER NOT NULL DEFAULT 0,  -- times an output was committed
    worker TEXT,
    updated REAL
);
"""


@dataclass
class Row:
    """One file of the archive as the manifest knows it."""

    path: str
    size: int
    mtime_ns: int
    is_video: bool
    duration: float | None = None
    frame_count: int | None = None
    status: str = PENDING
    reason: str | None = None
    fingerprint: str | None = None
    output: str | None = None
    output_size: int | None = None
    staged: str | None = None
    changes: str | None = None
    seconds: float | None = None
    frames: int | None = None
    masked_frames: int | None = None
    attempts: int = 0
    completions: int = 0
    worker: str | None = None
    updated: float | None = None


_COLUMNS = [f.name for f in fields(Row)]
# Report columns: what a person reading the report needs, in that order.
REPORT_COLUMNS = [
    "path", "status", "output", "reason", "changes", "duration", "frames", "masked_frames",
    "seconds", "attempts", "completions", "worker", "size",
]


class Manifest:
    """The SQLite manifest of one output folder. Not thread-safe: one client process uses it.

    Raises:
        OutputError: the file is not a blurface manifest, or belongs to another archive.
    """

    def __init__(self, out_dir: str | os.PathLike, *, create: bool = True) -> None:
        self.path = Path(out_dir) / MANIFEST_NAME
        if not create and not self.path.is_file():
            raise OutputError(f"{self.path.parent}: holds no batch manifest ({MANIFEST_NAME}): run 'blurface batch' into it first")
        try:
            # isolation_level=None: transactions only where this class opens them.
            self.db = sqlite3.connect(self.path, isolation_level=None, timeout=30)
            self.db.executescript(_SCHEMA)
            version = self.meta("schema")
            if version is None:
                self.set_meta("schema", str(SCHEMA_VERSION))
            elif version != str(SCHEMA_VERSION):
                raise OutputError(
                    f"{self.path}: manifest schema {version} is not {SCHEMA_VERSION}: use a new output folder"
                )
        except sqlite3.DatabaseError as e:
            raise OutputError(f"{self.path}: is not a usable batch manifest ({e}): move it away or use another output folder") from e
        self._lock_file: io.BufferedWriter | None = None

    def close(self) -> None:
        self.db.close()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def lock(self) -> None:
        """Refuse a second batch writing into the same folder at the same time.

        Raises:
            OutputError: another batch holds the lock.
        """
        try:
            import fcntl
        except ImportError:  # not POSIX: no lock, as before
            return
        f = open(self.path.with_name(".blurface-batch.lock"), "wb")  # noqa: SIM115 - held until close()
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            f.close()
            raise OutputError(
                f"{self.path.parent}: another 'blurface batch' is writing into this folder: wait for it to finish"
            ) from e
        self._lock_file = f

    # ----- meta ----------------------------------------------------------------------------

    def meta(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    # ----- rows ------------------------------------------------------------------------------

    def get(self, path: str) -> Row | None:
        cur = self.db.execute(f"SELECT {', '.join(_COLUMNS)} FROM files WHERE path = ?", (path,))
        found = cur.fetchone()
        return None if found is None else _row(found)

    def rows(self, *, status: str | None = None) -> Iterator[Row]:
        sql = f"SELECT {', '.join(_COLUMNS)} FROM files"
        args: tuple = ()
        if status is not None:
            sql += " WHERE status = ?"
            args = (status,)
        for found in self.db.execute(sql + " ORDER BY path", args).fetchall():
            yield _row(found)

    def put(self, row: Row) -> None:
        row.updated = time.time()
        values = asdict(row)
        values["is_video"] = int(row.is_video)
        marks = ", ".join("?" for _ in _COLUMNS)
        self.db.execute(
            f"INSERT OR REPLACE INTO files ({', '.join(_COLUMNS)}) VALUES ({marks})", [values[c] for c in _COLUMNS]
        )

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Everything inside commits together, or not at all (also on SIGKILL)."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    def commit_output(self, row: Row, staged: Path, final: Path) -> None:
        """Record ``row`` as done, then move ``staged`` onto ``final``.

        Two steps (see the module docstring): after a kill between them, :meth:`recover`
        finishes the rename, so the output is neither lost nor made twice.
        """
        row.status = DONE
        row.staged = str(staged)
        row.output_size = staged.stat().st_size
        row.completions += 1
        with self.transaction():
            self.put(row)
        os.replace(staged, final)
        row.staged = None
        self.put(row)

    def recover(self, out_dir: Path) -> list[str]:
        """Finish renames of outputs committed by a run killed before it renamed them.

        A ``done`` row whose staged file is gone and whose output is missing goes back to
        ``pending``. Returns the relative paths whose outputs were moved into place.
        """
        moved = []
        for row in self.rows(status=DONE):
            if row.staged is None:
                continue
            staged, final = Path(row.staged), out_dir / (row.output or "")
            if staged.is_file():
                os.replace(staged, final)
                moved.append(row.path)
            elif not (final.is_file() and final.stat().st_size == row.output_size):
                row.status = PENDING
            row.staged = None
            self.put(row)
        return moved

    # ----- summaries ---------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        return {str(s): int(n) for s, n in self.db.execute("SELECT status, COUNT(*) FROM files GROUP BY status")}

    def video_seconds(self) -> tuple[float, float]:
        """(seconds of video done, seconds of video in the archive)."""
        done, total = self.db.execute(
            "SELECT COALESCE(SUM(CASE WHEN status = 'done' THEN duration END), 0), COALESCE(SUM(duration), 0) "
            "FROM files WHERE is_video = 1"
        ).fetchone()
        return float(done), float(total)


def _row(values: tuple) -> Row:
    row = Row(*values)
    row.is_video = bool(row.is_video)
    return row


def write_report(rows: list[Row], path: str | os.PathLike) -> None:
    """One row per file as CSV, or as a JSON list when ``path`` ends in ``.json``.

    Raises:
        OutputError: the report cannot be written.
    """
    path = Path(path)
    records = [{c: getattr(r, c) for c in REPORT_COLUMNS} for r in rows]

    def write(tmp: Path) -> None:
        if path.suffix.lower() == ".json":
            tmp.write_text(json.dumps(records, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
            return
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=REPORT_COLUMNS)
            w.writeheader()
            w.writerows(records)

    write_atomically(path, write, what="batch report", error=OutputError)
