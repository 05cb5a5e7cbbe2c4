"""The one table of reactions: 48 documented codes, each with the emoji the portal shows.

Each code is the camelCase of its emoji's Unicode name where that rule holds; the other
codes are listed here with the name Unicode gives their character, so the table cannot drift
from either source without a test saying which line.
"""

from __future__ import annotations

import re
import unicodedata
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cleanup.inputs.reactions import (
    REACTION_CODES,
    REACTIONS,
    bare_emoji,
    canonical,
    from_emoji,
    looks_like_emoji,
)

# The protocol sheet's section 3 (the Reaction.add page's list), as written there.
SECTION_3 = (
    "`like` `dislike` `faceWithTearsOfJoy` `redHeart` `neutralFace` `fire` `cry` "
    "`slightlySmilingFace` `winkingFace` `laugh` `kiss` `wonder` "
    "`slightlyFrowningFace` `loudlyCryingFace` `faceWithStuckOutTongue` "
    "`faceWithStuckOutTongueAndWinkingEye` `smilingFaceWithSunglasses` `confusedFace` "
    "`flushedFace` `thinkingFace` `angry` `smilingFaceWithHorns` `faceWithThermometer` "
    "`facepalm` `poo` `flexedBiceps` `clappingHands` `raisedHand` "
    "`smilingFaceWithHeartEyes` `smilingFaceWithHearts` `pleadingFace` `relievedFace` "
    "`foldedHands` `okHand` `signHorns` `loveYouGesture` `clownFace` `partyingFace` "
    "`questionMark` `exclamationMark` `lightBulb` `bomb` `sleepingSymbol` `crossMark` "
    "`whiteHeavyCheckMark` `eyes` `handshake` `hundredPoints` "
)
DOCUMENTED = re.findall(r"`(\w+)`", SECTION_3)

# Codes that are not the camelCase of their character's Unicode name: the name Unicode
# gives (the code follows CLDR's newer short name, or the messenger's older word).
EXCEPTIONS = {
    "like": "THUMBS UP SIGN",
    "dislike": "THUMBS DOWN SIGN",
    "redHeart": "HEAVY BLACK HEART",
    "cry": "CRYING FACE",
    "laugh": "SMILING FACE WITH OPEN MOUTH AND SMILING EYES",
    "kiss": "FACE THROWING A KISS",
    "wonder": "FACE WITH OPEN MOUTH",
    "angry": "ANGRY FACE",
    "facepalm": "FACE PALM",  # camelCase gives facePalm: the portal's code has one capital
    "poo": "PILE OF POO",
    "clappingHands": "CLAPPING HANDS SIGN",
    "smilingFaceWithHeartEyes": "SMILING FACE WITH HEART-SHAPED EYES",
    "smilingFaceWithHearts": "SMILING FACE WITH SMILING EYES AND THREE HEARTS",
    "pleadingFace": "FACE WITH PLEADING EYES",
    "foldedHands": "PERSON WITH FOLDED HANDS",
    "okHand": "OK HAND SIGN",
    "signHorns": "SIGN OF THE HORNS",
    "loveYouGesture": "I LOVE YOU HAND SIGN",
    "partyingFace": "FACE WITH PARTY HORN AND PARTY HAT",
    "questionMark": "BLACK QUESTION MARK ORNAMENT",
    "exclamationMark": "HEAVY EXCLAMATION MARK SYMBOL",
    "lightBulb": "ELECTRIC LIGHT BULB",
    "hundredPoints": "HUNDRED POINTS SYMBOL",
}

SELECTORS = ["\ufe0f", "\ufe0e"]
SKIN_TONES = [chr(c) for c in range(0x1F3FB, 0x1F400)]
GENDERED = ["\u200d\u2640\ufe0f", "\u200d\u2642\ufe0f", "\u200d\u2640", "\u200d\u2642"]


def camel_case(name: str) -> str:
    """`FACE WITH STUCK-OUT TONGUE` -> `faceWithStuckOutTongue`."""
    words = name.replace("-", " ").lower().split()
    return words[0] + "".join(w.capitalize() for w in words[1:])


def test_the_table_holds_the_48_documented_codes_in_order() -> None:
    assert list(REACTIONS) == DOCUMENTED
    assert tuple(DOCUMENTED) == REACTION_CODES
    assert len(DOCUMENTED) == 48
    assert len(set(REACTIONS.values())) == 48  # one emoji, one code


@pytest.mark.parametrize("code", DOCUMENTED)
def test_each_code_is_its_emojis_name_in_camel_case_or_a_listed_exception(code: str) -> None:
    emoji = REACTIONS[code]
    assert len(emoji) == 1, "one code point, written without a variation selector"
    name = unicodedata.name(emoji)
    if code in EXCEPTIONS:
        assert name == EXCEPTIONS[code]
        assert camel_case(name) != code, "the rule holds: drop it from the exceptions"
    else:
        assert camel_case(name) == code


@pytest.mark.parametrize("code", DOCUMENTED)
def test_each_emoji_reads_as_its_code_and_no_code_reads_as_an_emoji(code: str) -> None:
    assert from_emoji(REACTIONS[code]) == code
    assert from_emoji(REACTIONS[code] + "\ufe0f") == code  # as keyboards write ❤️
    assert from_emoji(code) is None
    assert looks_like_emoji(REACTIONS[code])
    assert not looks_like_emoji(code)
    assert canonical(code.upper()) == code


@given(
    code=st.sampled_from(DOCUMENTED),
    marks=st.lists(st.sampled_from(SELECTORS + SKIN_TONES), max_size=3),
    gender=st.sampled_from(["", *GENDERED]),
    spaces=st.tuples(st.sampled_from(["", " ", "\t"]), st.sampled_from(["", " ", "  "])),
)
def test_selectors_skin_tones_and_gender_do_not_change_the_reaction(
    code: str, marks: list[str], gender: str, spaces: tuple[str, str]
) -> None:
    written = spaces[0] + REACTIONS[code] + "".join(marks) + gender + spaces[1]
    assert from_emoji(written) == code
    assert bare_emoji(bare_emoji(written)) == bare_emoji(written)


@given(text=st.text(alphabet=st.characters(max_codepoint=0x7F), max_size=30))
def test_plain_text_is_never_read_as_an_emoji(text: str) -> None:
    assert from_emoji(text) is None
    assert not looks_like_emoji(text)


@pytest.mark.parametrize(
    "written",
    [
        "\u2764\ufe0f\u200d\U0001f525",  # heart on fire: an emoji of its own
        "\U0001f44d\U0001f44d",  # two likes
        "\U0001f44d like",
        "\U0001f389",  # party popper: the portal has no such reaction
        "\u200d\u2642",
        "",
    ],
)
def test_other_emoji_and_sequences_have_no_reaction(written: str) -> None:
    assert from_emoji(written) is None


def test_the_how_to_page_lists_the_table_as_it_is() -> None:
    page = Path(__file__).resolve().parents[2] / "docs" / "how-to" / "spreadsheets.md"
    rows = re.findall(r"^\| `(\w+)` \| (\S+) \| ([A-Z][A-Z -]+) \|$", page.read_text(), re.M)
    assert [(code, emoji) for code, emoji, _ in rows] == list(REACTIONS.items())
    assert all(unicodedata.name(emoji) == name for _, emoji, name in rows)
