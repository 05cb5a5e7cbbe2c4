"""A local Bitrix24 portal for tests, benchmarks and demos.

It speaks the REST protocol reaction-cleanup uses (webhook and OAuth calls, ``batch``,
``imbot.v2.Chat.Message.Reaction.delete``, the OAuth refresh endpoint) over real HTTP, and
can be told to misbehave: rate and operating-time limits, per-command errors, PHP JSON
quirks, dropped connections and proxy errors.

    with SandboxPortal(PortalState.build([(456, 789, "like")])) as portal:
        requests.post(portal.webhook_url() + "imbot.v2.Chat.Message.Reaction.delete", json={...})
"""

from .config import FAULT_KINDS, PortalConfig
from .reactions import REACTION_CODES
from .server import SandboxPortal
from .state import Bot, PortalState
from .stats import PortalStats, RequestRecord

__all__ = [
    "FAULT_KINDS",
    "REACTION_CODES",
    "Bot",
    "PortalConfig",
    "PortalState",
    "PortalStats",
    "RequestRecord",
    "SandboxPortal",
]
