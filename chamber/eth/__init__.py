"""Ethereum consensus knowledge: request parsing, network guard and signing roots.

The HTTP layer only needs :func:`prepare_signing` and a configured :class:`Network`.
"""

from chamber.eth.networks import Network, custom_network, get_network
from chamber.eth.requests import REQUEST_TYPES, SigningJob, prepare_signing

__all__ = [
    "REQUEST_TYPES",
    "Network",
    "SigningJob",
    "custom_network",
    "get_network",
    "prepare_signing",
]
