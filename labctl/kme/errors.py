"""The spec's error answers (ETSI GS QKD 014 V1.1.1, Error data format).

Every refusal is a :class:`KmeError` carrying the HTTP status the spec assigns (400 bad
request format, 401 unauthorized, 503 error on the server side) and the Error object
``{"message": str, "details": [object, ...]}``. Messages name what was wrong and where (the
field, the SAE ID, the key_ID), never key material.
"""

from __future__ import annotations

from typing import Any

BAD_REQUEST = 400
UNAUTHORIZED = 401
SERVER_ERROR = 503


class KmeError(Exception):
    """A request the KME refuses: HTTP ``status`` and the spec's Error body."""

    def __init__(
        self, status: int, message: str, details: list[dict[str, Any]] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.details = list(details or [])

    def body(self) -> dict[str, Any]:
        """The Error object: ``message`` and, when there is something to add, ``details``."""
        out: dict[str, Any] = {"message": self.message}
        if self.details:
            out["details"] = self.details
        return out


def bad_request(message: str, **detail: Any) -> KmeError:
    """400: the request does not have the spec's format or asks for what is not offered."""
    return KmeError(BAD_REQUEST, message, [detail] if detail else None)


def unauthorized(message: str, **detail: Any) -> KmeError:
    """401: the caller (its certificate) may not do this."""
    return KmeError(UNAUTHORIZED, message, [detail] if detail else None)


def server_error(message: str, **detail: Any) -> KmeError:
    """503: the KME cannot serve now (pool short of key, peer KME unreachable)."""
    return KmeError(SERVER_ERROR, message, [detail] if detail else None)
