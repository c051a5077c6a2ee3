"""``containment-chamber operator``: the seal / unseal ceremonies, as an HTTP client of a signer.

Every command talks to a running signer (``--signer-url``, default ``http://localhost:9000``)
under ``/api/v1/chamber/`` and prints the signer's JSON answer on standard output. Problems go to
standard error as one ``containment-chamber: ...`` line, with exit code 2 for a usage error (a
bad flag, a secret given on the command line, nothing on standard input) and 1 when the signer
refused or could not be reached.

Secrets never travel on the command line: ``--auth-token``, ``--setup-token`` and
``--registration-token`` take ``env:VAR`` (or ``-``: one line from standard input), and
passphrases are read with ``--passphrase-stdin`` (``credentials add``: two lines, the existing
passphrase then the new one) or prompted for without echo. Nothing secret is
ever printed, except what a ceremony hands to its coordinator by design: the registration tokens
in the answers of ``operator init``, ``operator rotate unseal`` and ``operator rotate mode --mode
unseal``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Annotated, Any, Literal

import cyclopts
import orjson
from cyclopts import Parameter

from chamber.cli import credential_types
from chamber.cli.remote import (
    CliError,
    SignerClient,
    check_signer_url,
    fail,
    resolve_secret_flag,
)
from chamber.errors import ChamberError

operator_app = cyclopts.App(
    name="operator",
    help="Seal / unseal ceremonies of a running signer (status, init, register, unseal, seal, "
    "credentials, rotate).",
)
credentials_app = cyclopts.App(
    name="credentials",
    help="An operator's unseal credentials (add, remove, list). Adding and removing are proven "
    "by one of the operator's existing credentials; there is no admin override.",
)
operator_app.command(credentials_app)
rotate_app = cyclopts.App(
    name="rotate",
    help="Rotations while signing continues (kms, unseal, unseal-cancel, mode); each needs the "
    "chamber_rotate scope and an unsealed chamber.",
)
operator_app.command(rotate_app)

BASE = "/api/v1/chamber"
#: Loading every plugin costs time, so the installed types are listed only for --help.
_INSTALLED_TYPES = (
    credential_types.describe_installed()
    if any(arg in ("--help", "-h") for arg in sys.argv)
    else "run with --help to list the installed types"
)
DEFAULT_SIGNER_URL = "http://localhost:9000"
DEFAULT_CREDENTIAL_ID = "password-1"

SignerUrl = Annotated[
    str, Parameter(name="--signer-url", help="Base URL of the signer's HTTP API.")
]
AllowPlaintext = Annotated[
    bool,
    Parameter(
        name="--allow-plaintext-signer",
        negative=(),
        help="Allow plain http:// to a signer that is not on this machine (trusted networks).",
    ),
]
AuthToken = Annotated[
    str,
    Parameter(
        name="--auth-token",
        allow_leading_hyphen=True,  # "-" (standard input) is a value, not a flag
        help="Token of an auth policy with the needed chamber scope: env:VAR, or - for stdin.",
    ),
]
SetupToken = Annotated[
    str,
    Parameter(
        name="--setup-token",
        allow_leading_hyphen=True,  # "-" (standard input) is a value, not a flag
        help="The one-time setup token the signer logged at start-up: env:VAR, or - for stdin.",
    ),
]
RegistrationToken = Annotated[
    str,
    Parameter(
        name="--registration-token",
        allow_leading_hyphen=True,  # "-" (standard input) is a value, not a flag
        help="This operator's cc-reg-... token from operator init: env:VAR, or - for stdin.",
    ),
]
OperatorName = Annotated[str, Parameter(name="--operator", help="The operator's name.")]
KmsKeyArns = Annotated[
    str,
    Parameter(
        name="--kms-key-arns",
        help="Comma-separated KMS key ids (AWS key ARNs, local:NAME, or a plugin's ids).",
    ),
]
KmsThreshold = Annotated[
    int,
    Parameter(
        name="--kms-threshold",
        help="How many of the KMS keys must answer to rebuild the key.",
    ),
]
ExistingCredentialType = Annotated[
    str | None,
    Parameter(
        name="--existing-credential-type",
        help="Type of the existing credential that proves it is this operator (default "
        "passphrase; e.g. yubikey).",
    ),
]
ExistingCredentialId = Annotated[
    str,
    Parameter(
        name="--existing-credential-id",
        help="The credential (e.g. password-1) whose passphrase proves it is this operator.",
    ),
]
Yubikey = Annotated[
    bool,
    Parameter(
        name="--yubikey",
        negative=(),
        help="Use a hardware security key (FIDO2 hmac-secret; plugin chamber-yubikey).",
    ),
]
SecretsManagerId = Annotated[
    str | None,
    Parameter(
        name="--secrets-manager-id",
        help="Use a secret kept in AWS Secrets Manager (its ARN; plugin chamber-secretsmanager).",
    ),
]
SecretsManagerStage = Annotated[
    str | None,
    Parameter(
        name="--secrets-manager-version-stage",
        help="Version stage of the Secrets Manager secret (default AWSCURRENT).",
    ),
]
CredentialTypeName = Annotated[
    str | None,
    Parameter(
        name="--credential-type",
        help="Credential type by name; " + _INSTALLED_TYPES + ".",
    ),
]
CredentialTimeout = Annotated[
    float,
    Parameter(
        name="--credential-timeout",
        help="Seconds to wait for a credential plugin (a device touch, a secrets manager).",
    ),
]
PassphraseStdin = Annotated[
    bool,
    Parameter(
        name="--passphrase-stdin",
        negative=(),
        help="Read the passphrase from one line of standard input instead of prompting.",
    ),
]


def _print(data: Any) -> None:
    print(orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS).decode())


def _split(value: str, flag: str) -> list[str]:
    items = [part.strip() for part in value.split(",") if part.strip()]
    if not items:
        raise CliError(f"{flag}: give at least one comma-separated value", 2)
    return items


def _client(signer_url: str, allow_plaintext: bool, auth_token: str | None = None) -> SignerClient:
    """A client for the signer; the URL is checked before any secret is read."""
    url = check_signer_url(signer_url, allow_plaintext)
    token = resolve_secret_flag(auth_token, "--auth-token") if auth_token is not None else None
    return SignerClient(url, token)


def _check_stdin(passphrase_stdin: bool, token: str, flag: str) -> None:
    """Standard input holds one secret at most: refuse a token flag of ``-`` together with
    ``--passphrase-stdin``, which would both read it."""
    if passphrase_stdin and token == "-":  # noqa: S105 (the stdin marker, not a secret)
        raise CliError(
            f"{flag} - and --passphrase-stdin would both read standard input; pass the token "
            "as env:VAR instead",
            2,
        )


def _passphrase(stdin: bool, *, confirm: bool, prompt: str) -> str:
    """The passphrase, through the passphrase credential type's own ``obtain``."""
    from chamber.vault.credentials import PassphraseCredential

    try:
        material = PassphraseCredential().obtain(
            {"stdin": stdin, "confirm": confirm, "prompt": prompt}
        )
    except EOFError:
        raise CliError("no passphrase was entered", 2) from None
    except UnicodeError:
        raise CliError("the passphrase is not valid UTF-8 text", 2) from None
    except ChamberError as error:  # e.g. the two entries differ
        raise CliError(error.message, 2) from None
    if not material:
        where = "standard input" if stdin else "the prompt"
        raise CliError(f"no passphrase was read from {where}", 2)
    return material.decode("utf-8")


def _with(choice: credential_types.Choice, **options: Any) -> credential_types.Choice:
    return credential_types.Choice(choice.name, {**choice.options, **options})


def _remind_tokens(answer: Any) -> Any:
    """An answer with registration tokens: remind the coordinator (on standard error) how to
    hand them out; the tokens themselves go to standard output only."""
    if isinstance(answer, dict) and answer.get("operator_tokens"):
        print(
            "containment-chamber: give each operator their own registration token over a "
            "secure channel; each works once",
            file=sys.stderr,
        )
    return answer


def _run(action: Callable[[], Any]) -> None:
    """Run one command: print its answer, or report the failure without a traceback."""
    try:
        answer = action()
    except CliError as error:
        fail(error)
    except KeyboardInterrupt:
        print("\ncontainment-chamber: interrupted", file=sys.stderr)
        sys.exit(130)
    _print(answer)


@operator_app.command
def status(
    *,
    auth_token: AuthToken,
    signer_url: SignerUrl = DEFAULT_SIGNER_URL,
    allow_plaintext_signer: AllowPlaintext = False,
) -> None:
    """Show the seal state (needs the chamber_status scope)."""

    def action() -> Any:
        return _client(signer_url, allow_plaintext_signer, auth_token).request(
            "GET", f"{BASE}/status"
        )

    _run(action)


@operator_app.command
def init(
    *,
    setup_token: SetupToken,
    kms_key_arns: KmsKeyArns,
    kms_threshold: KmsThreshold,
    unseal_threshold: Annotated[
        int | None,
        Parameter(
            name="--unseal-threshold",
            help="Unseal mode: how many operators must submit a passphrase to unseal.",
        ),
    ] = None,
    operators: Annotated[
        str | None,
        Parameter(
            name="--operators",
            help="Unseal mode: comma-separated operator names (without it: KMS-only mode).",
        ),
    ] = None,
    signer_url: SignerUrl = DEFAULT_SIGNER_URL,
    allow_plaintext_signer: AllowPlaintext = False,
) -> None:
    """Create the master key (first boot). Without --operators the signer unseals from KMS alone;
    with them it answers one registration token per operator, to hand out over secure channels."""

    def action() -> Any:
        body: dict[str, Any] = {
            "kms_key_ids": _split(kms_key_arns, "--kms-key-arns"),
            "kms_threshold": kms_threshold,
        }
        if operators is not None:
            body["operators"] = _split(operators, "--operators")
        if unseal_threshold is not None:
            body["unseal_threshold"] = unseal_threshold
        client = _client(signer_url, allow_plaintext_signer)
        body["setup_token"] = resolve_secret_flag(setup_token, "--setup-token")
        return _remind_tokens(client.request("POST", f"{BASE}/init", body))

    _run(action)


@operator_app.command(name="init-reset")
def init_reset(
    *,
    setup_token: SetupToken,
    signer_url: SignerUrl = DEFAULT_SIGNER_URL,
    allow_plaintext_signer: AllowPlaintext = False,
) -> None:
    """Cancel an initialization still awaiting registration; the signer logs a new setup token."""

    def action() -> Any:
        client = _client(signer_url, allow_plaintext_signer)
        token = resolve_secret_flag(setup_token, "--setup-token")
        return client.request("POST", f"{BASE}/init-reset", {"setup_token": token})

    _run(action)


@operator_app.command
def register(
    *,
    operator: OperatorName,
    registration_token: RegistrationToken,
    credential_id: Annotated[
        str, Parameter(name="--credential-id", help="Name of this credential.")
    ] = DEFAULT_CREDENTIAL_ID,
    passphrase_stdin: PassphraseStdin = False,
    yubikey: Yubikey = False,
    secrets_manager_id: SecretsManagerId = None,
    secrets_manager_version_stage: SecretsManagerStage = None,
    credential_type: CredentialTypeName = None,
    credential_timeout: CredentialTimeout = credential_types.DEFAULT_TIMEOUT_SECONDS,
    signer_url: SignerUrl = DEFAULT_SIGNER_URL,
    allow_plaintext_signer: AllowPlaintext = False,
) -> None:
    """Register this operator's first credential: a passphrase (at least 16 characters;
    prompted twice) unless --yubikey, --secrets-manager-id or --credential-type chooses
    another type."""

    def action() -> Any:
        _check_stdin(passphrase_stdin, registration_token, "--registration-token")
        choice = credential_types.choose(
            yubikey=yubikey,
            secrets_manager_id=secrets_manager_id,
            secrets_manager_version_stage=secrets_manager_version_stage,
            credential_type=credential_type,
            stdin=passphrase_stdin,
        )
        client = _client(signer_url, allow_plaintext_signer)
        token = resolve_secret_flag(registration_token, "--registration-token")
        body: dict[str, Any] = {
            "operator": operator,
            "registration_token": token,
            "credential_id": credential_id,
        }
        if choice.name == credential_types.PASSPHRASE:
            body["passphrase"] = _passphrase(
                passphrase_stdin, confirm=True, prompt=f"New passphrase for {operator}: "
            )
        else:
            enrolled = credential_types.enroll(
                _with(choice, operator=operator, credential_id=credential_id),
                credential_timeout,
            )
            body.update(credential_types.material_fields(choice.name, enrolled.material))
            body["credential_type"] = choice.name
            body["credential_public"] = dict(enrolled.public)
        return client.request("POST", f"{BASE}/register", body)

    _run(action)


@operator_app.command
def unseal(
    *,
    operator: OperatorName,
    passphrase_stdin: PassphraseStdin = False,
    yubikey: Yubikey = False,
    secrets_manager_id: SecretsManagerId = None,
    secrets_manager_version_stage: SecretsManagerStage = None,
    credential_type: CredentialTypeName = None,
    credential_timeout: CredentialTimeout = credential_types.DEFAULT_TIMEOUT_SECONDS,
    signer_url: SignerUrl = DEFAULT_SIGNER_URL,
    allow_plaintext_signer: AllowPlaintext = False,
) -> None:
    """Submit one of this operator's credentials (no credential id needed: the signer tries
    them all); the signer unseals once enough operators have."""

    def action() -> Any:
        choice = credential_types.choose(
            yubikey=yubikey,
            secrets_manager_id=secrets_manager_id,
            secrets_manager_version_stage=secrets_manager_version_stage,
            credential_type=credential_type,
            stdin=passphrase_stdin,
        )
        client = _client(signer_url, allow_plaintext_signer)
        body: dict[str, Any] = {"operator": operator}
        if choice.name == credential_types.PASSPHRASE:
            body["passphrase"] = _passphrase(
                passphrase_stdin, confirm=False, prompt=f"Passphrase for {operator}: "
            )
        else:
            listing = client.request(
                "GET", f"{BASE}/unseal/credentials", params=[("operator", operator)]
            )
            candidates = credential_types.candidates_of(listing, choice.name, operator)
            material = credential_types.obtain(
                _with(choice, operator=operator), candidates, credential_timeout
            )
            body.update(credential_types.material_fields(choice.name, material))
        return client.request("POST", f"{BASE}/unseal", body)

    _run(action)


@operator_app.command(name="unseal-reset")
def unseal_reset(
    *,
    auth_token: AuthToken,
    signer_url: SignerUrl = DEFAULT_SIGNER_URL,
    allow_plaintext_signer: AllowPlaintext = False,
) -> None:
    """Drop the passphrases submitted so far (needs the chamber_seal scope)."""

    def action() -> Any:
        client = _client(signer_url, allow_plaintext_signer, auth_token)
        return client.request("POST", f"{BASE}/unseal-reset", {})

    _run(action)


@operator_app.command
def seal(
    *,
    auth_token: AuthToken,
    signer_url: SignerUrl = DEFAULT_SIGNER_URL,
    allow_plaintext_signer: AllowPlaintext = False,
) -> None:
    """Seal now: the master key is wiped from memory and new signing requests get 503
    (needs the chamber_seal scope). To resume, restart the signer (and unseal)."""

    def action() -> Any:
        client = _client(signer_url, allow_plaintext_signer, auth_token)
        return client.request("POST", f"{BASE}/seal", {})

    _run(action)


# ---------------------------------------------------------------------- credentials


def _credentials_passphrase(stdin: bool, *, new: bool, operator: str) -> str:
    """One passphrase of ``credentials add`` / ``remove``: a line of standard input, or a
    prompt without echo (the new passphrase is asked twice)."""
    prompt = "New passphrase: " if new else "Existing passphrase: "
    try:
        return _passphrase(stdin, confirm=new, prompt=prompt)
    except CliError as error:
        if stdin and new and error.message.startswith("no passphrase was"):
            raise CliError(
                "--passphrase-stdin: credentials add reads two lines from standard input, the "
                f"existing passphrase of {operator} and then the new one; the new one is missing",
                2,
            ) from None
        raise


@credentials_app.command(name="add")
def credentials_add(
    *,
    operator: OperatorName,
    existing_credential_id: ExistingCredentialId,
    existing_credential_type: ExistingCredentialType = None,
    new_credential_id: Annotated[
        str,
        Parameter(
            name="--new-credential-id",
            help="Name of the new credential (letters, digits, '.', '_', '-'; up to 64).",
        ),
    ],
    passphrase_stdin: Annotated[
        bool,
        Parameter(
            name="--passphrase-stdin",
            negative=(),
            help="Read two lines from standard input, the existing passphrase then the new one, "
            "instead of prompting.",
        ),
    ] = False,
    yubikey: Yubikey = False,
    secrets_manager_id: SecretsManagerId = None,
    secrets_manager_version_stage: SecretsManagerStage = None,
    credential_type: CredentialTypeName = None,
    credential_timeout: CredentialTimeout = credential_types.DEFAULT_TIMEOUT_SECONDS,
    signer_url: SignerUrl = DEFAULT_SIGNER_URL,
    allow_plaintext_signer: AllowPlaintext = False,
) -> None:
    """Add a credential, proven by an existing one. The new one is a passphrase (at least 16
    characters; prompted twice) unless --yubikey, --secrets-manager-id or --credential-type
    chooses another type."""

    def action() -> Any:
        choice = credential_types.choose(
            yubikey=yubikey,
            secrets_manager_id=secrets_manager_id,
            secrets_manager_version_stage=secrets_manager_version_stage,
            credential_type=credential_type,
            stdin=passphrase_stdin,
        )
        client = _client(signer_url, allow_plaintext_signer)
        body: dict[str, Any] = {
            "operator": operator,
            "existing_credential_id": existing_credential_id,
            "new_credential_id": new_credential_id,
        }
        body.update(
            _existing_proof(
                client,
                operator,
                existing_credential_id,
                passphrase_stdin,
                credential_timeout,
                existing_credential_type,
            )
        )
        if choice.name == credential_types.PASSPHRASE:
            body["new_passphrase"] = _credentials_passphrase(
                passphrase_stdin, new=True, operator=operator
            )
        else:
            enrolled = credential_types.enroll(
                _with(choice, operator=operator, credential_id=new_credential_id),
                credential_timeout,
            )
            body.update(
                credential_types.material_fields(choice.name, enrolled.material, prefix="new_")
            )
            body["credential_type"] = choice.name
            body["credential_public"] = dict(enrolled.public)
        return client.request("POST", f"{BASE}/unseal/credentials", body)

    _run(action)


def _existing_proof(
    client: SignerClient,
    operator: str,
    credential_id: str,
    passphrase_stdin: bool,
    timeout: float,
    existing_type: str | None,
) -> dict[str, str]:
    """The ``existing_*`` fields: the existing credential's material. A passphrase unless
    ``--existing-credential-type`` names another type, whose plugin then produces it."""
    if existing_type in (None, credential_types.PASSPHRASE):
        # As the runbook has it: read (or prompted for) before any request, so a missing line
        # is a usage error that costs no round trip.
        existing = _credentials_passphrase(passphrase_stdin, new=False, operator=operator)
        return {"existing_passphrase": existing}
    assert existing_type is not None
    listing = client.request("GET", f"{BASE}/unseal/credentials", params=[("operator", operator)])
    type_name, public = credential_types.credential_type_of(listing, credential_id)
    if type_name != existing_type:
        raise CliError(
            f"--existing-credential-type: {credential_id!r} of operator {operator!r} is a "
            f"{type_name} credential, not {existing_type}",
            2,
        )
    choice = credential_types.Choice(
        type_name, {"stdin": passphrase_stdin, "operator": operator, "credential_id": credential_id}
    )
    material = credential_types.obtain(choice, [public], timeout)
    return credential_types.material_fields(type_name, material, prefix="existing_")


@credentials_app.command(name="remove")
def credentials_remove(
    *,
    operator: OperatorName,
    existing_credential_id: ExistingCredentialId,
    existing_credential_type: ExistingCredentialType = None,
    remove_credential_id: Annotated[
        str,
        Parameter(
            name="--remove-credential-id",
            help="The credential to remove (never the operator's last one).",
        ),
    ],
    passphrase_stdin: Annotated[
        bool,
        Parameter(
            name="--passphrase-stdin",
            negative=(),
            help="Read the existing passphrase from one line of standard input instead of "
            "prompting.",
        ),
    ] = False,
    credential_timeout: CredentialTimeout = credential_types.DEFAULT_TIMEOUT_SECONDS,
    signer_url: SignerUrl = DEFAULT_SIGNER_URL,
    allow_plaintext_signer: AllowPlaintext = False,
) -> None:
    """Remove a credential, proven by an existing one (possibly the one removed). The last
    credential cannot be removed."""

    def action() -> Any:
        client = _client(signer_url, allow_plaintext_signer)
        body: dict[str, Any] = {
            "operator": operator,
            "existing_credential_id": existing_credential_id,
            "remove_credential_id": remove_credential_id,
        }
        body.update(
            _existing_proof(
                client,
                operator,
                existing_credential_id,
                passphrase_stdin,
                credential_timeout,
                existing_credential_type,
            )
        )
        return client.request("DELETE", f"{BASE}/unseal/credentials", body)

    _run(action)


@credentials_app.command(name="list")
def credentials_list(
    *,
    operator: OperatorName,
    signer_url: SignerUrl = DEFAULT_SIGNER_URL,
    allow_plaintext_signer: AllowPlaintext = False,
) -> None:
    """List the operator's credential ids (public: no token, no passphrase)."""

    def action() -> Any:
        client = _client(signer_url, allow_plaintext_signer)
        return client.request("GET", f"{BASE}/unseal/credentials", params=[("operator", operator)])

    _run(action)


# ---------------------------------------------------------------------- rotations

UnsealThreshold = Annotated[
    int,
    Parameter(
        name="--unseal-threshold",
        help="How many of the new operators must submit a passphrase to unseal.",
    ),
]
Operators = Annotated[
    str,
    Parameter(
        name="--operators",
        help="Comma-separated names of the new operator set (each registers with the token "
        "this command answers).",
    ),
]


@rotate_app.command(name="kms")
def rotate_kms(
    *,
    auth_token: AuthToken,
    kms_key_arns: KmsKeyArns,
    kms_threshold: KmsThreshold,
    signer_url: SignerUrl = DEFAULT_SIGNER_URL,
    allow_plaintext_signer: AllowPlaintext = False,
) -> None:
    """Move the KMS layer to a new key set and threshold; the master key stays the same and
    signing continues. Every new key must encrypt and decrypt back first, otherwise nothing
    changes (needs the chamber_rotate scope)."""

    def action() -> Any:
        body = {
            "kms_key_ids": _split(kms_key_arns, "--kms-key-arns"),
            "kms_threshold": kms_threshold,
        }
        client = _client(signer_url, allow_plaintext_signer, auth_token)
        return client.request("POST", f"{BASE}/rotate/kms", body)

    _run(action)


@rotate_app.command(name="unseal")
def rotate_unseal(
    *,
    auth_token: AuthToken,
    unseal_threshold: UnsealThreshold,
    operators: Operators,
    signer_url: SignerUrl = DEFAULT_SIGNER_URL,
    allow_plaintext_signer: AllowPlaintext = False,
) -> None:
    """Start replacing the operator set: answers one registration token per new operator; the
    signer stays in awaiting_rotation (still signing) until every new operator has registered
    with operator register (needs the chamber_rotate scope)."""

    def action() -> Any:
        body = {
            "operators": _split(operators, "--operators"),
            "unseal_threshold": unseal_threshold,
        }
        client = _client(signer_url, allow_plaintext_signer, auth_token)
        return _remind_tokens(client.request("POST", f"{BASE}/rotate/unseal", body))

    _run(action)


@rotate_app.command(name="unseal-cancel")
def rotate_unseal_cancel(
    *,
    auth_token: AuthToken,
    signer_url: SignerUrl = DEFAULT_SIGNER_URL,
    allow_plaintext_signer: AllowPlaintext = False,
) -> None:
    """Cancel an operator rotation (or a switch to unseal mode) in progress: the previous
    operator set stays, every new registration token dies (needs the chamber_rotate scope)."""

    def action() -> Any:
        client = _client(signer_url, allow_plaintext_signer, auth_token)
        return client.request("POST", f"{BASE}/rotate/unseal-cancel", {})

    _run(action)


@rotate_app.command(name="mode")
def rotate_mode(
    *,
    auth_token: AuthToken,
    mode: Annotated[
        Literal["kms_only", "unseal"],
        Parameter(name="--mode", help="The mode to switch to."),
    ],
    unseal_threshold: Annotated[
        int | None,
        Parameter(
            name="--unseal-threshold",
            help="--mode unseal: how many of the operators must submit a passphrase to unseal.",
        ),
    ] = None,
    operators: Annotated[
        str | None,
        Parameter(
            name="--operators",
            help="--mode unseal: comma-separated operator names (each registers with the token "
            "this command answers).",
        ),
    ] = None,
    signer_url: SignerUrl = DEFAULT_SIGNER_URL,
    allow_plaintext_signer: AllowPlaintext = False,
) -> None:
    """Switch between kms_only and unseal mode while signing continues. To unseal mode: answers
    one registration token per operator and completes when all have registered; to kms_only:
    immediate (needs the chamber_rotate scope)."""

    def action() -> Any:
        body: dict[str, Any] = {"mode": mode}
        if operators is not None:
            body["operators"] = _split(operators, "--operators")
        if unseal_threshold is not None:
            body["unseal_threshold"] = unseal_threshold
        client = _client(signer_url, allow_plaintext_signer, auth_token)
        return _remind_tokens(client.request("POST", f"{BASE}/rotate/mode", body))

    _run(action)
