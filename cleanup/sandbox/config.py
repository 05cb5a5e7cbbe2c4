"""How the sandbox portal behaves: limits, latency, answer shapes and faults."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# Fault kinds, for PortalConfig.fault_rates and SandboxPortal.inject().
FAULT_KINDS: frozenset[str] = frozenset(
    {"http500", "reset", "lost_reply", "html502", "slow", "limit", "operating", "expired"}
)
SUCCESS_SHAPES: frozenset[str] = frozenset({"nested", "flat", "mixed"})
OPERATING_BILLINGS: frozenset[str] = frozenset({"method", "batch"})
BATCH_NOT_ALLOWED_MODES: frozenset[str | None] = frozenset({None, "call", "command"})


@dataclass
class PortalConfig:
    """Read afresh on every request, so tests may change fields while the server runs."""

    rate: float | None = None  # leaky bucket drain, requests/s; None = no rate limit
    burst: int = 50  # bucket size
    limit_status: int = 503  # status for QUERY_LIMIT_EXCEEDED (some portals 429)
    # If set, a Retry-After header (seconds) on limit refusals: QUERY_LIMIT_EXCEEDED, and a
    # whole call's OPERATION_TIME_LIMIT of the "operating" fault.
    retry_after: float | None = None
    latency: float = 0.0  # seconds slept per request before answering
    per_command_cost: float = 0.0  # seconds slept per executed reaction command
    operating_limit: float | None = None  # method run time allowed per window; None = off
    operating_window: float = 600.0  # window length; split into 10 sub-buckets like Bitrix
    # "method": each command is charged to its own method (the documentation); "batch": a
    # whole batch is charged to the method `batch`, and every command's `time.operating`
    # shows that batch-wide total (measured on live portals, b24jssdk pull request 539).
    operating_billing: str = "method"
    operating_cost: float | None = (
        None  # operating seconds per executed command; None = per_command_cost
    )
    batch_not_allowed: str | None = None  # None | "call" | "command"
    batch_not_allowed_status: int = 405
    success_shape: str = (
        "nested"  # "nested" {"result": true} | "flat" true | "mixed" random per command
    )
    # Commands a batch runs; the rest get ERROR_BATCH_LENGTH_EXCEEDED (the portal: 50).
    batch_max_length: int = 50
    # True: a longer batch is refused whole, HTTP 400 ERROR_BATCH_LENGTH_EXCEEDED (the docs'
    # reading), instead of running the first batch_max_length commands (the server code's).
    batch_too_long_refused: bool = False
    # If not None, returned as a successful delete's `result` instead of a success shape,
    # to test that a client treats odd answers (false, "true", 1 ...) as errors.
    success_value: Any = None
    method_error_status: int = (
        400  # status of method errors (BOT_*, ACCESS_DENIED, ...) on single calls
    )
    fault_rates: dict[str, float] = field(default_factory=dict)  # kind -> probability per request
    slow_seconds: float = 3.0  # delay of the "slow" fault
    seed: int | None = None  # RNG seed for faults and "mixed" shapes; read when the portal is made
    token_ttl: float = 3600.0  # OAuth access token lifetime, seconds
    redirect_to: str | None = (
        None  # answer every /rest/ request 302 to this base (a renamed portal)
    )
    https_required: bool = False  # answer every /rest/ call 401 INVALID_REQUEST "Https required."
    # (status, code, description): every /rest/ call gets this error before auth is checked,
    # for credential and portal-state errors (PORTAL_DELETED, OVERLOAD_LIMIT, ...) in any status.
    force_error: tuple[int, str, str] | None = None
    # (status, body): every /rest/ call gets this non-JSON answer (a proxy in front of the
    # portal, e.g. 401 "Unauthorized" as plain text).
    force_raw: tuple[int, str] | None = None
    # Methods this portal does not offer (ERROR_METHOD_NOT_FOUND), e.g. ("profile", "scope").
    missing_methods: tuple[str, ...] = ()
    # (code, description): every reaction command fails with it, singly (method_error_status)
    # or in a batch's result_error, e.g. a per-command insufficient_scope.
    command_error: tuple[str, str] | None = None
    # OAuth: the first N batch calls find the caller's access token expired while they run
    # (it passed the batch's own check): every command answers expired_token in
    # result_error, and the token stays expired; refreshing gives a working one.
    expire_during_batches: int = 0

    def problems(self) -> list[str]:
        """Every invalid setting, for a clear error before the server starts."""
        found = []
        unknown = sorted(set(self.fault_rates) - FAULT_KINDS)
        if unknown:
            known = ", ".join(sorted(FAULT_KINDS))
            found.append(f"unknown fault kind(s) {', '.join(unknown)}; known: {known}")
        if any(not 0.0 <= p <= 1.0 for p in self.fault_rates.values()):
            found.append("fault rates must be between 0 and 1")
        if sum(self.fault_rates.values()) > 1.0 + 1e-9:
            found.append("fault rates must add up to at most 1")
        if self.success_shape not in SUCCESS_SHAPES:
            found.append(f"success_shape must be one of {', '.join(sorted(SUCCESS_SHAPES))}")
        if self.batch_not_allowed not in BATCH_NOT_ALLOWED_MODES:
            found.append('batch_not_allowed must be None, "call" or "command"')
        if self.rate is not None and self.rate <= 0:
            found.append("rate must be positive (or None for no limit)")
        if self.burst < 1:
            found.append("burst must be at least 1")
        if self.batch_max_length < 1:
            found.append("batch_max_length must be at least 1")
        if self.operating_billing not in OPERATING_BILLINGS:
            found.append('operating_billing must be "method" or "batch"')
        if self.operating_window <= 0:
            found.append("operating_window must be positive")
        return found
