"""The REST methods' own logic, as the portal runs it once a call is authenticated."""

from __future__ import annotations

import base64
import binascii
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
METHOD_SEND = "imbot.v2.Chat.Message.send"
METHOD_UPLOAD = "imbot.v2.File.upload"

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
        METHOD_SEND,
        METHOD_UPLOAD,
    )
}
REACTION_METHODS: frozenset[str] = frozenset({METHOD_DELETE, METHOD_ADD})
POST_METHODS: frozenset[str] = frozenset({METHOD_SEND, METHOD_UPLOAD})


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
# Chat.Message.send and File.upload (their documentation pages; protocol sheet section 9).
EMPTY_MESSAGE = MethodError("EMPTY_MESSAGE", "Message is empty")
FILE_EMPTY = MethodError("FILE_EMPTY", "File name or content is empty")
FILE_INVALID_CONTENT = MethodError("FILE_INVALID_CONTENT", "Invalid base64 content")
FILE_TOO_LARGE = MethodError("FILE_TOO_LARGE", "File too large")
MESSAGE_LIMIT = 20_000  # characters; beyond, the text is cut and " (...)" added


def _param(params: Mapping[str, Any], *names: str) -> str | None:
    """BotController::getRequestParamAny: the first name present and not "", as a string."""
    for name in names:
        value = params.get(name)
        if value is not None and value != "":
            return php.to_string(value)
    return None


def _same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def bot_check(
    state: PortalState, caller: Caller, params: Mapping[str, Any]
) -> tuple[MethodError | None, int]:
    """BotController::processBeforeAction: who owns the call, then botId, bot, ownership.
    Every imbot.v2 method of a bot starts so. Returns (error or None, the bot's id)."""
    token = None
    if caller.mode == "webhook":
        # The deprecated clientId/CLIENT_ID stands in for botToken, as on the server.
        token = _param(params, "botToken", "BOT_TOKEN") or _param(params, "clientId", "CLIENT_ID")
        if not token:
            return BOT_TOKEN_NOT_SPECIFIED, 0
    bot_id = php.intval(_param(params, "botId", "BOT_ID") or 0)
    if bot_id <= 0:
        return BOT_ID_REQUIRED, bot_id
    bot = state.bots.get(bot_id)
    if bot is None:
        return BOT_NOT_FOUND, bot_id
    if caller.mode == "oauth":
        owned = bot.client_id is not None and bot.client_id == caller.client_id
    else:
        # A webhook-registered bot's APP_ID is "custom" + its botToken; an app's bot never matches.
        owned = bot.client_id is None and token is not None and _same(bot.token, token)
    if not owned:
        return BOT_OWNERSHIP_ERROR, bot_id
    return None, bot_id


def reaction_call(
    state: PortalState, caller: Caller, params: Mapping[str, Any], *, add: bool
) -> tuple[MethodError | None, bool]:
    """Run Reaction.delete (or .add) with the server's check order. Call with ``state.lock`` held.

    Returns (error or None, whether a reaction was removed).
    """
    error, bot_id = bot_check(state, caller, params)
    if error is not None:
        return error, False

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


# ---------------------------------------------------------------------- a bot posting


def post_call(
    state: PortalState, caller: Caller, params: Mapping[str, Any], *, upload: bool
) -> tuple[MethodError | None, Any]:
    """Chat.Message.send (or File.upload): the bot checks, the bot's membership of a group
    chat, then the fields. Call with ``state.lock`` held. Returns (error or None, result)."""
    error, bot_id = bot_check(state, caller, params)
    if error is not None:
        return error, None
    dialog = php.to_string(params.get("dialogId") or params.get("DIALOG_ID") or "")
    if dialog.startswith("chat"):
        chat_id = php.strict_int(dialog[len("chat") :])
        if chat_id is None or bot_id not in state.chats.get(chat_id, set()):
            return ACCESS_DENIED, None
    elif (php.strict_int(dialog) or 0) <= 0:
        return ACCESS_DENIED, None  # no such dialog: the bot cannot write there
    raw = params.get("fields")
    fields: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
    return (_upload if upload else _send)(state, bot_id, dialog, fields)


def _send(
    state: PortalState, bot_id: int, dialog: str, fields: Mapping[str, Any]
) -> tuple[MethodError | None, Any]:
    message = fields.get("message")
    text = php.to_string(message) if isinstance(message, (str, int, float)) else ""
    if not text.strip() and not fields.get("attach"):
        return EMPTY_MESSAGE, None
    if len(text) > MESSAGE_LIMIT:
        text = text[:MESSAGE_LIMIT] + " (...)"
    post = state.record_post(bot_id, dialog, kind="message", message=text)
    return None, {"id": post["id"], "uuidMap": []}  # PHP's empty array: `[]`


def _upload(
    state: PortalState, bot_id: int, dialog: str, fields: Mapping[str, Any]
) -> tuple[MethodError | None, Any]:
    name = fields.get("name")
    content = fields.get("content")
    if not isinstance(name, str) or not name or not isinstance(content, str) or not content:
        return FILE_EMPTY, None
    try:
        data = base64.b64decode(content, validate=True)
    except (binascii.Error, ValueError):
        return FILE_INVALID_CONTENT, None
    if len(data) > state.upload_limit:
        return FILE_TOO_LARGE, None
    message = fields.get("message")
    text = php.to_string(message) if isinstance(message, (str, int, float)) else ""
    post = state.record_post(bot_id, dialog, kind="file", message=text, name=name, content=data)
    extension = name.rpartition(".")[2] if "." in name else ""
    chat_id = php.strict_int(dialog[4:]) if dialog.startswith("chat") else 0
    file = {"id": post["file_id"], "chatId": chat_id, "name": name, "extension": extension}
    return None, {
        "file": {**file, "size": len(data)},
        "messageId": post["id"],
        "chatId": chat_id,
        "dialogId": dialog,
    }
