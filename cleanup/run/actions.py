"""What the engine does to each row: a portal method, its parameters, what its answers mean.

The engine knows batching, pacing, retries and lost replies; an `Action` knows one method.
`DELETE` removes a reaction; another method (adding reactions back, for an undo) is
another `Action` through the same engine.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import NamedTuple
from urllib.parse import urlencode

from cleanup.inputs.reactions import REACTION_CODES
from cleanup.inputs.validate import Row
from cleanup.portal.classify import Kind, Outcome
from cleanup.redact import redact
from cleanup.results import RowResult, Status

Params = dict[str, str | int]


class Doubt(Enum):
    """Whether an earlier request for the row may already have acted on the portal."""

    NONE = "none"
    THIS_RUN = "this_run"  # a request of this run whose answer was lost (or a 5xx)
    EARLIER_RUN = "earlier_run"  # only a request of an earlier, stopped run (its journal)


class Verdict(NamedTuple):
    """A row's final status as the report shows it."""

    status: Status
    error: str = ""
    description: str = ""


def stopped_why(
    aborted_code: str | None, stop_reason: str | None = None, *, time_up: str | None = None
) -> str:
    """Why a run ended before a row's outcome: `run aborted (CODE)`, `run stopped (SIGTERM)`,
    or a time bound's own words (`time_up`: "time is up: --max-duration 2h; run again, or
    --resume, to continue", cleanup.run.bounds)."""
    if aborted_code is not None:
        return f"run aborted ({aborted_code})"
    if time_up is not None:
        return time_up
    return f"run stopped ({stop_reason})" if stop_reason else "run stopped"


def skip_description(
    why: str, did: str, *, doubt: Doubt = Doubt.NONE, in_flight: bool = False
) -> str:
    """A skipped row's error_description: the one wording of it. `why` from `stopped_why`;
    `did` the action's word ("removed"); `doubt` whether a request may have acted."""
    if doubt is Doubt.THIS_RUN:
        return f"{why} before its outcome was known; an earlier attempt may have {did} it"
    text = f"not sent: {why}"
    if doubt is Doubt.EARLIER_RUN:
        text += f"; an earlier run may have {did} it"
    return text + ("; its request was still in flight" if in_flight else "")


def failed(outcome: Outcome) -> Verdict:
    """The row failed with the portal's error (its text may echo a secret: redacted)."""
    return Verdict(Status.FAILED, outcome.error, redact(outcome.description))


@dataclass(frozen=True, slots=True)
class Action:
    """One method, sent once per row: `params` builds the call from a row and its bot's
    token (None with OAuth); `settle` maps an answer about the row to its verdict."""

    method: str
    params: Callable[[Row, str | None], Params]
    settle: Callable[[Row, Outcome, Doubt], Verdict]
    did: str  # what a request that ran did, for notes: "removed" (it)
    undo: bool = False  # adds back what a run removed: its report has the undo statuses
    # Statuses the validator gives that this action's report shows otherwise.
    recast: Mapping[Status, Status] = field(default_factory=dict)

    def adopt(self, result: RowResult) -> RowResult:
        """A result the validator gave, in this action's statuses."""
        status = self.recast.get(result.status)
        return result if status is None else replace(result, status=status)

    def command(self, row: Row, bot_token: str | None) -> str:
        """One batch command. Every value is URL-encoded, so `#`, `&` or `+` in a value
        cannot cut the query, add a parameter or turn into a space."""
        return f"{self.method}?{urlencode(self.params(row, bot_token))}"


# ---------------------------------------------------------------------- delete

DELETE_METHOD = "imbot.v2.Chat.Message.Reaction.delete"

ALREADY_ABSENT = "already absent on retry: an earlier attempt, whose answer was lost, removed it"
ALREADY_ABSENT_EARLIER_RUN = (
    "already absent on retry: an earlier run sent it and stopped before recording the answer,"
    " so that run removed it"
)
_DOCUMENTED = frozenset(REACTION_CODES)


def unknown_code_not_found(reaction: str, doubt: Doubt) -> str:
    """Why REACTION_NOT_FOUND on a re-send proves nothing for a code off the documented list:
    the method gives that code both for a reaction that is not there and for a reaction code
    the portal does not know."""
    earlier = (
        "an earlier attempt whose answer was lost"
        if doubt is Doubt.THIS_RUN
        else ("an earlier run that stopped before recording the answer")
    )
    return (
        f"REACTION_NOT_FOUND on a re-send, for {reaction!r}, which is not a documented reaction"
        f" code: either {earlier} removed it, or the portal has no reaction code {reaction!r}"
        " (the method answers REACTION_NOT_FOUND for both); check the message by hand"
    )


def reaction_params(row: Row, bot_token: str | None) -> Params:
    """The reaction methods' parameters; botToken only in webhook mode (OAuth matches the
    bot by client_id)."""
    params: Params = {"botId": row.bot_id, "messageId": row.message_id, "reaction": row.reaction}
    if bot_token is not None:
        params["botToken"] = bot_token
    return params


NOT_THERE = "not there: nothing to remove (the portal answered REACTION_NOT_FOUND)"


def settle_delete_strict(row: Row, outcome: Outcome, doubt: Doubt) -> Verdict:
    """REACTION_NOT_FOUND after a request that may have acted means that request removed
    it: `removed`, saying so. Not for a code off the documented list (sent with
    --allow-unknown-reactions): the same answer also means "no such reaction code", so the
    row fails, naming both readings. Otherwise the portal's answer stands (--absent-as-failed:
    a reaction not there at the first attempt is `failed`)."""
    if outcome.kind is Kind.OK:
        return Verdict(Status.REMOVED)
    if outcome.kind is Kind.NOT_FOUND and doubt is not Doubt.NONE:
        if row.reaction not in _DOCUMENTED:
            why = redact(unknown_code_not_found(row.reaction, doubt))
            return Verdict(Status.FAILED, outcome.error, why)
        why = ALREADY_ABSENT if doubt is Doubt.THIS_RUN else ALREADY_ABSENT_EARLIER_RUN
        return Verdict(Status.REMOVED, "", why)
    return failed(outcome)


def settle_delete(row: Row, outcome: Outcome, doubt: Doubt) -> Verdict:
    """As `settle_delete_strict`, but REACTION_NOT_FOUND at a first attempt, for a documented
    code (the job checked it before sending), is the state the row asked for: `absent`. For
    a code off the list the answer may mean "no such code": the row stays `failed`."""
    if outcome.kind is Kind.NOT_FOUND and doubt is Doubt.NONE and row.reaction in _DOCUMENTED:
        return Verdict(Status.ABSENT, "", NOT_THERE)
    return settle_delete_strict(row, outcome, doubt)


DELETE = Action(DELETE_METHOD, reaction_params, settle_delete, did="removed")
# --absent-as-failed: a reaction not there is a failed row, as before the `absent` status.
DELETE_STRICT = replace(DELETE, settle=settle_delete_strict)


def delete_action(*, absent_as_failed: bool) -> Action:
    return DELETE_STRICT if absent_as_failed else DELETE


# ---------------------------------------------------------------------- add (undo)

ADD_METHOD = "imbot.v2.Chat.Message.Reaction.add"

# Not in the method's documented list of errors: the sandbox answers it, a portal may not
# (then a second add simply succeeds). Either way the reaction is there, which is what an
# undo wants.
REACTION_ALREADY_SET = "REACTION_ALREADY_SET"
ALREADY_SET = "REACTION_ALREADY_SET: the reaction was already there"
ALREADY_SET_ON_RETRY = (
    "REACTION_ALREADY_SET on retry: an earlier attempt, whose answer was lost, added it"
)


def settle_add(row: Row, outcome: Outcome, doubt: Doubt) -> Verdict:
    """Added, or already there (after a lost reply: the earlier attempt added it):
    `restored`. REACTION_NOT_FOUND from an add means an unknown reaction code: failed."""
    if outcome.kind is Kind.OK:
        return Verdict(Status.RESTORED)
    if outcome.error == REACTION_ALREADY_SET:
        why = ALREADY_SET_ON_RETRY if doubt is Doubt.THIS_RUN else ALREADY_SET
        return Verdict(Status.RESTORED, "", why)
    return failed(outcome)


ADD = Action(
    ADD_METHOD,
    reaction_params,
    settle_add,
    did="restored",
    undo=True,
    # A removed row the validator refuses now (its bot has no token in this tokens file)
    # was not restored; a repeated one is restored by its first line.
    recast={Status.INVALID: Status.FAILED, Status.DUPLICATE: Status.SKIPPED},
)
