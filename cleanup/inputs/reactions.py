"""The documented reaction codes (Reaction.add page), the emoji the portal shows for each,
canonical spelling and typo hints. The one table of reactions: everything else reads it."""

from __future__ import annotations

import difflib
import unicodedata

# Source: b24restdocs chat-message-reaction-add.md#reactions and the server's ReactionName enum.
# The portal matches them case-sensitively; the list "may change without notice".
# Each code is the camelCase of its emoji's name: Unicode's character name for most
# (`faceWithTearsOfJoy` is 😂, FACE WITH TEARS OF JOY), the newer CLDR short name for some
# (`redHeart` is ❤, HEAVY BLACK HEART), the messenger's older names for a few (`like` 👍,
# `cry` 😢, `facepalm` 🤦). One emoji per code, written without variation selectors;
# `from_emoji` ignores those and skin tones. tests/unit/test_reactions.py derives each code
# from its character's name and lists the exceptions.
REACTIONS: dict[str, str] = {
    "like": "👍", "dislike": "👎", "faceWithTearsOfJoy": "😂", "redHeart": "❤",
    "neutralFace": "😐", "fire": "🔥", "cry": "😢", "slightlySmilingFace": "🙂",
    "winkingFace": "😉", "laugh": "😄", "kiss": "😘", "wonder": "😮",
    "slightlyFrowningFace": "🙁", "loudlyCryingFace": "😭", "faceWithStuckOutTongue": "😛",
    "faceWithStuckOutTongueAndWinkingEye": "😜", "smilingFaceWithSunglasses": "😎",
    "confusedFace": "😕", "flushedFace": "😳", "thinkingFace": "🤔", "angry": "😠",
    "smilingFaceWithHorns": "😈", "faceWithThermometer": "🤒", "facepalm": "🤦",
    "poo": "💩", "flexedBiceps": "💪", "clappingHands": "👏", "raisedHand": "✋",
    "smilingFaceWithHeartEyes": "😍", "smilingFaceWithHearts": "🥰", "pleadingFace": "🥺",
    "relievedFace": "😌", "foldedHands": "🙏", "okHand": "👌", "signHorns": "🤘",
    "loveYouGesture": "🤟", "clownFace": "🤡", "partyingFace": "🥳", "questionMark": "❓",
    "exclamationMark": "❗", "lightBulb": "💡", "bomb": "💣", "sleepingSymbol": "💤",
    "crossMark": "❌", "whiteHeavyCheckMark": "✅", "eyes": "👀", "handshake": "🤝",
    "hundredPoints": "💯",
}  # fmt: skip

REACTION_CODES: tuple[str, ...] = tuple(REACTIONS)

_BY_FOLDED = {code.casefold(): code for code in REACTION_CODES}
_BY_EMOJI = {emoji: code for code, emoji in REACTIONS.items()}

# Left out before the lookup: text/emoji presentation selectors (❤ and ❤️ are one emoji)
# and the five skin-tone modifiers (👍🏽 is 👍).
_IGNORED = frozenset({0xFE0E, 0xFE0F, *range(0x1F3FB, 0x1F400)})
_ZWJ = "\u200d"
# A ZWJ sequence of an emoji and a gender sign is the same gesture by a man or a woman
# (🤦‍♂️ is 🤦); any other sequence (❤️‍🔥) is an emoji of its own, with no reaction.
_GENDER_SIGNS = frozenset({"\u2640", "\u2642"})


def canonical(code: str) -> str | None:
    """The documented spelling of `code` (matched without regard to case), or None."""
    return _BY_FOLDED.get(code.strip().casefold())


def suggest(code: str) -> str | None:
    """The closest documented code, for an 'unknown reaction' message."""
    close = difflib.get_close_matches(code.strip().casefold(), list(_BY_FOLDED), n=1, cutoff=0.75)
    return _BY_FOLDED[close[0]] if close else None


def bare_emoji(text: str) -> str:
    """`text` without what does not change which emoji it is: spaces around, variation
    selectors, skin tones, and a gender sign joined on by ZWJ."""
    bare = "".join(ch for ch in text.strip() if ord(ch) not in _IGNORED)
    base, *joined = bare.split(_ZWJ)
    if joined and all(part in _GENDER_SIGNS for part in joined):
        return base
    return bare


def from_emoji(text: str) -> str | None:
    """The reaction code of the emoji in `text` (👍 -> like, ❤️ -> redHeart), or None."""
    return _BY_EMOJI.get(bare_emoji(text))


def looks_like_emoji(text: str) -> bool:
    """Whether `text` holds a pictograph or symbol (an emoji), not a code's letters."""
    return any(unicodedata.category(ch) == "So" or ord(ch) in _IGNORED for ch in text)


__all__ = [
    "REACTIONS",
    "REACTION_CODES",
    "bare_emoji",
    "canonical",
    "from_emoji",
    "looks_like_emoji",
    "suggest",
]
