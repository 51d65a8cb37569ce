"""Durable persistence of objects and their change history in SQLite (WAL mode).

The store keeps every object in memory for speed; this module is what makes an acknowledged
write survive ``kill -9``.  Each API write is one SQLite transaction that upserts (or deletes) the
object row and appends the change to ``history`` (so watches resume across restarts, like etcd's
revision log); the newest history row is the cluster-wide resourceVersion.  WAL with ``synchronous=NORMAL``
survives a process crash (the OS keeps the written log); ``durability="full"`` also survives a
power cut at the cost of an fsync per write.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    resource  TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    rv        INTEGER NOT NULL,
    data      BLOB NOT NULL,
    PRIMARY KEY (resource, namespace, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS history (
    rv        INTEGER PRIMARY KEY,
    type      TEXT NOT NULL,
    resource  TEXT NOT NULL,
    data      BLOB NOT NULL,
    prev      BLOB
);
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
"""


@dataclass(frozen=True)
class Change:
    """One write to persist: the object's new wire form (or its last form when deleted)."""

    type: str  # ADDED, MODIFIED, DELETED
    resource: str
    namespace: str
    name: str
    rv: int
    data: bytes
    prev: bytes | None = None


class Backend:
    """The SQLite file behind a store; ``path=None`` keeps everything in memory (tests)."""

    def __init__(self, path: Path | None, durability: str = "normal", history_limit: int = 100_000) -> None:
        self.path = path
        self.history_limit = history_limit
        target = str(path) if path is not None else ":memory:"
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(target, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=" + ("FULL" if durability == "full" else "NORMAL"))
        self._db.executescript(SCHEMA)
        self._writes_since_compaction = 0

    def close(self) -> None:
        self._db.close()

    def load(self) -> Iterator[tuple[str, bytes]]:
        """Every stored object as (resource, wire bytes)."""
        yield from self._db.execute("SELECT resource, data FROM objects")

    def current_rv(self) -> int:
        """The newest revision: compaction never removes the newest history row."""
        row = self._db.execute("SELECT MAX(rv) FROM history").fetchone()
        return max(int(row[0] or 0), self.oldest_history_rv())

    def oldest_history_rv(self) -> int:
        """The oldest revision a watch can still resume from (exclusive lower bound)."""
        row = self._db.execute("SELECT value FROM meta WHERE key='compacted'").fetchone()
        return int(row[0]) if row else 0

    def history_since(self, rv: int) -> Iterator[tuple[int, str, str, bytes, bytes | None]]:
        """Changes after ``rv``, oldest first: (rv, type, resource, data, prev)."""
        yield from self._db.execute(
            "SELECT rv, type, resource, data, prev FROM history WHERE rv > ? ORDER BY rv", (rv,)
        )

    def commit(self, changes: list[Change]) -> None:
        """Persist changes atomically; returns only once the transaction is committed."""
        if not changes:
            return
        db = self._db
        db.execute("BEGIN")
        try:
            for c in changes:
                if c.type == "DELETED":
                    db.execute(
                        "DELETE FROM objects WHERE resource=? AND namespace=? AND name=?",
                        (c.resource, c.namespace, c.name),
                    )
                else:
                    db.execute(
                        "INSERT OR REPLACE INTO objects (resource, namespace, name, rv, data) VALUES (?,?,?,?,?)",
                        (c.resource, c.namespace, c.name, c.rv, c.data),
                    )
                db.execute(
                    "INSERT INTO history (rv, type, resource, data, prev) VALUES (?,?,?,?,?)",
                    (c.rv, c.type, c.resource, c.data, c.prev),
                )
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        self._writes_since_compaction += len(changes)
        if self._writes_since_compaction >= 1000:
            self.compact(changes[-1].rv)

    def compact(self, current_rv: int) -> None:
        """Drop history older than the retention window, remembering where it now starts."""
        self._writes_since_compaction = 0
        floor = current_rv - self.history_limit
        if floor <= self.oldest_history_rv():
            return
        self._db.execute("BEGIN")
        self._db.execute("DELETE FROM history WHERE rv <= ?", (floor,))
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('compacted', ?)", (str(floor),))
        self._db.execute("COMMIT")
