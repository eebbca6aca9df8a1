"""What the fake knows about each Batch API endpoint: its name in messages and required body fields.

Kept separate from the provider's own endpoint list on purpose: the fake is the independent
witness the provider is tested against, so it must not share definitions with the code under test.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EndpointRule:
    label: str
    """Prefix of the ``streaming_unsupported`` message, e.g. "Chat Completions"."""
    required: tuple[str, ...]
    """Body fields whose absence fails validation with ``invalid_request`` ("Model parameter is required.")."""


ENDPOINT_RULES: dict[str, EndpointRule] = {
    "/v1/chat/completions": EndpointRule("Chat Completions", ("model", "messages")),
    "/v1/completions": EndpointRule("Completions", ("model", "prompt")),
    "/v1/embeddings": EndpointRule("Embeddings", ("model", "input")),
    "/v1/responses": EndpointRule("Responses", ("model",)),
    "/v1/moderations": EndpointRule("Moderations", ("input",)),
    "/v1/images/generations": EndpointRule("Images", ("prompt",)),
    "/v1/images/edits": EndpointRule("Images", ("image", "prompt")),
    "/v1/videos": EndpointRule("Videos", ("prompt",)),
}
"""The eight endpoints ``CreateBatchRequest.endpoint`` accepts, in the order error messages list them."""

SUPPORTED_ENDPOINTS: tuple[str, ...] = tuple(ENDPOINT_RULES)
