"""pluggy entry point of the chamber-aws-kms distribution (group ``containment_chamber``).

The provider is imported lazily, so that installing the plugin costs nothing (no boto3 import)
unless a configured KMS key id is an AWS KMS ARN.
"""

from __future__ import annotations

from collections.abc import Mapping

from chamber.hookspecs import hookimpl
from chamber.vault.interfaces import KmsProvider


@hookimpl
def chamber_kms_providers() -> Mapping[str, type[KmsProvider]]:
    from chamber_aws_kms.kms import AwsKms

    return {"aws-kms": AwsKms}
