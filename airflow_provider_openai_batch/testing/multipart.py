"""Streaming ``multipart/form-data`` parsing that writes the uploaded file straight to disk.

Starlette's ``request.form()`` would spool a large part to an anonymous temporary file that
then has to be copied into the store; parsing the stream here writes each byte once, keeps
memory bounded by one buffer whatever the upload size (200 MB batch inputs), and works the
same for chunked and fixed-length request bodies because it consumes ``request.stream()``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from airflow_provider_openai_batch.testing.errors import ApiError

FLUSH_BYTES = 1024 * 1024
"""File data is buffered up to this size and then written from a worker thread, off the event loop."""

MAX_FIELD_BYTES = 64 * 1024
"""Plain (non-file) fields are small (purpose, expiry); anything bigger is a client bug."""


@dataclass
class UploadForm:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None


@dataclass
class _Part:
    name: str = ""
    filename: str | None = None
    data: bytearray = field(default_factory=bytearray)


class _FormCollector:
    """python-multipart callbacks: the ``file`` field goes to disk, other fields to memory."""

    def __init__(self, form: UploadForm) -> None:
        self._form = form
        self._part = _Part()
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._disposition = b""
        self.pending = bytearray()

    def on_part_begin(self) -> None:
        self._part = _Part()
        self._disposition = b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if bytes(self._header_name).lower() == b"content-disposition":
            self._disposition = bytes(self._header_value)
        self._header_name.clear()
        self._header_value.clear()

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        self._part.name = options.get(b"name", b"").decode("utf-8", "replace")
        if b"filename" in options:
            self._part.filename = options[b"filename"].decode("utf-8", "replace")

    def _is_upload(self) -> bool:
        # Only the first file part named ``file`` is stored; a repeated one is ignored.
        return self._part.name == "file" and self._part.filename is not None and self._form.filename is None

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_upload():
            self.pending += data[start:end]
            return
        if self._part.filename is not None:
            return
        self._part.data += data[start:end]
        if len(self._part.data) > MAX_FIELD_BYTES:
            raise ApiError(400, f"The form field '{self._part.name}' is too large.", param=self._part.name)

    def on_part_end(self) -> None:
        if self._is_upload():
            self._form.filename = self._part.filename
        elif self._part.filename is None:
            self._form.fields[self._part.name] = self._part.data.decode("utf-8", "replace")


async def _flush(sink: BinaryIO, pending: bytearray) -> None:
    chunk = bytes(pending)
    pending.clear()
    await asyncio.to_thread(sink.write, chunk)


async def receive_upload(stream: AsyncIterator[bytes], content_type: str, destination: Path) -> UploadForm:
    """Parse a multipart body, writing the ``file`` part to ``destination``; return the other fields."""
    kind, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if kind != b"multipart/form-data" or not boundary:
        raise ApiError(400, "Invalid content type. The request must be multipart/form-data with a boundary.")
    form = UploadForm()
    with destination.open("wb") as sink:
        collector = _FormCollector(form)
        parser = MultipartParser(
            boundary,
            {
                "on_part_begin": collector.on_part_begin,
                "on_header_field": collector.on_header_field,
                "on_header_value": collector.on_header_value,
                "on_header_end": collector.on_header_end,
                "on_headers_finished": collector.on_headers_finished,
                "on_part_data": collector.on_part_data,
                "on_part_end": collector.on_part_end,
            },
        )
        try:
            async for chunk in stream:
                parser.write(chunk)
                if len(collector.pending) >= FLUSH_BYTES:
                    await _flush(sink, collector.pending)
            parser.finalize()
        except FormParserError as exc:
            raise ApiError(400, "Invalid multipart form data.") from exc
        if collector.pending:
            await _flush(sink, collector.pending)
    return form
