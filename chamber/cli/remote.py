"""What CLI commands that talk to a running signer share: secret flags, URL policy, HTTP."""

from __future__ import annotations

import ipaddress
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, NoReturn

import orjson


class CliError(Exception):
    """A failure to report to the operator (message only) with an exit code."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def fail(error: CliError) -> NoReturn:
    print(f"containment-chamber: {error.message}", file=sys.stderr)
    sys.exit(error.code)


def resolve_secret_flag(value: str, flag: str) -> str:
    """``env:VAR`` or ``-`` (one line from standard input). Literal secrets are refused: they
    would be visible to every user of the machine in the process list and in shell history."""
    if value.startswith("env:"):
        name = value[4:]
        secret = os.environ.get(name)
        if not name or secret is None:
            raise CliError(f"{flag}: environment variable {name or '(empty)'} is not set", 2)
        return secret
    if value == "-":
        line = sys.stdin.readline().rstrip("\r\n")
        if not line:
            raise CliError(f"{flag}: nothing was read from standard input", 2)
        return line
    raise CliError(
        f"{flag}: pass env:VAR or - (read from standard input); a secret on the command line "
        "is visible to every process on the machine",
        2,
    )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_signer_url(url: str, allow_plaintext: bool) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise CliError(f"--signer-url: {url!r} is not an http(s) URL", 2)
    if parsed.scheme == "http" and not _is_loopback(parsed.hostname) and not allow_plaintext:
        raise CliError(
            f"--signer-url: refusing plain HTTP to {parsed.hostname}, which is not loopback: "
            "tokens and secrets would cross the network unencrypted. Use https://, or pass "
            "--allow-plaintext-signer if the network is trusted",
            2,
        )
    return url.rstrip("/")


class SignerClient:
    def __init__(self, url: str, token: str | None, timeout: float = 60) -> None:
        self.url = url
        self._token = token
        self.timeout = timeout

    def request(
        self,
        method: str,
        path: str,
        body: bytes | dict[str, Any] | None = None,
        params: list[tuple[str, str]] | None = None,
    ) -> Any:
        data = orjson.dumps(body) if isinstance(body, dict) else body
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self._token:
            headers["Authorization"] = f"Bearer {self._token}"
        # check_signer_url() admitted only http(s) URLs.
        req = urllib.request.Request(  # noqa: S310
            self.url + path + query, data=data, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:  # noqa: S310
                return orjson.loads(resp.read() or b"null")
        except urllib.error.HTTPError as err:
            raw = err.read()
            try:
                message = orjson.loads(raw).get("message") or raw.decode(errors="replace")
            except (orjson.JSONDecodeError, AttributeError):
                message = raw.decode(errors="replace")[:500]
            raise CliError(f"the signer answered {err.code}: {message}") from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise CliError(f"cannot reach the signer at {self.url}: {reason}") from None
