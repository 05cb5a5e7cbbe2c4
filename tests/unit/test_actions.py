"""What an action sends for a row (cleanup.run.actions), property-tested with hypothesis:
a command's query round-trips through a query parser and PHP's parse_str, whatever the text."""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

from hypothesis import example, given
from hypothesis import strategies as st

from cleanup.inputs.validate import Row
from cleanup.run.actions import DELETE, DELETE_METHOD
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
