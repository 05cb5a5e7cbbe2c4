"""The retry policy: one immutable value, used by batch and single calls alike."""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Budgets and backoff for what is safe to retry.

    - `max_retries`: re-sends after an answer of unknown outcome (network error, 5xx,
      garbage). Limit refusals and batch overflow do not use it: nothing ran.
    - `max_wait`: seconds each row may spend waiting in all (backoff, limit refusals, and
      the pauses its requests wait out before they leave: the operating-time budget, a
      Retry-After) before it is given up as failed; also how long an outage is waited out.
    """

    max_retries: int = 5
    max_wait: float = 900.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    jitter: float = 0.5
    operating_backoff: float = (
        30.0  # first wait on OPERATION_TIME_LIMIT when no reset time is known
    )
    operating_backoff_max: float = 600.0  # the portal's window is 10 minutes

    def backoff(self, retry: int, rng: random.Random | None = None) -> float:
        """Capped exponential backoff with jitter for the `retry`-th re-send (1-based)."""
        delay = min(self.backoff_max, self.backoff_base * 2.0 ** max(retry - 1, 0))
        if self.jitter:
            spread = delay * self.jitter
            delay += (rng or random).uniform(-spread, spread)
        return max(0.0, delay)

    def operating_wait(
        self, refusals: int, reset_in: float | None, retry_after: float | None = None
    ) -> float:
        """What the portal gave wins over computed backoff, without jitter: a Retry-After
        on the refusal itself first (it is newer than any reset time read from an earlier
        answer), then the reset time. Kept within 0.5 s .. 10 min like the other waits."""
        if retry_after is not None and retry_after >= 0:
            return min(max(retry_after, self.backoff_base), self.operating_backoff_max)
        if reset_in is not None and reset_in > 0:
            return min(reset_in + 0.5, self.operating_backoff_max)
        return min(self.operating_backoff_max, self.operating_backoff * 2.0 ** max(refusals - 1, 0))

    def limit_wait(self, refusals: int, retry_after: float | None) -> float:
        """Wait after QUERY_LIMIT_EXCEEDED: Retry-After if sent, else short capped backoff.
        A Retry-After under the first backoff step (`0`, say) is raised to it: each refusal
        must cost some of --max-wait, or a portal that keeps refusing would be retried forever."""
        if retry_after is not None and retry_after >= 0:
            return min(max(retry_after, self.backoff_base), 120.0)
        return min(10.0, 0.5 * 2.0 ** max(refusals - 1, 0))
