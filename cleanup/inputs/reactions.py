"""The documented reaction codes (Reaction.add page), canonical spelling and typo hints."""

from __future__ import annotations

import difflib

# Source: b24restdocs chat-message-reaction-add.md#reactions and the server's ReactionName enum.
# The portal matches them case-sensitively; the list "may change without notice".
REACTION_CODES: tuple[str, ...] = (
    "like", "dislike", "faceWithTearsOfJoy", "redHeart", "neutralFace", "fire", "cry",
    "slightlySmilingFace", "winkingFace", "laugh", "kiss", "wonder", "slightlyFrowningFace",
    "loudlyCryingFace", "faceWithStuckOutTongue", "faceWithStuckOutTongueAndWinkingEye",
    "smilingFaceWithSunglasses", "confusedFace", "flushedFace", "thinkingFace", "angry",
    "smilingFaceWithHorns", "faceWithThermometer", "facepalm", "poo", "flexedBiceps",
    "clappingHands", "raisedHand", "smilingFaceWithHeartEyes", "smilingFaceWithHearts",
    "pleadingFace", "relievedFace", "foldedHands", "okHand", "signHorns", "loveYouGesture",
    "clownFace", "partyingFace", "questionMark", "exclamationMark", "lightBulb", "bomb",
    "sleepingSymbol", "crossMark", "whiteHeavyCheckMark", "eyes", "handshake", "hundredPoints",
)  # fmt: skip

_BY_FOLDED = {code.casefold(): code for code in REACTION_CODES}


def canonical(code: str) -> str | None:
    """The documented spelling of `code` (matched without regard to case), or None."""
    return _BY_FOLDED.get(code.strip().casefold())


def suggest(code: str) -> str | None:
    """The closest documented code, for an 'unknown reaction' message."""
    close = difflib.get_close_matches(code.strip().casefold(), list(_BY_FOLDED), n=1, cutoff=0.75)
    return _BY_FOLDED[close[0]] if close else None
