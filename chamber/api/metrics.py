"""Prometheus metrics, on their own registry and port.

Names follow the Rust Containment Chamber where it has one. Label children used on the signing
hot path are bound once up front, so recording an outcome is a dictionary look-up and an
increment.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from chamber.eth.requests import REQUEST_TYPES

OUTCOMES = ("signed", "refused", "denied", "failed")
LATENCY_BUCKETS = (0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.signing_requests = Counter(
            "containment_signing_requests",
            "Signing requests by request type and outcome (signed, refused, denied, failed).",
            ["operation", "outcome"],
            registry=r,
        )
        self.signing_duration = Histogram(
            "containment_signing_duration_seconds",
            "Time from receiving a signing request to its answer, by request type.",
            ["operation"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.slashing_rejections = Counter(
            "containment_slashing_rejections",
            "Signing requests refused by slashing protection, by request type and reason.",
            ["operation", "reason"],
            registry=r,
        )
        self.canary_signing = Counter(
            "containment_canary_signing",
            "Signatures made with a canary key: any increase is a security incident.",
            registry=r,
        )
        self.auth_rejections = Counter(
            "containment_auth_rejections",
            "Requests refused by access control, by status (401, 403).",
            ["status"],
            registry=r,
        )
        self.backpressure_rejections = Counter(
            "containment_backpressure_rejections",
            "Requests answered 503 because the concurrency limit was reached or the signer drains.",
            ["reason"],
            registry=r,
        )
        self.inflight = Gauge(
            "containment_inflight_requests", "Requests being served now.", registry=r
        )
        self.concurrency_limit = Gauge(
            "containment_signing_concurrency_limit",
            "Maximum requests served at once before answering 503.",
            registry=r,
        )
        self.server_queue_depth = Gauge(
            "containment_server_queue_depth",
            "Requests accepted by the HTTP server but waiting for a worker thread.",
            registry=r,
        )
        self.keys_active = Gauge(
            "containment_keys_active", "Validator keys loaded, by source.", ["source"], registry=r
        )
        self.key_load_failures = Counter(
            "containment_key_load_failures",
            "Key files or items that failed to load, by source.",
            ["source"],
            registry=r,
        )
        self.key_loading_duration = Gauge(
            "containment_key_loading_duration_seconds",
            "Duration of the last key load, by source.",
            ["source"],
            registry=r,
        )
        self.bls_backend = Gauge(
            "containment_bls_backend_info",
            "The active BLS backend (value 1).",
            ["backend"],
            registry=r,
        )
        self.healthy = Gauge(
            "containment_healthy", "1 when every readiness check passes.", registry=r
        )
        self.seal_state = Gauge(
            "containment_seal_state",
            "The chamber's seal state (1 for the current state, 0 for the others).",
            ["state"],
            registry=r,
        )
        self.unseal_shares = Gauge(
            "containment_unseal_shares_received",
            "Operator shares received in the current (partial) unseal.",
            registry=r,
        )
        self.ceremony_steps = Counter(
            "containment_ceremony_steps_total",
            "Vault ceremony steps (init, register, unseal_share, seal, ...).",
            ["step"],
            registry=r,
        )
        self.rotations = Counter(
            "containment_rotations_total",
            "Completed rotations of the master-key configuration, by kind (kms, unseal, mode).",
            ["kind"],
            registry=r,
        )
        self.credential_failures = Counter(
            "containment_credential_failures_total",
            "Rejected operator credentials and setup tokens, by ceremony.",
            ["ceremony"],
            registry=r,
        )
        self.slashing_db_duration = Histogram(
            "containment_slashing_db_duration_seconds",
            "Slashing-protection check-and-record latency.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        types = (*REQUEST_TYPES, "unknown")
        self._outcome_children = {
            (t, o): self.signing_requests.labels(t, o) for t in types for o in OUTCOMES
        }
        self._duration_children = {t: self.signing_duration.labels(t) for t in types}

    def set_seal_state(self, state: str) -> None:
        from chamber.vault.states import ALL_STATES

        for name in ALL_STATES:
            self.seal_state.labels(name).set(1 if name == state else 0)

    def record_signing(self, operation: str, outcome: str, seconds: float) -> None:
        key = (operation if operation in self._duration_children else "unknown", outcome)
        self._outcome_children[key].inc()
        self._duration_children[key[0]].observe(seconds)

    def serve(self, address: str, port: int) -> int:
        """Serve ``/metrics`` in a daemon thread; returns the bound port (``port`` may be 0)."""
        server, _thread = start_http_server(port, addr=address, registry=self.registry)
        self._server = server
        return int(server.server_port)

    def stop(self) -> None:
        server = getattr(self, "_server", None)
        if server is not None:
            server.shutdown()
            server.server_close()
