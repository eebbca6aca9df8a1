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


def is_file_like(source: object) -> bool:
    return hasattr(source, "read") and not hasattr(source, "open")


def describe_source(source: Source) -> str:
    """A short human name for error messages: the path or URI, or the stream's name."""
    if isinstance(source, (str, os.PathLike)):
        return os.fspath(source)
    if is_file_like(source):
        return str(getattr(source, "name", "<stream>"))
    return str(source)


@contextlib.contextmanager
def open_binary(source: Source) -> Iterator[IO[bytes]]:
    """Open ``source`` for binary reading; a caller-owned stream is left open."""
    if isinstance(source, (str, os.PathLike)):
        with open(os.fspath(source), "rb") as handle:
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
