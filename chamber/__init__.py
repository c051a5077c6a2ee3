"""Containment Chamber: a remote signer for Ethereum proof-of-stake validators."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("containment-chamber")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
