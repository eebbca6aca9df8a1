"""Where batch files come from and go to, without importing Airflow (floor 1).

A *source* is a local path (``str`` / ``os.PathLike``), an open binary file-like
object, or anything with an ``open(mode)`` method such as Airflow's
``ObjectStoragePath`` (``s3://...``, ``gs://...``, ``file://...``). Duck typing keeps
this module free of Airflow while still streaming from object storage.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import IO, Any, Union

Source = Union[str, "os.PathLike[str]", IO[bytes], Any]


_LOCAL_PROTOCOLS = ("", "file", "local")


def is_file_like(source: object) -> bool:
    return hasattr(source, "read") and not hasattr(source, "open")


def local_path_of(target: object) -> str | None:
    """The local file-system path of a ``str``, an ``os.PathLike`` or a ``file://`` storage path; else None.

    A storage path (universal-pathlib's ``UPath``, which Airflow's ``ObjectStoragePath`` is) is known by its
    ``protocol`` before ``os.PathLike`` is trusted: universal-pathlib 0.2 (the one Airflow 3.0 and 3.1 use)
    makes every ``UPath`` path-like, and its ``__fspath__`` gives the URI (``memory://...``, ``file:///...``),
    which ``open()`` cannot open.
    """
    if isinstance(target, str):
        return target
    protocol = getattr(target, "protocol", None)
    if isinstance(protocol, str) and hasattr(target, "open"):
        path = getattr(target, "path", None)
        return path if protocol in _LOCAL_PROTOCOLS and isinstance(path, str) else None
    if isinstance(target, os.PathLike):
        return os.fspath(target)
    return None


def describe_source(source: Source) -> str:
    """A short human name for error messages: the path or URI, or the stream's name."""
    local = local_path_of(source)
    if local is not None:
        return local
    if is_file_like(source):
        return str(getattr(source, "name", "<stream>"))
    return str(source)


@contextlib.contextmanager
def open_binary(source: Source) -> Iterator[IO[bytes]]:
    """Open ``source`` for binary reading; a caller-owned stream is left open."""
    local = local_path_of(source)
    if local is not None:
        with open(local, "rb") as handle:
            yield handle
    elif is_file_like(source):
        yield source
    elif hasattr(source, "open"):
        with source.open("rb") as handle:
            yield handle
    else:
        raise TypeError(
            f"Cannot read a batch file from {type(source).__name__}: give a path, a stream or a storage path"
        )


def source_filename(source: Source, default: str = "batch_input.jsonl") -> str:
    """The bare file name to send in the multipart upload (the service wants ``.jsonl``)."""
    name = describe_source(source).rstrip("/").rsplit("/", 1)[-1]
    return name if name and not name.startswith("<") else default


# Streams sent as uploads ------------------------------------------------------------------------


def is_seekable(stream: IO[bytes]) -> bool:
    """Whether a caller's stream can be rewound for a retry (a pipe or socket cannot)."""
    try:
        return bool(stream.seekable())
    except (AttributeError, OSError, ValueError):
        return False


class FromPosition:
    """A view of a seekable stream that begins at ``start``.

    httpx's multipart field seeks its file to 0 and sizes it from the end; this view makes
    "0" mean the caller's position, so bytes the caller already read past are not sent.
    """

    def __init__(self, stream: IO[bytes], start: int) -> None:
        self._stream = stream
        self._start = start

    def read(self, size: int = -1) -> bytes:
        return self._stream.read(size)

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset + self._start if whence == 0 else offset
        return self._stream.seek(target, whence) - self._start

    def tell(self) -> int:
        return self._stream.tell() - self._start
