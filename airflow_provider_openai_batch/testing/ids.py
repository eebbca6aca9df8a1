"""Object ids: seeded for objects, hash-derived for result lines.

Batch and file ids come from one seeded generator, so two runs that make the same calls in
the same order see the same ids. Ids inside result files (``batch_req_...``, ``req_...``,
``chatcmpl-...``) are derived from the batch id and the ``custom_id`` instead: they do not
depend on which worker thread wrote the file or when.
"""

from __future__ import annotations

import hashlib
import random
import threading


class IdFactory:
    """Thread-safe seeded source of ``<prefix><hex>`` ids."""

    def __init__(self, seed: int) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._rng = random.Random(seed)

    def new(self, prefix: str, hex_chars: int = 32) -> str:
        with self._lock:
            value = self._rng.getrandbits(hex_chars * 4)
        return f"{prefix}{value:0{hex_chars}x}"

    def reset(self) -> None:
        with self._lock:
            self._rng = random.Random(self._seed)


def derived_id(prefix: str, *parts: str, hex_chars: int = 32) -> str:
    """A stable id for a thing identified by ``parts`` (e.g. batch id and custom_id)."""
    digest = hashlib.sha256("\x1f".join((prefix, *parts)).encode()).hexdigest()
    return prefix + digest[:hex_chars]
