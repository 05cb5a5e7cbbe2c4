"""What an action sends for a row (cleanup.run.actions), property-tested with hypothesis:
a command's query round-trips through a query parser and PHP's parse_str, whatever the text."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from cleanup.inputs.validate import Row
from cleanup.portal.classify import Kind, Outcome
from cleanup.results import Status
from cleanup.run.actions import (
    ALREADY_ABSENT,
    DELETE,
    DELETE_METHOD,
    NOT_THERE,
    Doubt,
    delete_action,
)
from cleanup.sandbox import php

any_text = st.text(st.characters(exclude_categories=["Cs"]), max_size=40)
odd_text = st.one_of(
    any_text,
    st.text(alphabet="&=#+%?;[] \t\n/\\'\"$лайк", max_size=20),
    st.sampled_from(["like&botId=1#x+y", "%26", "a=b&c", "+", "#", "%", "%zz", "like[]"]),
)


@given(
    bot=st.integers(1, 10**18 - 1),
    message=st.integers(1, 10**18 - 1),
    reaction=odd_text,
    token=st.one_of(st.none(), odd_text),
)
@example(bot=456, message=789, reaction="like&botId=1#x+y", token="t&o#k+en")
def test_command_round_trips_through_a_query_parser(
    bot: int, message: int, reaction: str, token: str | None
) -> None:
    row = Row(1, bot, message, reaction, ("", "", ""))
    command = DELETE.command(row, token)
    method, _, query = command.partition("?")
    assert method == DELETE_METHOD
    # Nothing in a value may end the query for the portal's parse_url.
    assert urlsplit(command).query == query and "#" not in command
    expected = {"botId": str(bot), "messageId": str(message), "reaction": reaction}
    if token is not None:
        expected["botToken"] = token
    assert parse_qs(query, keep_blank_values=True) == {k: [v] for k, v in expected.items()}
    # The portal's own reading (PHP parse_str, as the sandbox models it) agrees.
    assert php.parse_str(query) == expected


# ---------------------------------------------------------------------- absent (issue 17)

NOT_FOUND = Outcome(Kind.NOT_FOUND, "REACTION_NOT_FOUND", "Reaction not found")


@pytest.mark.parametrize(
    ("reaction", "doubt", "strict", "expected"),
    [
        ("like", Doubt.NONE, False, (Status.ABSENT, "", NOT_THERE)),
        ("like", Doubt.NONE, True, (Status.FAILED, "REACTION_NOT_FOUND", "Reaction not found")),
        ("like", Doubt.THIS_RUN, False, (Status.REMOVED, "", ALREADY_ABSENT)),
        ("like", Doubt.THIS_RUN, True, (Status.REMOVED, "", ALREADY_ABSENT)),
        (
            "notACode",
            Doubt.NONE,
            False,
            (Status.FAILED, "REACTION_NOT_FOUND", "Reaction not found"),
        ),
    ],
    ids=["first attempt", "--absent-as-failed", "lost reply", "lost reply strict", "unknown code"],
)
def test_reaction_not_found_reads(
    reaction: str, doubt: Doubt, strict: bool, expected: tuple[Status, str, str]
) -> None:
    row = Row(1, 456, 789, reaction, ("456", "789", reaction))
    action = delete_action(absent_as_failed=strict)
    assert tuple(action.settle(row, NOT_FOUND, doubt)) == expected


def test_a_skipped_rows_description_says_run_not_job() -> None:
    from cleanup.run.actions import Doubt, skip_description, stopped_why

    assert stopped_why(None, "SIGTERM") == "run stopped (SIGTERM)"
    assert stopped_why("NO_AUTH_FOUND", "SIGTERM") == "run aborted (NO_AUTH_FOUND)"
    assert skip_description(stopped_why(None), "removed") == "not sent: run stopped"
    assert skip_description("run stopped (SIGTERM)", "removed", doubt=Doubt.EARLIER_RUN) == (
        "not sent: run stopped (SIGTERM); an earlier run may have removed it"
    )
    assert skip_description("run stopped", "added", doubt=Doubt.THIS_RUN) == (
        "run stopped before its outcome was known; an earlier attempt may have added it"
    )
    assert skip_description("run stopped (stop)", "removed", in_flight=True).endswith(
        "; its request was still in flight"
    )
