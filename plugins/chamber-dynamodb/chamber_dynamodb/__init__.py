"""DynamoDB providers for Containment Chamber (slashing protection; more to come)."""

__version__ = "0.1.0"
