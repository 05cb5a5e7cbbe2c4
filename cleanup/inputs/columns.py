"""Column names: the three fields a row has, and the one rule for matching a name to them."""

from __future__ import annotations

import re

FIELDS = ("botId", "messageId", "reaction")
_SEPARATORS = re.compile(r"[\s_\-]+")


def normalise_name(name: object) -> str:
    """Column names match without regard to case, spaces, `_` or `-` (`Bot ID` == `botId`)."""
    return _SEPARATORS.sub("", str(name)).casefold()


_BY_NORMALISED = {normalise_name(f): f for f in FIELDS}


def canonical_field(name: object) -> str | None:
    """`bot_id`, `Bot ID`, `BOTID` -> `botId`; None for a name that is not one of FIELDS."""
    return _BY_NORMALISED.get(normalise_name(name))
