"""A message given as the link Bitrix24 copies is read as its IM_MESSAGE."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cleanup.inputs.links import is_link, message_of_link

CASES = {
    "online": ("https://portal.example/online/?IM_DIALOG=chat5&IM_MESSAGE=792", "792"),
    "im path": ("https://portal.example/im/?IM_DIALOG=chat5&IM_MESSAGE=792", "792"),
    "message first": ("https://portal.example/online/?IM_MESSAGE=792&IM_DIALOG=5", "792"),
    "fragment after": ("https://portal.example/online/?IM_DIALOG=chat5&IM_MESSAGE=792#top", "792"),
    "in the fragment": ("https://portal.example/online/#IM_DIALOG=chat5&IM_MESSAGE=792", "792"),
    "fragment route": ("https://portal.example/#/im/?IM_DIALOG=chat5&IM_MESSAGE=792", "792"),
    "other params": ("https://portal.example/online/?a=1&IM_MESSAGE=792&utm_source=x", "792"),
    "no scheme": ("portal.example/online/?IM_DIALOG=chat5&IM_MESSAGE=792", "792"),
    "path only": ("/online/?IM_DIALOG=chat5&IM_MESSAGE=792", "792"),
    "spaces": ("  https://portal.example/online/?IM_MESSAGE=792  ", "792"),
    "lower case key": ("https://portal.example/online/?im_message=792", "792"),
    "same id twice": ("https://portal.example/online/?IM_MESSAGE=792#IM_MESSAGE=792", "792"),
    "chat link": ("https://portal.example/online/?IM_DIALOG=chat5", None),
    "two messages": ("https://portal.example/online/?IM_MESSAGE=1&IM_MESSAGE=2", None),
    "bad host": ("https://[portal/online/?IM_MESSAGE=1", None),
}


@pytest.mark.parametrize("text, expected", list(CASES.values()), ids=list(CASES))
def test_message_of_link(text: str, expected: str | None) -> None:
    assert is_link(text)
    assert message_of_link(text) == expected


@pytest.mark.parametrize("text", ["792", " 792 ", "12.0", "abc", "-3", ""])
def test_a_number_or_a_typo_is_not_a_link(text: str) -> None:
    assert not is_link(text)


@given(
    message=st.integers(1, 10**18 - 1),
    others=st.dictionaries(
        st.sampled_from(["IM_DIALOG", "IM_LINE", "utm_source", "a"]),
        st.text(alphabet="abc123&=#?", max_size=6),
        max_size=3,
    ),
    where=st.sampled_from(["query", "fragment", "route"]),
    path=st.sampled_from(["/online/", "/im/", "/", "/messenger/"]),
)
def test_the_id_is_read_wherever_the_link_carries_it(
    message: int, others: dict[str, str], where: str, path: str
) -> None:
    query = urlencode({**others, "IM_MESSAGE": message})
    link = {
        "query": f"https://portal.example{path}?{query}",
        "fragment": f"https://portal.example{path}#{query}",
        "route": f"https://portal.example/#{path}?{query}",
    }[where]
    assert message_of_link(link) == str(message)
