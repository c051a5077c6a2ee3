"""The Ethereum networks the signer can be configured for.

A signer is pinned to one network: every request's ``fork_info.genesis_validators_root`` must be
that network's, so a key can never be tricked into signing for another chain. The fork schedule
(fork name -> fork version) is only needed for EIP-7044, which makes voluntary exits from Deneb on
signed with the Capella fork version; fork *epochs* are not needed because every request carries
the current fork in ``fork_info``.

Built-in constants were checked against the published network configurations:

* mainnet: ethereum/consensus-specs ``configs/mainnet.yaml`` (fork versions) and the well-known
  genesis validators root used by every client;
* sepolia: eth-clients/sepolia ``metadata/config.yaml`` and client network tables for the root;
* hoodi: eth-clients/hoodi ``metadata/config.yaml`` and ``README.md`` ("Genesis validator root").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from chamber.errors import ConfigError

#: Consensus forks in activation order. Names match the Web3Signer ``version`` values.
FORK_NAMES: tuple[str, ...] = (
    "PHASE0",
    "ALTAIR",
    "BELLATRIX",
    "CAPELLA",
    "DENEB",
    "ELECTRA",
    "FULU",
)

_DENEB_INDEX = FORK_NAMES.index("DENEB")


@dataclass(frozen=True)
class Network:
    """One consensus network: identity (genesis validators root) and fork versions.

    ``forks`` is the ordered schedule as ``(fork name, version)`` pairs, oldest first; it may be
    empty for a custom network, in which case EIP-7044 cannot be applied (see
    :meth:`voluntary_exit_version`).
    """

    name: str
    genesis_validators_root: bytes
    genesis_fork_version: bytes
    forks: tuple[tuple[str, bytes], ...] = ()
    slots_per_epoch: int = 32
    _capella_version: bytes | None = field(default=None, init=False, repr=False, compare=False)
    _deneb_and_later: frozenset[bytes] = field(
        default=frozenset(), init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        versions = dict(self.forks)
        later = frozenset(v for n, v in self.forks if FORK_NAMES.index(n) >= _DENEB_INDEX)
        # Frozen dataclass: derived lookups are set once here so the hot path is a set lookup.
        object.__setattr__(self, "_capella_version", versions.get("CAPELLA"))
        object.__setattr__(self, "_deneb_and_later", later)

    @property
    def fork_versions(self) -> dict[str, bytes]:
        """The fork schedule as an ordered ``{fork name: version}`` mapping (a fresh copy)."""
        return dict(self.forks)

    def voluntary_exit_version(self, selected_version: bytes) -> bytes:
        """Fork version to sign a voluntary exit with, given the one chosen for its epoch.

        EIP-7044 (Deneb) fixes exits to the Capella fork version so they stay valid forever. We
        apply it when the version selected from ``fork_info`` for the exit epoch is this network's
        Deneb version or any later one. A network without a schedule (a custom network configured
        with only its genesis fork version) has no way to recognise Deneb, so the selected version
        is used unchanged: such devnets must configure their fork versions to get EIP-7044.
        """
        if self._capella_version is not None and selected_version in self._deneb_and_later:
            return self._capella_version
        return selected_version


def _bytes_param(value: bytes | str, size: int, what: str) -> bytes:
    if isinstance(value, str):
        text = value[2:] if value[:2] in ("0x", "0X") else value
        try:
            value = bytes.fromhex(text)
        except ValueError:
            raise ConfigError(f"network.{what}: not a hex string") from None
    if len(value) != size:
        raise ConfigError(f"network.{what}: must be {size} bytes, got {len(value)}")
    return bytes(value)


def custom_network(
    genesis_validators_root: bytes | str,
    genesis_fork_version: bytes | str,
    fork_versions: Mapping[str, bytes | str] | None = None,
    slots_per_epoch: int = 32,
    name: str = "custom",
) -> Network:
    """Build a network from its parameters (devnets, shadow forks, private testnets).

    ``fork_versions`` maps fork names (any case, see :data:`FORK_NAMES`) to versions; it is
    re-ordered into activation order, and PHASE0 defaults to ``genesis_fork_version``. If any
    fork from DENEB on is given, CAPELLA must be too, because EIP-7044 needs it.
    Raises :class:`ConfigError` naming the offending ``network.*`` parameter.
    """
    root = _bytes_param(genesis_validators_root, 32, "genesis_validators_root")
    genesis = _bytes_param(genesis_fork_version, 4, "genesis_fork_version")
    if isinstance(slots_per_epoch, bool) or not isinstance(slots_per_epoch, int):
        raise ConfigError("network.slots_per_epoch: must be an integer")
    if slots_per_epoch < 1:
        raise ConfigError("network.slots_per_epoch: must be at least 1")
    given: dict[str, bytes] = {}
    for fork_name, version in (fork_versions or {}).items():
        upper = fork_name.upper()
        if upper not in FORK_NAMES:
            raise ConfigError(
                f"network.fork_versions.{fork_name}: unknown fork; expected one of "
                + ", ".join(FORK_NAMES)
            )
        given[upper] = _bytes_param(version, 4, f"fork_versions.{fork_name}")
    if given:
        given.setdefault("PHASE0", genesis)
        if given["PHASE0"] != genesis:
            raise ConfigError("network.fork_versions.PHASE0: must equal genesis_fork_version")
        if "CAPELLA" not in given and any(FORK_NAMES.index(n) >= _DENEB_INDEX for n in given):
            raise ConfigError(
                "network.fork_versions.CAPELLA: required when DENEB or a later fork is given "
                "(voluntary exits are signed with the Capella version, EIP-7044)"
            )
    forks = tuple((n, given[n]) for n in FORK_NAMES if n in given)
    return Network(name, root, genesis, forks, slots_per_epoch)


def _builtin(name: str, root: str, versions: tuple[str, ...]) -> Network:
    forks = tuple((n, bytes.fromhex(v)) for n, v in zip(FORK_NAMES, versions, strict=True))
    return Network(name, bytes.fromhex(root), forks[0][1], forks)


MAINNET = _builtin(
    "mainnet",
    "4b363db94e286120d76eb905340fdd4e54bfe9f06bf33ff6cf5ad27f511bfe95",
    ("00000000", "01000000", "02000000", "03000000", "04000000", "05000000", "06000000"),
)
SEPOLIA = _builtin(
    "sepolia",
    "d8ea171f3c94aea21ebc42a1ed61052acf3f9209c00e4efbaaddac09ed9b8078",
    ("90000069", "90000070", "90000071", "90000072", "90000073", "90000074", "90000075"),
)
HOODI = _builtin(
    "hoodi",
    "212f13fc4df078b6cb7db228f1c8307566dcecf900867401a92023d7ba99cb5f",
    ("10000910", "20000910", "30000910", "40000910", "50000910", "60000910", "70000910"),
)

NETWORKS: dict[str, Network] = {n.name: n for n in (MAINNET, SEPOLIA, HOODI)}


def get_network(name: str) -> Network:
    """Look up a built-in network by name (case-insensitive); ConfigError lists the known ones."""
    try:
        return NETWORKS[name.lower()]
    except KeyError:
        raise ConfigError(
            f"network: unknown network {name!r}; expected one of {', '.join(NETWORKS)} "
            "or a custom network"
        ) from None
