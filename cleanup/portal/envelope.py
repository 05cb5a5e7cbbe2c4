"""Reading an answer's envelope: the outcome of the call, and of each command of a batch.

The transport returns the parsed JSON as it came; these functions know where the portal
puts results, errors and timings, and its PHP quirks (an empty map sent as `[]`, keys
0..n-1 as a list). The engine gets `Outcome`s and timings, never raw bodies.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cleanup.portal.classify import (
    Kind,
    Outcome,
    classify_answer,
    classify_error,
    classify_result,
)
from cleanup.portal.transport import Answer

MISSING_RESULT = Outcome(
    Kind.TRANSIENT, "MISSING_RESULT", "the batch answer did not mention this command"
)


def call_outcome(answer: Answer, *, context: str) -> Outcome:
    """The whole call's outcome (`context`: "batch" or "single"). A server error's text is
    followed by the start of a non-JSON body, which often says which proxy refused."""
    outcome = classify_answer(answer.status, answer.body, context=context)
    if outcome.kind is Kind.TRANSIENT and outcome.error.startswith("HTTP_") and answer.snippet:
        return Outcome(
            outcome.kind, outcome.error, f"{outcome.description}: {answer.snippet[:120]}"
        )
    return outcome


def single_result(answer: Answer) -> tuple[Outcome, Any]:
    """A single call the portal accepted: the method's outcome and its `time`."""
    body = answer.body if isinstance(answer.body, dict) else {}
    return classify_result(body.get("result")), body.get("time")


@dataclass(frozen=True, slots=True)
class BatchEnvelope:
    """`{"result": {"result": {...}, "result_error": {...}, "result_time": {...}}, "time": ...}`"""

    time: Any  # the batch call's own timing
    results: dict[str, Any]
    errors: dict[str, Any]
    command_times: dict[str, Any]

    @classmethod
    def parse(cls, body: Any) -> BatchEnvelope:
        body = body if isinstance(body, dict) else {}
        outer = body.get("result")
        if not isinstance(outer, dict):
            outer = {}
        return cls(
            time=body.get("time"),
            results=as_map(outer.get("result")),
            errors=as_map(outer.get("result_error")),
            command_times=as_map(outer.get("result_time")),
        )

    def outcome(self, key: str) -> Outcome:
        """The outcome of the command sent under `key`."""
        if key in self.errors:
            code, text = error_entry(self.errors[key])
            return classify_error(code, text, status=None, context="command")
        if key in self.results:
            return classify_result(self.results[key])
        # Neither map names it: the portal may or may not have run it.
        return MISSING_RESULT

    def timings(self) -> Iterator[Any]:
        """Each command's `time`, as the method's own answers give it."""
        yield from self.command_times.values()


def as_map(value: Any) -> dict[str, Any]:
    """PHP json_encode: an empty map arrives as [], keys 0..n-1 as a list."""
    if isinstance(value, dict):
        return {str(k): v for k, v in value.items()}
    if isinstance(value, list):
        return {str(i): v for i, v in enumerate(value)}
    return {}


def error_entry(entry: Any) -> tuple[str, str]:
    """One `result_error` entry: (code, description); a bare string is a description."""
    if isinstance(entry, dict):
        return str(entry.get("error") or ""), str(entry.get("error_description") or "")
    return "", str(entry)
