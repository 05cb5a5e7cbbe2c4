"""The reaction codes Bitrix24 knows, and the server's own code normalisation.

Source: protocol fact sheet §3 (DOCS ``chat-message-reaction-add.md#reactions`` and
SRV ``ui/lib/Public/Enum/Reaction/ReactionName.php``).
"""

from __future__ import annotations

import re

# The 48 codes, in the documented order; camelCase and case-sensitive.
REACTION_CODES: tuple[str, ...] = (
    "like",
    "dislike",
    "faceWithTearsOfJoy",
    "redHeart",
    "neutralFace",
    "fire",
    "cry",
    "slightlySmilingFace",
    "winkingFace",
    "laugh",
    "kiss",
    "wonder",
    "slightlyFrowningFace",
    "loudlyCryingFace",
    "faceWithStuckOutTongue",
    "faceWithStuckOutTongueAndWinkingEye",
    "smilingFaceWithSunglasses",
    "confusedFace",
    "flushedFace",
    "thinkingFace",
    "angry",
    "smilingFaceWithHorns",
    "faceWithThermometer",
    "facepalm",
    "poo",
    "flexedBiceps",
    "clappingHands",
    "raisedHand",
    "smilingFaceWithHeartEyes",
    "smilingFaceWithHearts",
    "pleadingFace",
    "relievedFace",
    "foldedHands",
    "okHand",
    "signHorns",
    "loveYouGesture",
    "clownFace",
    "partyingFace",
    "questionMark",
    "exclamationMark",
    "lightBulb",
    "bomb",
    "sleepingSymbol",
    "crossMark",
    "whiteHeavyCheckMark",
    "eyes",
    "handshake",
    "hundredPoints",
)

_CAMEL_BOUNDARY = re.compile(r"(.)([A-Z])")


def upper_snake(name: str) -> str:
    """Bitrix's ``Converter(TO_SNAKE | TO_UPPER)``: ``redHeart`` -> ``RED_HEART``.

    Same regex as ``StringHelper::camel2snake`` (``/(.)([A-Z])/`` -> ``$1_$2``), so its
    quirks carry over: ``Like`` and ``red_heart`` also match, ``LIKE`` and ``redheart`` do not.
    """
    return _CAMEL_BOUNDARY.sub(r"\1_\2", name).lower().upper()


_BY_UPPER_SNAKE: dict[str, str] = {upper_snake(code): code for code in REACTION_CODES}


def canonical_reaction(name: str) -> str | None:
    """The documented code the server would match for ``name``, or None if it knows none."""
    return _BY_UPPER_SNAKE.get(upper_snake(name))
