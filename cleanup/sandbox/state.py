"""What the sandbox portal holds: webhooks, OAuth apps, bots, chats, messages and reactions."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cleanup.outputs.files import write_atomic

DEFAULT_WEBHOOK_CODE = "sandbox-webhook-code"
# File.upload's documented limit of a file's size.
UPLOAD_LIMIT = 100 * 1024 * 1024


@dataclass(frozen=True)
class Bot:
    """A chat bot. ``client_id`` is the app that registered it; None means a webhook did,
    in which case ``token`` is the ``botToken`` given at registration."""

    id: int
    token: str
    client_id: str | None = None


class PortalState:
    """The portal's data, guarded by one lock (``self.lock``) that the server holds while it
    reads or changes anything. Tests may change the attributes directly, ideally under the lock.

    ``reactions`` holds ``(message_id, bot_id, reaction)``; the state file and ``build()`` use
    ``(bot_id, message_id, reaction)``, the order of the input spreadsheet's columns.
    """

    def __init__(
        self,
        *,
        webhooks: Mapping[int, str] | None = None,
        oauth_apps: Mapping[str, str] | None = None,
        bots: Mapping[int, Bot] | None = None,
        chats: Mapping[int, Iterable[int]] | None = None,
        messages: Mapping[int, int] | None = None,
        reactions: Iterable[tuple[int, int, str]] | None = None,
    ) -> None:
        self.lock = threading.RLock()
        self.webhooks: dict[int, str] = dict(webhooks or {})
        self.oauth_apps: dict[str, str] = dict(oauth_apps or {})
        self.bots: dict[int, Bot] = dict(bots or {})
        self.chats: dict[int, set[int]] = {
            cid: set(members) for cid, members in (chats or {}).items()
        }
        self.messages: dict[int, int] = dict(messages or {})
        self.reactions: set[tuple[int, int, str]] = set(reactions or ())
        # What bots posted (Chat.Message.send, File.upload), oldest first; tests read it with
        # `posted()` or from GET /_sandbox/posts. Not saved in the state file.
        self.posts: list[dict[str, Any]] = []
        self.upload_limit = UPLOAD_LIMIT  # bytes of a file, decoded; tests may lower it
        self._next_post_id = 1_000_000

    # --- convenience -----------------------------------------------------------------

    @classmethod
    def build(
        cls,
        reactions: Iterable[tuple[int, int, str]],
        *,
        webhook_code: str = DEFAULT_WEBHOOK_CODE,
        user_id: int = 1,
        bot_tokens: Mapping[int, str] | None = None,
        oauth_apps: Mapping[str, str] | None = None,
        chat_id_for_message: Mapping[int, int] | Callable[[int], int] | None = None,
        bot_client_ids: Mapping[int, str] | None = None,
    ) -> PortalState:
        """A portal where every given reaction exists.

        ``reactions`` are ``(bot_id, message_id, reaction)``. Each bot gets the token from
        ``bot_tokens`` or ``f"token-{bot_id}"`` and, if listed in ``bot_client_ids``, is owned
        by that OAuth app (else by the webhook). Each message gets its own chat (id = message
        id unless ``chat_id_for_message`` says otherwise) whose members are the bots reacting
        in it.
        """
        tokens = dict(bot_tokens or {})
        owners = dict(bot_client_ids or {})
        state = cls(webhooks={user_id: webhook_code}, oauth_apps=oauth_apps)
        for bot_id, message_id, reaction in reactions:
            bot_id, message_id = int(bot_id), int(message_id)
            if bot_id not in state.bots:
                state.bots[bot_id] = Bot(
                    bot_id, tokens.get(bot_id, f"token-{bot_id}"), owners.get(bot_id)
                )
            if message_id not in state.messages:
                if chat_id_for_message is None:
                    chat_id = message_id
                elif callable(chat_id_for_message):
                    chat_id = int(chat_id_for_message(message_id))
                else:
                    chat_id = int(chat_id_for_message.get(message_id, message_id))
                state.messages[message_id] = chat_id
            state.chats.setdefault(state.messages[message_id], set()).add(bot_id)
            state.reactions.add((message_id, bot_id, reaction))
        # Bots named only in the token/owner maps exist too (useful for "no reaction" cases).
        for bot_id in set(tokens) | set(owners):
            if bot_id not in state.bots:
                state.bots[bot_id] = Bot(
                    bot_id, tokens.get(bot_id, f"token-{bot_id}"), owners.get(bot_id)
                )
        return state

    def add_bot(self, bot_id: int, token: str | None = None, client_id: str | None = None) -> Bot:
        bot = Bot(bot_id, token if token is not None else f"token-{bot_id}", client_id)
        with self.lock:
            self.bots[bot_id] = bot
        return bot

    def add_message(self, message_id: int, chat_id: int, members: Iterable[int] = ()) -> None:
        with self.lock:
            self.messages[message_id] = chat_id
            self.chats.setdefault(chat_id, set()).update(members)

    def add_chat(self, chat_id: int, members: Iterable[int] = ()) -> None:
        """A group chat (dialog `chat{chat_id}`) with these members (bots are users too)."""
        with self.lock:
            self.chats.setdefault(chat_id, set()).update(members)

    def record_post(self, bot_id: int, dialog: str, **post: Any) -> dict[str, Any]:
        """Note a bot's message (or file); its message id (and file id) are given here."""
        with self.lock:
            self._next_post_id += 1
            entry = {
                "id": self._next_post_id,
                "file_id": self._next_post_id,
                "botId": bot_id,
                "dialogId": dialog,
                **post,
            }
            self.posts.append(entry)
            return entry

    def posted(self, dialog: str | None = None) -> list[dict[str, Any]]:
        """A copy of what bots posted (to `dialog`, if given): each a dict with `kind`
        ("message" or "file"), `botId`, `dialogId`, `message`, and for a file `name` and
        `content` (its bytes)."""
        with self.lock:
            return [dict(p) for p in self.posts if dialog is None or p["dialogId"] == dialog]

    def has_reaction(self, bot_id: int, message_id: int, reaction: str) -> bool:
        with self.lock:
            return (message_id, bot_id, reaction) in self.reactions

    def add_reaction(self, bot_id: int, message_id: int, reaction: str) -> None:
        """Add a reaction as is (no checks: tests may want odd data)."""
        with self.lock:
            self.reactions.add((message_id, bot_id, reaction))

    def snapshot(self) -> set[tuple[int, int, str]]:
        """A copy of ``reactions``: ``(message_id, bot_id, reaction)`` tuples."""
        with self.lock:
            return set(self.reactions)

    # --- persistence -----------------------------------------------------------------

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> PortalState:
        """Read the JSON state format; raises ValueError naming the bad entry."""
        if not isinstance(data, Mapping):
            raise ValueError("portal state must be a JSON object")

        def section(name: str, kind: type) -> Any:
            value = data.get(name, kind())
            if not isinstance(value, kind):
                raise ValueError(
                    f"portal state: {name!r} must be a JSON {'object' if kind is dict else 'array'}"
                )
            return value

        def as_int(value: Any, where: str) -> int:
            try:
                if isinstance(value, bool):
                    raise ValueError
                return int(value)
            except (TypeError, ValueError):
                raise ValueError(f"portal state: {where}: {value!r} is not an integer") from None

        state = cls()
        for uid, code in section("webhooks", dict).items():
            state.webhooks[as_int(uid, "webhooks key")] = str(code)
        for client_id, secret in section("oauth_apps", dict).items():
            state.oauth_apps[str(client_id)] = str(secret)
        for bid, spec in section("bots", dict).items():
            bot_id = as_int(bid, "bots key")
            if not isinstance(spec, Mapping):
                raise ValueError(f"portal state: bots[{bid}] must be an object")
            client_id = spec.get("client_id")
            state.bots[bot_id] = Bot(
                bot_id,
                str(spec.get("token", f"token-{bot_id}")),
                None if client_id is None else str(client_id),
            )
        for cid, members in section("chats", dict).items():
            if not isinstance(members, list):
                raise ValueError(f"portal state: chats[{cid}] must be an array of user ids")
            state.chats[as_int(cid, "chats key")] = {as_int(m, f"chats[{cid}]") for m in members}
        for mid, cid in section("messages", dict).items():
            state.messages[as_int(mid, "messages key")] = as_int(cid, f"messages[{mid}]")
        for i, entry in enumerate(section("reactions", list)):
            if not isinstance(entry, list) or len(entry) != 3 or not isinstance(entry[2], str):
                raise ValueError(
                    f"portal state: reactions[{i}] must be [botId, messageId, reaction]"
                )
            bot_id = as_int(entry[0], f"reactions[{i}] botId")
            message_id = as_int(entry[1], f"reactions[{i}] messageId")
            state.reactions.add((message_id, bot_id, entry[2]))
        return state

    @classmethod
    def from_file(cls, path: str | os.PathLike[str]) -> PortalState:
        with open(path, encoding="utf-8") as fh:
            try:
                data = json.load(fh)
            except json.JSONDecodeError as exc:
                raise ValueError(f"{path}: not valid JSON: {exc}") from None
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, Any]:
        with self.lock:
            return {
                "webhooks": {str(uid): code for uid, code in sorted(self.webhooks.items())},
                "oauth_apps": dict(sorted(self.oauth_apps.items())),
                "bots": {
                    str(b.id): {"token": b.token, "client_id": b.client_id}
                    for _, b in sorted(self.bots.items())
                },
                "chats": {str(cid): sorted(members) for cid, members in sorted(self.chats.items())},
                "messages": {str(mid): cid for mid, cid in sorted(self.messages.items())},
                "reactions": [
                    [bot, msg, r]
                    for msg, bot, r in sorted(self.reactions, key=lambda t: (t[1], t[0], t[2]))
                ],
            }

    def to_file(self, path: str | os.PathLike[str]) -> None:
        """Write atomically, so a reader never sees half a file."""
        data = json.dumps(self.to_dict(), indent=1, ensure_ascii=False)
        write_atomic(Path(path), data + "\n")
