"""Typed settings: YAML file < ``CONTAINMENT_*`` environment < CLI flags.

- Environment variables: ``CONTAINMENT_SERVER__LISTEN_PORT=9001`` sets ``server.listen_port``
  (``__`` nests, names are lower-cased; a value starting with ``[`` or ``{`` is parsed as YAML so
  lists can be given).
- Secret values (tokens) may be ``env:VAR``; an unset variable is a start-up error naming both the
  key path and the variable. Secrets are held as :class:`pydantic.SecretStr`, so they never show
  in ``repr`` or in ``config check`` output.
- Unknown keys and bad values are :class:`chamber.errors.ConfigError` naming the key path.

Plugin-owned sections (``key_sources.<name>`` of a plugin, ``anti_slashing`` backend settings)
are kept as mappings here and validated by the plugin that owns them.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from chamber.errors import ConfigError
from chamber.keys import normalize_pubkey_hex

ENV_PREFIX = "CONTAINMENT_"
_ENV_REF = re.compile(r"^env:([A-Za-z_][A-Za-z0-9_]*)$")

SCOPES = frozenset(
    {
        "sign",
        "public_keys",
        "list_keys",
        "import_keystores",
        "delete_keys",
        "chamber_status",
        "chamber_seal",
        "chamber_rotate",
        "chamber_keys_list",
        "chamber_keys_generate",
        "chamber_keys_write",
        "chamber_keys_delete",
        "slashing_export",
        "slashing_import",
    }
)


def resolve_secret(value: object) -> object:
    """Resolve ``env:VAR`` to the variable's value; other values pass through unchanged."""
    if isinstance(value, SecretStr):
        return value
    if isinstance(value, str):
        match = _ENV_REF.match(value.strip())
        if match:
            name = match.group(1)
            resolved = os.environ.get(name)
            if resolved is None:
                raise ValueError(f"environment variable {name} is not set")
            return resolved
    return value


#: A secret string that may be written as ``env:VAR``.
Secret = Annotated[SecretStr, BeforeValidator(resolve_secret)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class ServerConfig(_Section):
    listen_address: str = "127.0.0.1"
    listen_port: int = Field(9000, ge=0, le=65535)
    #: Requests running or queued at once; more get 503 + Retry-After instead of waiting.
    max_concurrent_requests: int = Field(64, ge=1, le=10_000)
    #: Waitress worker threads (default: twice the CPU count, at least 4). Few threads sign
    #: faster: every extra one costs GIL hand-offs; slow slashing databases may want more.
    threads: int | None = Field(None, ge=1, le=10_000)
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    retry_after_seconds: int = Field(1, ge=1, le=3600)
    #: Seconds SIGTERM waits for in-flight requests before closing connections.
    shutdown_grace_seconds: float = Field(25.0, ge=0)
    #: Seconds an idle keep-alive connection stays open.
    channel_timeout_seconds: int = Field(120, ge=1)

    @property
    def worker_threads(self) -> int:
        if self.threads is not None:
            return self.threads
        return min(max(4, 2 * (os.cpu_count() or 1)), self.max_concurrent_requests)


class MetricsConfig(_Section):
    enabled: bool = True
    listen_address: str = "127.0.0.1"
    listen_port: int = Field(3000, ge=0, le=65535)


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


def _hex_bytes(length: int) -> Any:
    def check(value: object) -> bytes:
        if isinstance(value, bytes):
            raw = value
        elif isinstance(value, str):
            text = value[2:] if value.startswith(("0x", "0X")) else value
            try:
                raw = bytes.fromhex(text)
            except ValueError:
                raise ValueError("must be 0x-prefixed hex") from None
        else:
            raise ValueError("must be 0x-prefixed hex")
        if len(raw) != length:
            raise ValueError(f"must be {length} bytes of hex")
        return raw

    return BeforeValidator(check)


class CustomNetworkConfig(_Section):
    genesis_validators_root: Annotated[bytes, _hex_bytes(32)]
    genesis_fork_version: Annotated[bytes, _hex_bytes(4)]
    #: Fork name (ALTAIR ... FULU) -> version; needed for EIP-7044 voluntary exits.
    fork_versions: dict[str, Annotated[bytes, _hex_bytes(4)]] = Field(default_factory=dict)
    slots_per_epoch: int = Field(32, ge=1)


class FilesystemSourceConfig(_Section):
    paths: list[Path] = Field(default_factory=list)
    load_concurrency: int | None = Field(None, ge=1, le=1024)


class KeySourcesConfig(BaseModel):
    """``filesystem`` is built in; other sections belong to key-source plugins."""

    model_config = ConfigDict(extra="allow", frozen=True)
    filesystem: FilesystemSourceConfig | None = None

    def sections(self) -> dict[str, Mapping[str, Any]]:
        """Every configured source name -> its settings (plain data)."""
        found: dict[str, Mapping[str, Any]] = {}
        if self.filesystem is not None:
            found["filesystem"] = self.filesystem.model_dump()
        for name, value in (self.model_extra or {}).items():
            if value is None:
                continue
            if not isinstance(value, Mapping):
                raise ConfigError(f"key_sources.{name}: must be a mapping of settings")
            found[name] = dict(value)
        return found


class AntiSlashingConfig(BaseModel):
    """``backend`` picks a slashing backend; the other keys are that backend's settings."""

    model_config = ConfigDict(extra="allow", frozen=True)
    backend: str = "sqlite"

    def backend_settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class AuthPolicyConfig(_Section):
    token: Secret
    allowed_scopes: list[str] = Field(min_length=1)
    #: Public keys this policy may sign with / see; absent = all keys.
    keys: list[str] | None = None
    #: Signing request types this policy may request; absent = all types.
    operations: list[str] | None = None

    @field_validator("token")
    @classmethod
    def _token_strength(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if len(raw) < 16:
            raise ValueError("token must be at least 16 characters")
        if any(c.isspace() or not c.isprintable() for c in raw):
            raise ValueError("token must not contain whitespace or control characters")
        return value

    @field_validator("allowed_scopes")
    @classmethod
    def _known_scopes(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - SCOPES)
        if unknown:
            raise ValueError(
                f"unknown scope(s) {', '.join(unknown)}; known: {', '.join(sorted(SCOPES))}"
            )
        return value

    @field_validator("keys")
    @classmethod
    def _pubkeys(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        return [_normalize_pubkey(item) for item in value]


def _normalize_pubkey(item: str) -> str:
    normalized = normalize_pubkey_hex(item)
    if normalized is None:
        raise ValueError(f"{item!r} is not a 48-byte hex public key")
    return normalized


class SignerStateConfig(BaseModel):
    """The vault's state store. ``backend`` picks a ``chamber_state_backends`` provider; the keys
    other than the generic ones below are that backend's settings (``path``, ``table``, ...)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    backend: str = "sqlite"
    #: How often a replica re-reads the shared state record (0 disables polling).
    refresh_interval_seconds: float = Field(1.0, ge=0, le=3600)
    #: Partial unseal shares expire after this long (0 disables the timeout).
    unseal_timeout_minutes: float = Field(30, ge=0, le=7 * 24 * 60)

    def backend_settings(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class Argon2Config(_Section):
    """Argon2id parameters for new operator credentials (each credential stores its own)."""

    memory_kib: int = Field(65536, ge=8, le=4 * 1024 * 1024)
    iterations: int = Field(3, ge=1, le=100)
    parallelism: int = Field(4, ge=1, le=64)


class BruteForceConfig(_Section):
    """Growing delays after failed unseal / registration / setup-token attempts."""

    free_attempts: int = Field(3, ge=0, le=1000)
    base_delay_seconds: float = Field(1.0, ge=0, le=3600)
    max_delay_seconds: float = Field(300.0, ge=0, le=86400)


class VaultConfig(_Section):
    argon2: Argon2Config = Argon2Config()
    brute_force: BruteForceConfig = BruteForceConfig()
    #: Longest wait between two attempts to open the KMS layer at start-up.
    kms_retry_max_seconds: float = Field(60.0, ge=0.1, le=3600)


class KeyOperationConfig(_Section):
    """Limits of one kind of key operation (``chamber.keys.<operation>``)."""

    enabled: bool = True
    #: Keys one request may name or produce; larger requests get 400 before any work.
    max_items_per_request: int = Field(100, ge=1, le=100_000)
    #: Requests of this kind running at once; more get 503 + Retry-After.
    max_concurrent_requests: int = Field(16, ge=1, le=10_000)
    #: Keys not reached by then are answered with their own "timed out" error; the rest stand.
    request_timeout_seconds: float = Field(600.0, gt=0, le=86_400)


class GenerateBackupConfig(_Section):
    enabled: bool = False
    #: ``age1…`` X25519 recipients (public keys); checked at start-up, identities refused.
    recipients: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _recipients(self) -> GenerateBackupConfig:
        if self.enabled and not self.recipients:
            raise ValueError("backup.enabled needs at least one age1… recipient in recipients")
        return self


class GenerateConfig(KeyOperationConfig):
    enabled: bool = False
    #: ``per_key``: a fresh BIP-39 mnemonic for every key (index 0); ``per_batch``: one
    #: mnemonic per request, keys at indices 0..n-1 (one backup restores the batch).
    mnemonic: Literal["per_key", "per_batch"] = "per_key"
    backup: GenerateBackupConfig = GenerateBackupConfig()


class ChamberKeysConfig(_Section):
    """``chamber.keys``: the chamber key API (list, generate, import, activate/deactivate,
    delete) and the background refresh of the encrypted key stores."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
    list: KeyOperationConfig = KeyOperationConfig(max_items_per_request=100_000)
    generate: GenerateConfig = GenerateConfig()
    import_: KeyOperationConfig = Field(KeyOperationConfig(), alias="import")
    lifecycle: KeyOperationConfig = KeyOperationConfig(max_items_per_request=500)
    #: Seconds between two reads of the encrypted stores for keys added, deactivated or
    #: deleted elsewhere (another replica, an offline command); 0 turns the refresh off.
    refresh_interval_seconds: float = Field(1.0, ge=0, le=3600)


class ChamberConfig(_Section):
    keys: ChamberKeysConfig = ChamberKeysConfig()


class KeyManagerApiConfig(_Section):
    """``http.key_manager_api``: the Ethereum keymanager API (``/eth/v1/keystores``)."""

    enabled: bool = False
    max_concurrent_reads: int = Field(50, ge=1, le=10_000)
    max_concurrent_writes: int = Field(10, ge=1, le=10_000)
    request_timeout_seconds: float = Field(30.0, gt=0, le=86_400)
    max_items_per_request: int = Field(100, ge=1, le=100_000)
    #: Where imported keys go: an encrypted key source's name (``sqlite``, ``dynamodb``) or
    #: ``memory`` (lost at restart). Default: the first encrypted source, else ``memory``.
    store: str | None = None


class HttpConfig(_Section):
    key_manager_api: KeyManagerApiConfig = KeyManagerApiConfig()


class BlsConfig(_Section):
    #: "auto", a built-in (blspy, milagro, py_ecc) or a plugin's backend name.
    backend: str = "auto"


class Settings(_Section):
    server: ServerConfig = ServerConfig()
    metrics: MetricsConfig = MetricsConfig()
    logging: LoggingConfig = LoggingConfig()
    network: str = "mainnet"
    custom_network: CustomNetworkConfig | None = None
    bls: BlsConfig = BlsConfig()
    key_sources: KeySourcesConfig = KeySourcesConfig()
    anti_slashing: AntiSlashingConfig = AntiSlashingConfig()
    #: The vault's state store; setting it turns the vault (seal / unseal) on.
    signer_state: SignerStateConfig | None = None
    #: KMS provider settings by section: ``kms.local.directory``, ``kms.aws.endpoint_url``, ...
    kms: dict[str, dict[str, Any]] = Field(default_factory=dict)
    vault: VaultConfig = VaultConfig()
    chamber: ChamberConfig = ChamberConfig()
    http: HttpConfig = HttpConfig()
    auth_policies: dict[str, AuthPolicyConfig] = Field(default_factory=dict)
    #: Sign and publicKeys without a token. Never the default; warned about at start-up.
    allow_unauthenticated_signing: bool = False
    #: Keys that should never sign: any signature is counted and logged as a security incident.
    canary_keys: list[str] = Field(default_factory=list)

    @field_validator("canary_keys")
    @classmethod
    def _canary_pubkeys(cls, value: list[str]) -> list[str]:
        return [_normalize_pubkey(item) for item in value]

    @model_validator(mode="after")
    def _network(self) -> Settings:
        if self.network == "custom":
            if self.custom_network is None:
                raise ValueError(
                    "network 'custom' needs a custom_network section with "
                    "genesis_validators_root and genesis_fork_version"
                )
        elif self.network not in ("mainnet", "sepolia", "hoodi"):
            raise ValueError(
                f"network: unknown network {self.network!r}; use mainnet, sepolia, hoodi or custom"
            )
        elif self.custom_network is not None:
            raise ValueError("custom_network is only allowed with network: custom")
        return self


# --------------------------------------------------------------------------- loading


def _deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``CONTAINMENT_A__B=v`` -> ``{"a": {"b": v}}``."""
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or len(name) == len(ENV_PREFIX):
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split("__")]
        if any(not part for part in path):
            raise ConfigError(f"{name}: empty path segment (use __ between nesting levels)")
        value: Any = raw
        if raw.lstrip().startswith(("[", "{")):
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError as exc:
                raise ConfigError(
                    f"{name}: not valid YAML/JSON ({exc.__class__.__name__})"
                ) from None
        node = tree
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: conflicts with another CONTAINMENT_ variable")
            node = child
        node[path[-1]] = value
    return tree


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    parts = dotted.split(".")
    node = tree
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value


def read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}: invalid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of settings")
    return data


def _loc(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(part) for part in loc) or "(top level)"


def format_validation_error(error: ValidationError) -> str:
    lines = []
    for item in error.errors(include_url=False, include_input=False):
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif message.startswith("Value error, "):
            message = message[len("Value error, ") :]
        lines.append(f"{_loc(item['loc'])}: {message}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def load_settings(
    path: Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the effective settings from the file, the environment and CLI ``overrides``.

    ``overrides`` maps dotted key paths (``server.listen_port``) to values; ``None`` values are
    ignored so CLI flags that were not given don't override anything.
    """
    data: dict[str, Any] = read_yaml(path) if path is not None else {}
    data = _deep_merge(data, env_overrides(os.environ if environ is None else environ))
    cli_tree: dict[str, Any] = {}
    for dotted, value in (overrides or {}).items():
        if value is not None:
            _set_path(cli_tree, dotted, value)
    data = _deep_merge(data, cli_tree)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from None


def redacted(settings: Settings) -> dict[str, Any]:
    """Plain data for display: secrets replaced by ``**********``, paths and bytes as text."""
    return settings.model_dump(mode="json")
