"""Which model names the fake accepts, so a typo fails as it would on the service.

The service checks every line's ``body.model`` while ``validating`` and fails the batch with
``model_not_found`` (1-based ``line``, ``param`` ``body.model``, message "The provided model 'x' is
not supported by the Batch API.") when it does not know the model (behaviour reference, section 4.2,
observed against OpenAI). So the fake checks models by default, against :data:`DEFAULT_MODELS`;
a test can give its own list (``models=...``) or opt out (``accept_any_model=True``, e.g. for an
OpenAI-compatible service with deployment names).

A listed name also covers its dated snapshots (``gpt-4o-mini`` covers ``gpt-4o-mini-2024-07-18``),
as the service resolves an alias to a snapshot and accepts both (reference section 1.1: the Batch
object's ``model`` is "the resolved model snapshot, e.g. ``gpt-5-2025-08-07``").
"""

from __future__ import annotations

import re
from collections.abc import Collection

CHAT_MODELS = frozenset(
    {
        "gpt-5.4",
        "gpt-5.4-pro",
        "gpt-5.2",
        "gpt-5.1",
        "gpt-5",
        "gpt-5-pro",
        "gpt-5-mini",
        "gpt-5-nano",
        "gpt-4.1",
        "gpt-4.1-mini",
        "gpt-4.1-nano",
        "gpt-4o",
        "gpt-4o-mini",
        "gpt-4-turbo",
        "gpt-4",
        "gpt-3.5-turbo",
        "o1",
        "o1-pro",
        "o3",
        "o3-pro",
        "o3-mini",
        "o4-mini",
    }
)
"""Text models for ``/v1/chat/completions`` and ``/v1/responses``."""

COMPLETION_MODELS = frozenset({"gpt-3.5-turbo-instruct", "davinci-002", "babbage-002"})
"""Models of the legacy ``/v1/completions`` endpoint."""

EMBEDDING_MODELS = frozenset({"text-embedding-3-small", "text-embedding-3-large", "text-embedding-ada-002"})

MODERATION_MODELS = frozenset({"omni-moderation-latest", "omni-moderation-2024-09-26", "text-moderation-latest"})

IMAGE_MODELS = frozenset({"gpt-image-1", "gpt-image-1-mini", "dall-e-3", "dall-e-2"})

VIDEO_MODELS = frozenset({"sora-2", "sora-2-pro"})

DEFAULT_MODELS: frozenset[str] = (
    CHAT_MODELS | COMPLETION_MODELS | EMBEDDING_MODELS | MODERATION_MODELS | IMAGE_MODELS | VIDEO_MODELS
)
"""Every model the fake knows by default (each also with its dated snapshots)."""

_SNAPSHOT = re.compile(r"^(?P<alias>.+)-\d{4}-\d{2}-\d{2}$")


def resolve_models(models: Collection[str] | None, accept_any_model: bool) -> frozenset[str] | None:
    """The names to check lines against: ``None`` means any model is accepted."""
    if accept_any_model:
        return None
    return DEFAULT_MODELS if models is None else frozenset(models)


def is_known_model(model: str, models: Collection[str]) -> bool:
    """``model`` is listed, or is a dated snapshot (``<name>-YYYY-MM-DD``) of a listed name."""
    if model in models:
        return True
    snapshot = _SNAPSHOT.match(model)
    return snapshot is not None and snapshot.group("alias") in models
