"""Disk-backed registry of File objects.

Contents live in files under the server's data directory, never in memory: batch inputs can
be 200 MB and tests must be able to upload such files. Only the metadata (id, name,
purpose, size, times) is kept in a dict, guarded by a lock because the event-loop thread,
result-writer threads and test code all reach it.
"""

from __future__ import annotations

import itertools
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from airflow_provider_openai_batch.testing.errors import file_not_found
from airflow_provider_openai_batch.testing.ids import IdFactory

THIRTY_DAYS = 30 * 24 * 3600
"""Batch input and output files expire after 30 days unless told otherwise (``FileExpirationAfter``)."""


@dataclass(frozen=True)
class StoredFile:
    id: str
    filename: str
    purpose: str
    bytes: int
    created_at: int
    expires_at: int | None
    path: Path
    seq: int

    def to_api(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "file",
            "bytes": self.bytes,
            "created_at": self.created_at,
            "expires_at": self.expires_at,
            "filename": self.filename,
            "purpose": self.purpose,
            "status": "processed",
            "status_details": None,
        }


def default_expiry(purpose: str, created_at: int, seconds: int | None) -> int | None:
    """Explicit expiry wins; batch files get 30 days; everything else is kept until deleted."""
    if seconds is not None:
        return created_at + seconds
    if purpose in ("batch", "batch_output"):
        return created_at + THIRTY_DAYS
    return None


class FileStore:
    def __init__(self, root: Path, ids: IdFactory) -> None:
        self.root = root
        self._ids = ids
        self._lock = threading.Lock()
        self._files: dict[str, StoredFile] = {}
        self._seq = itertools.count()
        self._scratch = itertools.count()

    def scratch_path(self, label: str) -> Path:
        """A fresh path in the data directory for content being written (upload, spool, results)."""
        return self.root / f"{label}-{os.getpid()}-{next(self._scratch)}.part"

    def add(
        self, content: Path, *, filename: str, purpose: str, created_at: int, expires_after: int | None = None
    ) -> StoredFile:
        """Register ``content`` (moved into the store) as a new File."""
        file_id = self._ids.new("file-", 24)
        final_path = self.root / file_id
        content.replace(final_path)
        stored = StoredFile(
            id=file_id,
            filename=filename,
            purpose=purpose,
            bytes=final_path.stat().st_size,
            created_at=created_at,
            expires_at=default_expiry(purpose, created_at, expires_after),
            path=final_path,
            seq=next(self._seq),
        )
        with self._lock:
            self._files[file_id] = stored
        return stored

    def get(self, file_id: str) -> StoredFile:
        with self._lock:
            stored = self._files.get(file_id)
        if stored is None:
            raise file_not_found(file_id)
        return stored

    def find(self, file_id: str) -> StoredFile | None:
        with self._lock:
            return self._files.get(file_id)

    def delete(self, file_id: str) -> None:
        with self._lock:
            stored = self._files.pop(file_id, None)
        if stored is None:
            raise file_not_found(file_id)
        stored.path.unlink(missing_ok=True)

    def page(
        self, *, purpose: str | None, ascending: bool, after: str | None, limit: int
    ) -> tuple[list[StoredFile], bool]:
        """One page of the list ordered by creation; ``after`` is the id of the previous page's last item."""
        with self._lock:
            ordered = sorted(self._files.values(), key=lambda f: (f.created_at, f.seq), reverse=not ascending)
        if purpose is not None:
            ordered = [f for f in ordered if f.purpose == purpose]
        if after is not None:
            ids = [f.id for f in ordered]
            ordered = ordered[ids.index(after) + 1 :] if after in ids else []
        return ordered[:limit], len(ordered) > limit

    def all(self) -> list[StoredFile]:
        with self._lock:
            return sorted(self._files.values(), key=lambda f: f.seq)

    def clear(self) -> None:
        """Forget every file and remove all content, including scratch files."""
        with self._lock:
            self._files.clear()
        for path in self.root.iterdir():
            if path.is_file():
                path.unlink(missing_ok=True)
