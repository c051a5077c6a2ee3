"""End to end: two real signer processes (``containment-chamber server``) share one PostgreSQL
schema, load the same key, and are asked at once for conflicting signatures over HTTP."""

from __future__ import annotations

import threading
from pathlib import Path

import yaml

from tests.bodies import attestation, block_v2
from tests.harness import Client as HttpClient
from tests.harness import SubprocessSigner, base_config, make_keys, write_raw_keys


def test_two_signer_processes_sign_exactly_one_of_conflicting_requests(
    tmp_path: Path, pg_url: str, schema: str
) -> None:
    (key,) = make_keys(1, seed="chamber-postgres")
    write_raw_keys(tmp_path / "keys", [key])
    config = base_config(
        tmp_path / "keys",
        anti_slashing={"backend": "postgres", "url": "env:CC_TEST_SLASHING_URL", "schema": schema,
                       "pool_size": 4},
    )  # fmt: skip
    config_path = tmp_path / "config.yaml"
    config_path.write_text(yaml.safe_dump(config))
    env = {"CC_TEST_SLASHING_URL": pg_url}
    signers = [SubprocessSigner(config_path, env=env, cwd=tmp_path) for _ in range(2)]
    try:
        clients = [HttpClient(s.wait_ready()) for s in signers]
        for client in clients:
            health = client.request("GET", "/healthcheck", token=False)
            assert health.status == 200, health.body

        statuses: list[int] = [0] * 16
        barrier = threading.Barrier(16)

        def propose(i: int) -> None:
            body = block_v2(body_root="0x" + bytes([i]).hex() * 32)
            barrier.wait()
            statuses[i] = clients[i % 2].sign(key.pubkey_hex, body).status

        threads = [threading.Thread(target=propose, args=(i,)) for i in range(16)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(statuses) == [200] + [412] * 15, statuses

        # The same attestation through both processes: both sign (identical re-sign) ...
        vote = attestation()
        assert [c.sign(key.pubkey_hex, vote).status for c in clients] == [200, 200]
        # ... and a surrounding one is refused by either.
        surround = attestation(source=vote_source(vote) - 1, target=vote_target(vote) + 1)
        assert [c.sign(key.pubkey_hex, surround).status for c in clients] == [412, 412]
    finally:
        for signer in signers:
            signer.stop()
    for signer in signers:
        assert "Unavailable" not in signer.output(), signer.output()


def vote_source(body: dict[str, object]) -> int:
    return int(body["attestation"]["source"]["epoch"])  # type: ignore[index]


def vote_target(body: dict[str, object]) -> int:
    return int(body["attestation"]["target"]["epoch"])  # type: ignore[index]
