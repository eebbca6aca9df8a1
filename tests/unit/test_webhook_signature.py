"""Standard Webhooks signature checks, with the specification's own test vector.

The vector (secret ``whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw``, id ``msg_p5jXN8AQM9LWM0D4loKWxJek``,
timestamp 1614265330, body ``{"test": 2432232314}``, signature
``v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=``) and the near-miss signature ending in ``OA=``
come from the standard-webhooks repository's reference tests,
``libraries/python/tests/test_webhooks.py`` (test_sign_function, test_invalid_signature_raises_error).
"""

from __future__ import annotations

import pytest

from airflow_provider_openai_batch.api.webhook_signature import (
    WebhookVerificationError,
    decode_secret,
    sign,
    verify,
)

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
TIMESTAMP = 1614265330
BODY = b'{"test": 2432232314}'
EXPECTED = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
NEAR_MISS = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA="


def headers(signature: str = EXPECTED, *, webhook_id: str = MSG_ID, timestamp: int | str = TIMESTAMP) -> dict:
    return {"webhook-id": webhook_id, "webhook-timestamp": str(timestamp), "webhook-signature": signature}


def test_sign_reproduces_the_standard_vector():
    assert sign(SECRET, MSG_ID, TIMESTAMP, BODY) == EXPECTED


def test_the_standard_vector_verifies():
    delivery = verify(SECRET, headers(), BODY, now=TIMESTAMP)
    assert (delivery.webhook_id, delivery.timestamp) == (MSG_ID, TIMESTAMP)


def test_secret_without_prefix_is_the_same_key():
    assert decode_secret(SECRET) == decode_secret(SECRET.removeprefix("whsec_"))
    assert verify(SECRET.removeprefix("whsec_"), headers(), BODY, now=TIMESTAMP).webhook_id == MSG_ID


def test_one_matching_entry_among_several_is_enough():
    listed = " ".join(["v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=", "v2,abc", "v1,not-base64!", EXPECTED])
    assert verify(SECRET, headers(listed), BODY, now=TIMESTAMP).webhook_id == MSG_ID


def test_near_miss_signature_is_rejected():
    with pytest.raises(WebhookVerificationError, match="no webhook-signature entry matches"):
        verify(SECRET, headers(NEAR_MISS), BODY, now=TIMESTAMP)


def test_changed_body_is_rejected():
    with pytest.raises(WebhookVerificationError, match="no webhook-signature entry matches"):
        verify(SECRET, headers(), BODY.replace(b"4}", b"5}"), now=TIMESTAMP)


def test_changed_id_is_rejected():
    with pytest.raises(WebhookVerificationError, match="no webhook-signature entry matches"):
        verify(SECRET, headers(webhook_id="msg_other"), BODY, now=TIMESTAMP)


def test_wrong_secret_is_rejected():
    other = "whsec_" + "QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVo="
    with pytest.raises(WebhookVerificationError) as info:
        verify(other, headers(), BODY, now=TIMESTAMP)
    assert "QUJD" not in str(info.value) and "g0hM9" not in str(info.value)


def test_only_v1_entries_count():
    with pytest.raises(WebhookVerificationError):
        verify(SECRET, headers(EXPECTED.replace("v1,", "v2,")), BODY, now=TIMESTAMP)


@pytest.mark.parametrize("missing", ["webhook-id", "webhook-timestamp", "webhook-signature"])
def test_missing_header_is_named(missing):
    given = headers()
    del given[missing]
    with pytest.raises(WebhookVerificationError, match=f"missing {missing} header"):
        verify(SECRET, given, BODY, now=TIMESTAMP)


def test_empty_header_counts_as_missing():
    with pytest.raises(WebhookVerificationError, match="missing webhook-signature"):
        verify(SECRET, headers("  "), BODY, now=TIMESTAMP)


def test_non_numeric_timestamp_is_rejected():
    with pytest.raises(WebhookVerificationError, match="not a Unix time"):
        verify(SECRET, headers(timestamp="hello"), BODY, now=TIMESTAMP)


@pytest.mark.parametrize("offset", [-301, 301])
def test_timestamp_more_than_five_minutes_off_is_rejected(offset):
    with pytest.raises(WebhookVerificationError, match="more than 300s"):
        verify(SECRET, headers(), BODY, now=TIMESTAMP + offset)


@pytest.mark.parametrize("offset", [-300, 300])
def test_timestamp_exactly_five_minutes_off_is_accepted(offset):
    assert verify(SECRET, headers(), BODY, now=TIMESTAMP + offset).timestamp == TIMESTAMP


def test_malformed_secret_is_a_rejection_not_a_crash():
    with pytest.raises(WebhookVerificationError, match="not a valid whsec_"):
        verify("whsec_***", headers(), BODY, now=TIMESTAMP)


def test_sign_then_verify_round_trip():
    body = b'{"id": "evt_1", "type": "batch.completed", "data": {"id": "batch_1"}}'
    signature = sign(SECRET, "evt_1", 1_700_000_000, body)
    assert verify(SECRET, headers(signature, webhook_id="evt_1", timestamp=1_700_000_000), body, now=1_700_000_001)
