"""The request cache: a reply once paid for is never paid for again.

SQLite in WAL mode; each answer, every turn of a repair conversation included,
is committed as soon as it arrives, so a run killed at any point resends
nothing it already has. The key hashes the model,
the messages (images and videos replaced by the hash of their bytes), the
sampling parameters and the response schema.
"""

from __future__ import annotations

import base64
import hashlib
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

_DATA_URL_PREFIX = "data:"


def request_key(model: str, messages: list[dict[str, Any]], params: dict[str, Any], schema: Any) -> str:
    payload = json.dumps(
        {"model": model, "messages": _hash_media(messages), "params": params, "schema": schema},
        sort_keys=True,
        ensure_ascii=False,
        default=str,
    )
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _hash_media(value: Any) -> Any:
    """Data URLs (frames, clips) become the sha256 of their bytes: small, stable keys."""
    if isinstance(value, str) and value.startswith(_DATA_URL_PREFIX) and ";base64," in value[:80]:
        header, _, data = value.partition(",")
        return f"{header},sha256:{hashlib.sha256(base64.b64decode(data)).hexdigest()}"
    if isinstance(value, dict):
        return {k: _hash_media(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_hash_media(v) for v in value]
    return value


class RequestCache:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        # processes that create one new file at once (a node's Ray tasks) race to switch it to WAL,
        # and SQLite answers the loser "locked" at once, without waiting: try again
        deadline = time.monotonic() + 30
        while True:
            try:
                self._set_up()
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def _set_up(self) -> None:
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS replies (key TEXT PRIMARY KEY, model TEXT, reply TEXT, created REAL)"
        )
        # facts learnt about an endpoint (its structured-output mode), so a rerun need not ask again
        self._db.execute("CREATE TABLE IF NOT EXISTS notes (key TEXT PRIMARY KEY, value TEXT)")

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._db.execute("SELECT reply FROM replies WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def put(self, key: str, model: str, reply: dict[str, Any]) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO replies VALUES (?, ?, ?, ?)",
                (key, model, json.dumps(reply, ensure_ascii=False), time.time()),
            )

    def note(self, key: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM notes WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_note(self, key: str, value: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO notes VALUES (?, ?)", (key, value))

    def count(self) -> int:
        """How many answers are kept (a method, not __len__: an empty cache must not be falsy)."""
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]

    def absorb(self, other: str | Path) -> int:
        """Copies in the answers and notes of another cache file that this one lacks (a node's,
        under the Ray engine); returns how many answers were new."""
        with self._lock:
            before = self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0]
            self._db.execute("ATTACH DATABASE ? AS other", (str(other),))
            try:
                self._db.execute("INSERT OR IGNORE INTO replies SELECT * FROM other.replies")
                self._db.execute("INSERT OR IGNORE INTO notes SELECT * FROM other.notes")
            finally:
                self._db.execute("DETACH DATABASE other")
            return self._db.execute("SELECT COUNT(*) FROM replies").fetchone()[0] - before

    def checkpoint(self) -> None:
        """Moves the write-ahead log into the file, so that readers which ignore the log
        (`NodeCache`'s immutable view of the run's cache) find every answer."""
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class NodeCache:
    """The request cache as one node of a cluster sees it: answers are written to the node's
    own file (only this node's processes open it, so no two machines lock one SQLite file
    over a network filesystem) and read from it, then from the run's cache, which is opened
    immutable: the driver writes that one only between stages (`RequestCache.absorb`), never
    while tasks run."""

    def __init__(self, own: str | Path, run_cache: str | Path):
        self.own = RequestCache(own)
        self.path = self.own.path
        self._run = None
        if Path(run_cache).exists():
            uri = f"file:{Path(run_cache).resolve()}?immutable=1"
            self._run = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self._lock = threading.Lock()

    def _read(self, sql: str, key: str) -> Any:
        if self._run is None:
            return None
        with self._lock:
            try:
                return self._run.execute(sql, (key,)).fetchone()
            except sqlite3.OperationalError:  # a run cache with no tables yet
                return None

    def get(self, key: str) -> dict[str, Any] | None:
        found = self.own.get(key)
        if found is None:
            row = self._read("SELECT reply FROM replies WHERE key = ?", key)
            found = json.loads(row[0]) if row else None
        return found

    def put(self, key: str, model: str, reply: dict[str, Any]) -> None:
        self.own.put(key, model, reply)

    def note(self, key: str) -> str | None:
        found = self.own.note(key)
        if found is None:
            row = self._read("SELECT value FROM notes WHERE key = ?", key)
            found = row[0] if row else None
        return found

    def set_note(self, key: str, value: str) -> None:
        self.own.set_note(key, value)

    def count(self) -> int:
        return self.own.count()

    def close(self) -> None:
        self.own.close()
        if self._run is not None:
            with self._lock:
                self._run.close()
