"""Standard Webhooks signatures, as OpenAI signs its webhooks (floor 1: no Airflow).

A delivery carries three headers: ``webhook-id`` (unique per message; repeated on a
redelivery), ``webhook-timestamp`` (Unix seconds) and ``webhook-signature`` (a
space-separated list of ``v1,<base64>`` entries, several while a secret is rotated). The
signed content is ``{id}.{timestamp}.{raw body}``, HMAC-SHA256 with the key that the
secret ``whsec_<base64>`` encodes. The timestamp is part of the signed content, so
refusing timestamps more than five minutes off makes a captured delivery useless
afterwards.

Nothing here ever puts the secret, the key or an expected signature into an error
message: a rejection says which check failed, and that is all a caller may log.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from dataclasses import dataclass

SECRET_PREFIX = "whsec_"
TOLERANCE_SECONDS = 300
"""How far ``webhook-timestamp`` may be from our clock, either way (the official SDKs use 5 minutes)."""
SIGNATURE_VERSION = "v1"


class WebhookVerificationError(ValueError):
    """The delivery is not authentic or not fresh; ``reason`` is safe to log and to answer with."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class VerifiedDelivery:
    webhook_id: str
    timestamp: int


def decode_secret(secret: str) -> bytes:
    """The HMAC key of ``whsec_<base64>`` (the prefix is optional, as in the reference libraries)."""
    text = (secret or "").strip()
    if text.startswith(SECRET_PREFIX):
        text = text[len(SECRET_PREFIX) :]
    try:
        key = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("The webhook secret is not a valid whsec_<base64> value") from None
    if not key:
        raise ValueError("The webhook secret is empty")
    return key


def sign(secret: str, webhook_id: str, timestamp: int, body: bytes) -> str:
    """The ``v1,<base64>`` signature of one delivery (what a sender puts in ``webhook-signature``)."""
    digest = hmac.new(decode_secret(secret), _signed_content(webhook_id, timestamp, body), hashlib.sha256).digest()
    return f"{SIGNATURE_VERSION},{base64.b64encode(digest).decode('ascii')}"


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    *,
    now: float | None = None,
    tolerance: float = TOLERANCE_SECONDS,
) -> VerifiedDelivery:
    """Check one delivery; return its id and timestamp or raise :class:`WebhookVerificationError`.

    ``headers`` is looked up with lower-case names (Starlette's and httpx's headers are
    case-insensitive; a plain dict must use lower case). Every ``v1`` entry of the
    signature header is compared in constant time; any one matching is enough.
    """
    webhook_id = _header(headers, "webhook-id")
    raw_timestamp = _header(headers, "webhook-timestamp")
    signatures = _header(headers, "webhook-signature")
    try:
        timestamp = int(raw_timestamp)
    except ValueError:
        raise WebhookVerificationError("webhook-timestamp is not a Unix time in seconds") from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError(
            f"webhook-timestamp is {current - timestamp:+.0f}s away from now (more than {tolerance:.0f}s)"
        )
    try:
        key = decode_secret(secret)
    except ValueError as error:
        raise WebhookVerificationError(str(error)) from None
    expected = hmac.new(key, _signed_content(webhook_id, timestamp, body, raw_timestamp), hashlib.sha256).digest()
    for entry in signatures.split():
        version, _, encoded = entry.partition(",")
        if version != SIGNATURE_VERSION:
            continue
        try:
            candidate = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            continue
        if hmac.compare_digest(candidate, expected):
            return VerifiedDelivery(webhook_id=webhook_id, timestamp=timestamp)
    raise WebhookVerificationError("no webhook-signature entry matches (wrong secret, or the body was changed)")


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name)
    if value is None or not str(value).strip():
        raise WebhookVerificationError(f"missing {name} header")
    return str(value).strip()


def _signed_content(webhook_id: str, timestamp: int, body: bytes, raw_timestamp: str | None = None) -> bytes:
    # The timestamp is signed as sent (the header text), which is the integer's decimal form.
    stamp = raw_timestamp if raw_timestamp is not None else str(timestamp)
    return f"{webhook_id}.{stamp}.".encode() + body
