"""One exception hierarchy for the whole signer.

Every error that can reach a client knows its HTTP status and a message that names the problem
(and, where it helps, the fix). Messages must never contain secret material: callers pass field
names and public identifiers only, never key bytes, tokens or passphrases.
"""

from __future__ import annotations


class ChamberError(Exception):
    """Base class. ``status`` is the HTTP status the API answers with."""

    status: int = 500
    title: str = "internal error"

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

    def to_json(self) -> dict[str, object]:
        body: dict[str, object] = {"error": self.title, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        return body


class BadRequest(ChamberError):
    """Malformed or inconsistent request; ``field`` names the offending JSON path."""

    status = 400
    title = "bad request"


class Unauthorized(ChamberError):
    """No token, or a token that matches no policy."""

    status = 401
    title = "unauthorized"


class Forbidden(ChamberError):
    """A valid token whose policy does not allow this scope, key or operation."""

    status = 403
    title = "forbidden"


class NetworkMismatch(Forbidden):
    """The request's genesis validators root is not the configured network's."""

    title = "wrong network"


class KeyNotFound(ChamberError):
    status = 404
    title = "key not found"


class PayloadTooLarge(ChamberError):
    status = 413
    title = "payload too large"


class UnsupportedMediaType(ChamberError):
    status = 415
    title = "unsupported media type"


class Conflict(ChamberError):
    status = 409
    title = "conflict"


class TooManyAttempts(ChamberError):
    """Failed credential attempts for one operator (or the setup token) are being rate-limited."""

    status = 429
    title = "too many attempts"

    def __init__(self, message: str, *, retry_after: int) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class KmsError(ChamberError):
    """A KMS key could not encrypt or decrypt; the message names the key id and the reason."""

    status = 502
    title = "KMS error"

    def __init__(self, key_id: str, reason: str) -> None:
        super().__init__(f"KMS key {key_id}: {reason}")
        self.key_id = key_id
        self.reason = reason


class SlashingRefused(ChamberError):
    """Slashing protection refused to sign; the message names the conflicting record."""

    status = 412
    title = "slashing protection refused"


class Unavailable(ChamberError):
    """Sealed, overloaded or shutting down. ``retry_after`` seconds go in ``Retry-After``."""

    status = 503
    title = "service unavailable"

    def __init__(self, message: str, *, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StartupError(ChamberError):
    """The signer cannot start: bad configuration, missing plugin, unusable store.

    Raised before the API serves anything; the CLI prints the message and exits non-zero.
    """

    title = "start-up error"


class ConfigError(StartupError):
    """Configuration invalid; the message names the key path (``server.listen_port``)."""

    title = "configuration error"


class PluginError(StartupError):
    """A plugin is missing, broken, or provides a name another plugin provides too."""

    title = "plugin error"


class KeyLoadError(ChamberError):
    """One key file could not be loaded; ``path`` and ``reason`` say which and why."""

    title = "key load error"

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
