"""An answer's envelope (cleanup.portal.envelope): where the portal puts each command's
result, error and timing, with PHP's quirks, and what a call's outcome says."""

from __future__ import annotations

from typing import Any

import pytest

from cleanup.portal.classify import Kind
from cleanup.portal.envelope import (
    MISSING_RESULT,
    BatchEnvelope,
    as_map,
    call_outcome,
    error_entry,
    single_result,
)
from cleanup.portal.transport import Answer


def answer(status: int, body: Any, snippet: str = "") -> Answer:
    return Answer(status=status, body=body, snippet=snippet, retry_after=None, elapsed=0.1)


def test_each_command_has_the_outcome_its_own_entry_gives() -> None:
    envelope = BatchEnvelope.parse(
        {
            "result": {
                "result": {"r1": True, "r3": False},
                "result_error": {
                    "r2": {"error": "REACTION_NOT_FOUND", "error_description": "no such reaction"}
                },
                "result_time": {"r1": {"duration": 0.02}, "r2": {"duration": 0.01}},
            },
            "time": {"duration": 0.05},
        }
    )
    assert envelope.outcome("r1").kind is Kind.OK
    not_found = envelope.outcome("r2")
    assert (not_found.kind, not_found.error) == (Kind.NOT_FOUND, "REACTION_NOT_FOUND")
    assert envelope.outcome("r3").kind is Kind.ROW_FAILED  # `false` is not a success
    assert envelope.time == {"duration": 0.05}
    assert list(envelope.timings()) == [{"duration": 0.02}, {"duration": 0.01}]


def test_a_command_neither_map_names_may_or_may_not_have_run() -> None:
    envelope = BatchEnvelope.parse({"result": {"result": {"r1": True}}})
    assert envelope.outcome("r2") is MISSING_RESULT
    assert MISSING_RESULT.kind is Kind.TRANSIENT


def test_an_error_wins_over_a_result_under_the_same_key() -> None:
    envelope = BatchEnvelope.parse(
        {"result": {"result": {"r1": True}, "result_error": {"r1": {"error": "ACCESS_DENIED"}}}}
    )
    assert envelope.outcome("r1").error == "ACCESS_DENIED"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ([], {}),  # PHP's json_encode of an empty map
        (["a", "b"], {"0": "a", "1": "b"}),  # keys 0..n-1 arrive as a list
        ({1: "a"}, {"1": "a"}),
        (None, {}),
        ("text", {}),
    ],
)
def test_php_maps_in_every_shape(value: Any, expected: dict[str, Any]) -> None:
    assert as_map(value) == expected


@pytest.mark.parametrize("body", [None, "<html>", [], {"result": []}, {"result": "x"}])
def test_a_garbled_envelope_names_no_command(body: Any) -> None:
    envelope = BatchEnvelope.parse(body)
    assert envelope.results == envelope.errors == envelope.command_times == {}
    assert envelope.outcome("r1") is MISSING_RESULT


def test_an_error_entry_as_a_map_or_a_bare_string() -> None:
    assert error_entry({"error": "X", "error_description": "why"}) == ("X", "why")
    assert error_entry({"error": None}) == ("", "")
    assert error_entry("something broke") == ("", "something broke")


def test_a_single_call_gives_its_result_and_its_time() -> None:
    outcome, timing = single_result(answer(200, {"result": True, "time": {"duration": 0.1}}))
    assert outcome.kind is Kind.OK and timing == {"duration": 0.1}
    outcome, timing = single_result(answer(200, "not a map"))
    assert outcome.kind is Kind.ROW_FAILED and timing is None


def test_a_server_error_names_the_start_of_its_page() -> None:
    outcome = call_outcome(
        answer(502, None, snippet="<html>Bad Gateway nginx</html>"), context="batch"
    )
    assert (outcome.kind, outcome.error) == (Kind.TRANSIENT, "HTTP_502")
    assert outcome.description.endswith(": <html>Bad Gateway nginx</html>")
    plain = call_outcome(answer(502, None), context="batch")
    assert "nginx" not in plain.description
