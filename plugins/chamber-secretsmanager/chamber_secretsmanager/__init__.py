"""AWS Secrets Manager credential type for Containment Chamber: an operator's unseal secret
read from Secrets Manager, for automated unseal (CI jobs, break-glass runbooks)."""

__version__ = "0.1.0"
