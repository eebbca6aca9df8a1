"""An input file without its blank lines, streamed to an upload and never copied (floor 1: no Airflow import).

With ``skip_blank_lines=True`` the validator checks a file whose blank lines are left out, and
what is uploaded must be exactly what was checked and fingerprinted. :class:`WithoutBlankLines`
is a *source* (anything with ``open(mode)``, see :mod:`.sources`) whose bytes are the file's
minus its blank lines: the upload reads it in chunks, reopens it for a retry, and learns its
length up front (from the validation summary) so the request has a ``Content-Length``.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Iterator
from typing import IO, Any

from airflow_provider_openai_batch.inputs.scanner import is_blank
from airflow_provider_openai_batch.inputs.sources import Source, describe_source, is_file_like, open_binary

_READ_SIZE = 1 << 20


class WithoutBlankLines:
    """``source`` without its blank lines; ``size`` is the byte count left (``BatchFileSummary.bytes``).

    ``str()`` names the original, so errors and the uploaded file's name stay the user's. The
    original must not change between validation and upload: a different length fails the upload.
    """

    def __init__(self, source: Source, size: int) -> None:
        if is_file_like(source):
            raise TypeError("A copy without blank lines is streamed from a path or a storage path, not from a stream")
        self.source = source
        self.size = size

    def __str__(self) -> str:
        return describe_source(self.source)

    def open(self, mode: str = "rb") -> IO[bytes]:
        if mode != "rb":
            raise ValueError(f"{self} without blank lines can only be read ('rb'), not opened with {mode!r}")
        return _Reader(self.source, self.size)


class _Reader(io.RawIOBase):
    """A read-only binary stream of the non-blank lines; seekable only to its start and to its end (its length)."""

    def __init__(self, source: Source, size: int) -> None:
        super().__init__()
        self._source = source
        self._size = size
        self._stack = contextlib.ExitStack()
        self._lines: Iterator[bytes] = iter(())
        self._buffer = b""
        self._position = 0
        self._rewind()

    def _rewind(self) -> None:
        self._stack.close()
        handle = self._stack.enter_context(open_binary(self._source))
        self._lines = _request_lines(handle)
        self._buffer = b""
        self._position = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        if whence == os.SEEK_SET and offset == 0:
            self._rewind()
        elif whence == os.SEEK_END and offset == 0:
            return self._size  # only to learn the length: httpx seeks back to where it was at once
        elif not (whence == os.SEEK_SET and offset == self._position):
            raise io.UnsupportedOperation("a copy without blank lines seeks only to its start or its end")
        return self._position

    def read(self, size: int = -1) -> bytes:
        want = self._size if size is None or size < 0 else size
        pieces = [self._buffer] if self._buffer else []
        have = len(self._buffer)
        while have < want:
            line = next(self._lines, None)
            if line is None:
                break
            pieces.append(line)
            have += len(line)
        data = b"".join(pieces)
        chunk, self._buffer = data[:want], data[want:]
        self._position += len(chunk)
        if self._position > self._size or (not chunk and want and self._position != self._size):
            raise OSError(f"{describe_source(self._source)} changed since it was validated; nothing more is sent")
        return chunk

    def readinto(self, buffer: Any) -> int:
        chunk = self.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        self._stack.close()
        super().close()


def _request_lines(handle: IO[bytes]) -> Iterator[bytes]:
    """The non-blank lines of ``handle``, read in large blocks."""
    tail = b""
    while block := handle.read(_READ_SIZE):
        block = tail + block if tail else block
        start = 0
        end = block.find(b"\n")
        while end >= 0:
            line = block[start : end + 1]
            if not is_blank(line):
                yield line
            start = end + 1
            end = block.find(b"\n", start)
        tail = block[start:]
    if tail and not is_blank(tail):
        yield tail
