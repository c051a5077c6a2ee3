"""PostgreSQL slashing protection for Containment Chamber (``anti_slashing.backend: postgres``)."""

__version__ = "0.1.0"
