"""The OpenAI error envelope and the messages the real service uses.

Every error the fake returns goes through :class:`ApiError`, so the body always has the
four keys ``message``, ``type``, ``param`` and ``code`` (nullable, never missing): clients
such as the official SDK read ``.code`` / ``.param`` from exactly that envelope. Message
texts copy the ones observed from the real API (see the behaviour reference) so that tests
matching on them stay meaningful against the real service too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

INVALID_REQUEST = "invalid_request_error"
SERVER_ERROR = "server_error"


class ApiError(Exception):
    """An HTTP error response in the OpenAI envelope."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        type: str = INVALID_REQUEST,
        param: str | None = None,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return error_envelope(self.message, type=self.type, param=self.param, code=self.code)


def error_envelope(
    message: str, *, type: str = INVALID_REQUEST, param: str | None = None, code: str | None = None
) -> dict[str, Any]:
    """``{"error": {...}}`` with all four keys, as the spec's ``ErrorResponse`` requires."""
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


def json_type_name(value: object) -> str:
    """How OpenAI names a JSON value's type in ``invalid_type`` messages ("an array", "a string")."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a decimal"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def quoted_choices(values: Iterable[str]) -> str:
    """``'a', 'b', and 'c'``: the enumeration style of OpenAI's ``invalid_value`` messages."""
    quoted = [f"'{value}'" for value in values]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def missing_parameter(param: str) -> ApiError:
    return ApiError(400, f"Missing required parameter: '{param}'.", param=param, code="missing_required_parameter")


def invalid_type(param: str, expected: str, value: object) -> ApiError:
    return ApiError(
        400,
        f"Invalid type for '{param}': expected {expected}, but got {json_type_name(value)} instead.",
        param=param,
        code="invalid_type",
    )


def invalid_value(param: str, value: object, supported: Iterable[str]) -> ApiError:
    return ApiError(
        400,
        f"Invalid value: '{value}'. Supported values are: {quoted_choices(supported)}.",
        param=param,
        code="invalid_value",
    )


def integer_in_range(param: str, value: object, minimum: int, maximum: int) -> int:
    """Return ``value`` as an int, or raise the error OpenAI gives for a bad integer parameter."""
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise invalid_type(param, "an integer", value) from None
    if not isinstance(value, int) or isinstance(value, bool):
        raise invalid_type(param, "an integer", value)
    if value < minimum:
        raise ApiError(
            400,
            f"Invalid '{param}': integer below minimum value. Expected a value >= {minimum}, but got {value} instead.",
            param=param,
            code="integer_below_min_value",
        )
    if value > maximum:
        raise ApiError(
            400,
            f"Invalid '{param}': integer above maximum value. Expected a value <= {maximum}, but got {value} instead.",
            param=param,
            code="integer_above_max_value",
        )
    return value


def file_not_found(file_id: str) -> ApiError:
    return ApiError(404, f"No such File object: {file_id}", param="id")


def batch_not_found(batch_id: str) -> ApiError:
    return ApiError(404, f"No batch found with id '{batch_id}'.", param=None)


def invalid_json_body() -> ApiError:
    return ApiError(
        400,
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your "
        "HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON.)",
    )


def invalid_url(method: str, path: str) -> ApiError:
    return ApiError(404, f"Invalid URL ({method} {path})")


def status_fault(status: int, retry_after_hint: float | None = None) -> ApiError:
    """The body of an injected HTTP failure, shaped like the real service's for that status."""
    if status == 429:
        wait = f" Please try again in {retry_after_hint:g}s." if retry_after_hint else ""
        return ApiError(
            429,
            f"Rate limit reached for requests in organization org-fake on requests per min (RPM).{wait}",
            type="requests",
            code="rate_limit_exceeded",
        )
    if status == 503:
        return ApiError(503, "The engine is currently overloaded, please try again later.", type=SERVER_ERROR)
    if status >= 500:
        return ApiError(
            status,
            "The server had an error while processing your request. Sorry about that!",
            type=SERVER_ERROR,
        )
    return ApiError(status, f"Injected failure with status {status}.")
