"""iter_lines lowers the interpreter's switch interval only while it runs, and always restores it."""

from __future__ import annotations

import hashlib
import io
import sys
from contextlib import closing

import pytest

from airflow_provider_openai_batch.inputs import batchfile
from airflow_provider_openai_batch.inputs.batchfile import HANDOFF_INTERVAL, iter_lines

DATA = b"".join(b'{"n": %d}\n' % i for i in range(100))


@pytest.fixture(autouse=True)
def _default_interval():
    before = sys.getswitchinterval()
    sys.setswitchinterval(0.005)
    yield
    sys.setswitchinterval(before)


def test_the_interval_is_lowered_while_lines_stream_and_restored_after():
    with closing(iter_lines(io.BytesIO(DATA), hashlib.sha256())) as lines:
        next(lines)
        assert sys.getswitchinterval() == pytest.approx(HANDOFF_INTERVAL)
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_overlapping_readers_restore_the_interval_only_when_the_last_one_ends(monkeypatch):
    monkeypatch.setattr(batchfile, "READ_BLOCK", 16)
    first = iter_lines(io.BytesIO(DATA), hashlib.sha256())
    second = iter_lines(io.BytesIO(DATA), hashlib.sha256())
    next(first), next(second)
    first.close()
    assert sys.getswitchinterval() == pytest.approx(HANDOFF_INTERVAL)
    assert b"".join([b'{"n": 0}\n', *second]) == DATA
    assert sys.getswitchinterval() == pytest.approx(0.005)


def test_a_failing_reader_restores_the_interval_and_a_lower_one_is_kept():
    class Broken(io.BytesIO):
        def read(self, size: int = -1) -> bytes:
            raise OSError("gone")

    with pytest.raises(OSError, match="gone"):
        list(iter_lines(Broken(), hashlib.sha256()))
    assert sys.getswitchinterval() == pytest.approx(0.005)
    sys.setswitchinterval(0.0001)
    assert list(iter_lines(io.BytesIO(DATA), hashlib.sha256())) == list(io.BytesIO(DATA))
    assert sys.getswitchinterval() == pytest.approx(0.0001, abs=2e-6)
