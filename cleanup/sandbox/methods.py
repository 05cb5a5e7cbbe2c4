"""The REST methods' own logic, as the portal runs it once a call is authenticated."""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from . import php
from .reactions import canonical_reaction
from .state import PortalState

METHOD_BATCH = "batch"
METHOD_DELETE = "imbot.v2.Chat.Message.Reaction.delete"
METHOD_ADD = "imbot.v2.Chat.Message.Reaction.add"
METHOD_PROFILE = "profile"
METHOD_SERVER_TIME = "server.time"
METHOD_SCOPE = "scope"

# Lower-cased name -> canonical name: method names are case-insensitive.
KNOWN_METHODS: dict[str, str] = {
    name.lower(): name
    for name in (
        METHOD_BATCH,
        METHOD_DELETE,
        METHOD_ADD,
        METHOD_PROFILE,
        METHOD_SERVER_TIME,
        METHOD_SCOPE,
    )
}
REACTION_METHODS: frozenset[str] = frozenset({METHOD_DELETE, METHOD_ADD})


@dataclass(frozen=True)
class Caller:
    """Who is calling: a webhook (user id) or an OAuth app acting for a user."""

    mode: str  # "webhook" | "oauth"
    user_id: int
    client_id: str | None = None

    @property
    def entity(self) -> str:
        """The key operating time is counted under: per webhook or per app."""
        return f"webhook:{self.user_id}" if self.mode == "webhook" else f"app:{self.client_id}"


@dataclass(frozen=True)
class MethodError:
    code: str
    description: str


BOT_TOKEN_NOT_SPECIFIED = MethodError(
    "BOT_TOKEN_NOT_SPECIFIED", "Bot token not specified (botToken is required for webhook auth)"
)
BOT_ID_REQUIRED = MethodError("BOT_ID_REQUIRED", "botId is required")
BOT_NOT_FOUND = MethodError("BOT_NOT_FOUND", "Bot not found")
BOT_OWNERSHIP_ERROR = MethodError(
    "BOT_OWNERSHIP_ERROR", "Bot was installed by another rest application"
)
MESSAGE_NOT_FOUND = MethodError("MESSAGE_NOT_FOUND", "Message not found")
ACCESS_DENIED = MethodError("ACCESS_DENIED", "Access denied")
REACTION_NOT_FOUND = MethodError("REACTION_NOT_FOUND", "Reaction not found")
REACTION_ALREADY_SET = MethodError("REACTION_ALREADY_SET", "Reaction already set")


def _param(params: Mapping[str, Any], *names: str) -> str | None:
    """BotController::getRequestParamAny: the first name present and not "", as a string."""
    for name in names:
        value = params.get(name)
        if value is not None and value != "":
            return php.to_string(value)
    return None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def reaction_call(
    state: PortalState, caller: Caller, params: Mapping[str, Any], *, add: bool
) -> tuple[MethodError | None, bool]:
    """Run Reaction.delete (or .add) with the server's check order. Call with ``state.lock`` held.

    Returns (error or None, whether a reaction was removed).
    """
    # BotController::processBeforeAction: who owns the call, then botId, bot, ownership.
    token = None
    if caller.mode == "webhook":
        # The deprecated clientId/CLIENT_ID stands in for botToken, as on the server.
        token = _param(params, "botToken", "BOT_TOKEN") or _param(params, "clientId", "CLIENT_ID")
        if not token:
            return BOT_TOKEN_NOT_SPECIFIED, False
    bot_id = php.intval(_param(params, "botId", "BOT_ID") or 0)
    if bot_id <= 0:
        return BOT_ID_REQUIRED, False
    bot = state.bots.get(bot_id)
    if bot is None:
        return BOT_NOT_FOUND, False
    if caller.mode == "oauth":
        owned = bot.client_id is not None and bot.client_id == caller.client_id
    else:
        # A webhook-registered bot's APP_ID is "custom" + its botToken; an app's bot never matches.
        owned = bot.client_id is None and token is not None and _same(bot.token, token)
    if not owned:
        return BOT_OWNERSHIP_ERROR, False

    # Then the action's parameters: the message, the bot's access to its chat, the reaction.
    message_id = php.strict_int(params.get("messageId"))
    if message_id is None or message_id not in state.messages:
        return MESSAGE_NOT_FOUND, False
    if bot_id not in state.chats.get(state.messages[message_id], set()):
        return ACCESS_DENIED, False
    raw = params.get("reaction")
    code = canonical_reaction(php.to_string(raw)) if isinstance(raw, (str, int, float)) else None
    if code is None:
        return REACTION_NOT_FOUND, False

    if add:
        if (message_id, bot_id, code) in state.reactions:
            return REACTION_ALREADY_SET, False
        # ReactionService::addReaction first drops the user's other reactions on the message.
        state.reactions.difference_update(
            {r for r in state.reactions if r[0] == message_id and r[1] == bot_id}
        )
        state.reactions.add((message_id, bot_id, code))
        return None, False
    key = (message_id, bot_id, code)
    if key not in state.reactions:
        return REACTION_NOT_FOUND, False
    state.reactions.remove(key)
    return None, True
