"""Finished results in one SQLite file, keyed by everything that changes the numbers.

A key is a dict (model fingerprint, dtype, task hash, split, limit, max_tokens, mode, mask, ...);
its canonical JSON is hashed, so two requests that would compute the same numbers share a row and
results survive restarts. Arrays (the per-head means of `mean` ablation) are stored as raw bytes.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path

import numpy as np

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    key TEXT PRIMARY KEY, kind TEXT NOT NULL, params TEXT NOT NULL, value TEXT NOT NULL, created REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS arrays (
    key TEXT PRIMARY KEY, params TEXT NOT NULL, dtype TEXT NOT NULL, shape TEXT NOT NULL,
    data BLOB NOT NULL, created REAL NOT NULL
);
"""


def canonical_key(params: dict) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class ResultStore:
    """A thread-safe key-value store of JSON results and numpy arrays in one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)
        self._db.commit()

    def connection(self) -> sqlite3.Connection:
        """The shared connection, for modules that keep their own tables (use under `locked()`)."""
        return self._db

    def locked(self) -> threading.Lock:
        return self._lock

    def get(self, params: dict) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM results WHERE key = ?", (canonical_key(params),)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, params: dict, value: dict) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO results VALUES (?, ?, ?, ?, ?)",
                (canonical_key(params), str(params.get("kind", "")), json.dumps(params, sort_keys=True),
                 json.dumps(value), time.time()),
            )
            self._db.commit()

    def get_array(self, params: dict) -> np.ndarray | None:
        with self._lock:
            row = self._db.execute(
                "SELECT dtype, shape, data FROM arrays WHERE key = ?", (canonical_key(params),)
            ).fetchone()
        if row is None:
            return None
        dtype, shape, data = row
        return np.frombuffer(data, dtype=dtype).reshape(json.loads(shape)).copy()

    def put_array(self, params: dict, array: np.ndarray) -> None:
        array = np.ascontiguousarray(array)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO arrays VALUES (?, ?, ?, ?, ?, ?)",
                (canonical_key(params), json.dumps(params, sort_keys=True), array.dtype.str,
                 json.dumps(list(array.shape)), array.tobytes(), time.time()),
            )
            self._db.commit()

    def close(self) -> None:
        with self._lock:
            self._db.close()
