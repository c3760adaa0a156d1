"""Finished results in one SQLite file, keyed by everything that changes the numbers.

A key is a dict (model fingerprint, dtype, task hash, split, limit, max_tokens, mode, mask, ...);
its canonical JSON is hashed, so two requests that would compute the same numbers share a row and
results survive restarts. Every row also carries the results version (:mod:`headscope.engine.versions`:
the code and libraries that made it): a row of another version, or one that cannot be read back, is a
miss, never an answer and never an error; the caller recomputes and the new row replaces it. Arrays
(the per-head means of `mean` ablation) are stored as raw bytes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np
from headscope.engine.versions import results_version

TABLES = {
    "results": "key TEXT PRIMARY KEY, kind TEXT NOT NULL, params TEXT NOT NULL, value TEXT NOT NULL, "
               "version TEXT NOT NULL, created REAL NOT NULL",
    "arrays": "key TEXT PRIMARY KEY, params TEXT NOT NULL, dtype TEXT NOT NULL, shape TEXT NOT NULL, "
              "data BLOB NOT NULL, version TEXT NOT NULL, created REAL NOT NULL",
}


def canonical_key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def ensure_table(db: sqlite3.Connection, name: str, columns: str) -> None:
    """Create table `name`; one left by an older layout (other columns) holds only results of an older
    version, so it is dropped and made anew."""
    existing = [row[1] for row in db.execute(f"PRAGMA table_info({name})")]
    wanted = [part.split()[0] for part in columns.split(", ")]
    if existing and existing != wanted:
        db.execute(f"DROP TABLE {name}")
    db.execute(f"CREATE TABLE IF NOT EXISTS {name} ({columns})")


class ResultStore:
    """A thread-safe key-value store of JSON results and numpy arrays in one SQLite file, for one
    results version (default: this process's)."""

    def __init__(self, path: str | Path, *, version: str | None = None) -> None:
        self.path = Path(path)
        self.version = version or results_version()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        for name, columns in TABLES.items():
            ensure_table(self._db, name, columns)
        self._db.commit()

    def connection(self) -> sqlite3.Connection:
        """The shared connection, for modules that keep their own tables (use under `locked()`, and keep
        a version column checked against `self.version`)."""
        return self._db

    def locked(self) -> threading.Lock:
        return self._lock

    def _current_row(self, select: str, params: dict) -> tuple | None:
        """The row `select` finds for `params` and this version (its two placeholders), or None."""
        with self._lock:
            return self._db.execute(select, (canonical_key(params), self.version)).fetchone()

    def get(self, params: dict) -> dict | None:
        """The stored JSON object under `params` if it was made by this version and reads back as an
        object; None otherwise (a miss)."""
        row = self._current_row("SELECT value FROM results WHERE key = ? AND version = ?", params)
        if row is None:
            return None
        try:
            value = json.loads(row[0])
        except (TypeError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def put(self, params: dict, value: dict) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?, ?)",
                (canonical_key(params), str(params.get("kind", "")), json.dumps(params, sort_keys=True),
                 json.dumps(value), self.version, time.time()),
            )
            self._db.commit()

    def get_array(self, params: dict, shape: tuple[int, ...] | None = None) -> np.ndarray | None:
        """The stored array of this version (of `shape`, when given), or None."""
        row = self._current_row("SELECT dtype, shape, data FROM arrays WHERE key = ? AND version = ?", params)
        if row is None:
            return None
        try:
            dtype, stored_shape, data = row
            array = np.frombuffer(data, dtype=dtype).reshape(json.loads(stored_shape)).copy()
        except (TypeError, ValueError):
            return None
        return array if shape is None or array.shape == tuple(shape) else None

    def put_array(self, params: dict, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO arrays VALUES (?, ?, ?, ?, ?, ?, ?)",
                (canonical_key(params), json.dumps(params, sort_keys=True), array.dtype.str,
                 json.dumps(list(array.shape)), array.tobytes(), self.version, time.time()),
            )
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()
