"""Validate raw rows, a chunk at a time, and find exact duplicates across the whole input.

The checks are vectorised (pyarrow compute, numpy) so that a million-row dry run costs
about as much as reading the file; only rows that fail a check are looked at one by one,
to write their reason.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from .inputs import RawChunk
from .reactions import REACTION_CODES, suggest
from .results import RowResult, Status

MAX_REACTION_LENGTH = 100
# The portal substitutes these inside batch command values even when URL-encoded.
_BATCH_PLACEHOLDERS = ("$result[", "$next[", "$total[", "$time[", "$error[")
# 18 significant digits stay inside int64; leading zeros are allowed; Excel writes 12 as 12.0
_ID_PATTERN = r"^0*\d{1,18}(\.0*)?$"

INVALID_BOT_ID = "INVALID_BOT_ID"
INVALID_MESSAGE_ID = "INVALID_MESSAGE_ID"
INVALID_REACTION = "INVALID_REACTION"
INVALID_ROW = "INVALID_ROW"
NO_BOT_TOKEN = "NO_BOT_TOKEN"


@dataclass(frozen=True, slots=True)
class Row:
    """A valid row to send: typed values plus the text as given, for the report."""

    row: int
    bot_id: int
    message_id: int
    reaction: str
    given: tuple[str, str, str]

    def result(
        self, status: Status, error: str = "", description: str = "", attempts: int = 0
    ) -> RowResult:
        return RowResult(self.row, *self.given, status, error, description, attempts)


@dataclass
class CheckedChunk:
    """A chunk after validation. Rows are either valid and first (to send) or carry a result."""

    first_row: int
    given: tuple[pa.Array, pa.Array, pa.Array]
    bot_id: np.ndarray
    message_id: np.ndarray
    reaction: pa.Array  # canonical spelling where known
    invalid: np.ndarray  # bool
    duplicate_of: np.ndarray  # first row's number, 0 where not a duplicate
    problems: dict[int, tuple[str, str]]  # index -> (error, description)

    def __len__(self) -> int:
        return len(self.bot_id)

    @property
    def n_invalid(self) -> int:
        return int(self.invalid.sum())

    @property
    def n_duplicate(self) -> int:
        return int((self.duplicate_of > 0).sum())

    @property
    def n_to_send(self) -> int:
        return len(self) - self.n_invalid - self.n_duplicate

    def items(self) -> Iterator[Row | RowResult]:
        """Each row in order: a `Row` to send, or the final result of an invalid/duplicate row."""
        given = [a.to_pylist() for a in self.given]
        reactions = self.reaction.to_pylist()
        bots, msgs, dups = (
            self.bot_id.tolist(),
            self.message_id.tolist(),
            self.duplicate_of.tolist(),
        )
        invalid = self.invalid.tolist()
        for i in range(len(bots)):
            row = self.first_row + i
            text = (given[0][i], given[1][i], given[2][i])
            if invalid[i]:
                error, description = self.problems[i]
                yield RowResult(row, *text, Status.INVALID, error, description)
            elif dups[i]:
                yield RowResult(row, *text, Status.DUPLICATE, "", f"duplicate of row {dups[i]}")
            else:
                yield Row(row, bots[i], msgs[i], reactions[i], text)


class Validator:
    """Checks rows against the documented rules; remembers every key seen, for duplicates.

    `bot_tokens` is None when tokens are not needed (OAuth, or a dry run without
    credentials); otherwise a row whose bot has no token is invalid.
    """

    def __init__(
        self,
        *,
        allow_unknown_reactions: bool = False,
        bot_tokens: Mapping[int, str] | None = None,
    ) -> None:
        self.allow_unknown = allow_unknown_reactions
        self.token_bots = None if bot_tokens is None else pa.array(sorted(bot_tokens), pa.int64())
        self._dedup = _Deduplicator()
        folded = pa.array([c.casefold() for c in REACTION_CODES])
        self._folded_codes = folded
        self._codes = pa.array(REACTION_CODES)

    def check(self, chunk: RawChunk) -> CheckedChunk:
        n = len(chunk)
        problems: dict[int, list[tuple[str, str]]] = {}
        bot_id = self._ids(chunk.bot_id, "botId", INVALID_BOT_ID, problems)
        message_id = self._ids(chunk.message_id, "messageId", INVALID_MESSAGE_ID, problems)
        reaction = self._reactions(chunk.reaction, problems)
        if chunk.problem is not None:
            for i in _indices(pc.is_valid(chunk.problem)):
                problems.setdefault(i, []).insert(0, (INVALID_ROW, chunk.problem[i].as_py()))
        if self.token_bots is not None:
            has_token = pc.is_in(pa.array(bot_id), value_set=self.token_bots).to_numpy(
                zero_copy_only=False
            )
            for i in np.flatnonzero(~has_token & (bot_id > 0)).tolist():
                problems.setdefault(i, []).append(
                    (NO_BOT_TOKEN, f"botId: no botToken for bot {bot_id[i]} in the bot tokens file")
                )
        invalid = np.zeros(n, dtype=bool)
        if problems:
            invalid[list(problems)] = True
        rows = np.arange(chunk.first_row, chunk.first_row + n, dtype=np.int64)
        duplicate_of = self._dedup.mark(rows, bot_id, message_id, reaction, invalid)
        merged = {i: (found[0][0], "; ".join(d for _, d in found)) for i, found in problems.items()}
        given = (chunk.bot_id, chunk.message_id, chunk.reaction)
        return CheckedChunk(
            chunk.first_row, given, bot_id, message_id, reaction, invalid, duplicate_of, merged
        )

    def _ids(
        self, arr: pa.Array, column: str, code: str, problems: dict[int, list[tuple[str, str]]]
    ) -> np.ndarray:
        text = pc.utf8_trim_whitespace(arr)
        ok = pc.match_substring_regex(text, _ID_PATTERN)
        digits = pc.if_else(ok, pc.replace_substring_regex(text, r"\.0*$", ""), "0")
        values = pc.cast(digits, pa.int64()).to_numpy(zero_copy_only=False).copy()
        bad = values <= 0
        for i in np.flatnonzero(bad).tolist():
            raw = arr[i].as_py()
            if not raw.strip():
                why = f"{column}: value is empty"
            elif (
                values[i] == 0 and pc.match_substring_regex(text[i : i + 1], _ID_PATTERN)[0].as_py()
            ):
                why = f"{column}: {raw.strip()!r} is not a positive integer (ids start at 1)"
            else:
                why = f"{column}: {_clip(raw)!r} is not a positive integer"
            problems.setdefault(i, []).append((code, why))
        values[bad] = 0
        return values

    def _reactions(self, arr: pa.Array, problems: dict[int, list[tuple[str, str]]]) -> pa.Array:
        text = pc.utf8_trim_whitespace(arr)
        index = pc.index_in(pc.utf8_lower(text), value_set=self._folded_codes)
        canonical = pc.take(self._codes, index)
        known = pc.is_valid(index)
        if pc.all(known).as_py():
            return canonical
        result = pc.if_else(known, canonical, text)
        for i in _indices(pc.invert(known)):
            value = text[i].as_py()
            why = self._unknown_reason(value)
            if why:
                problems.setdefault(i, []).append((INVALID_REACTION, why))
        return result

    def _unknown_reason(self, value: str) -> str | None:
        if not value:
            return "reaction: value is empty"
        if not self.allow_unknown:
            hint = suggest(value)
            tip = (
                f" (did you mean {hint!r}?)"
                if hint
                else " (use --allow-unknown-reactions if the portal has it)"
            )
            return f"reaction: {_clip(value)!r} is not a documented reaction code{tip}"
        if len(value) > MAX_REACTION_LENGTH:
            return f"reaction: {len(value)} characters is too long for a reaction code"
        if any(p in value for p in _BATCH_PLACEHOLDERS):
            return f"reaction: {_clip(value)!r} contains a batch placeholder the portal would substitute"
        return None


class _Deduplicator:
    """Exact duplicates of (botId, messageId, reaction) across all chunks; the first row wins.

    Keys are hashed to 64 bits to stay vectorised; a hash match is confirmed against the
    first row's actual values before a row is called a duplicate.
    """

    def __init__(self) -> None:
        self._hashes = np.empty(0, dtype=np.uint64)  # sorted
        self._first_rows = np.empty(0, dtype=np.int64)  # aligned with _hashes
        # Per chunk: the valid rows' numbers and values, to confirm a hash match exactly.
        self._seen: list[tuple[np.ndarray, np.ndarray, np.ndarray, pa.Array]] = []

    def mark(
        self,
        rows: np.ndarray,
        bot_id: np.ndarray,
        message_id: np.ndarray,
        reaction: pa.Array,
        invalid: np.ndarray,
    ) -> np.ndarray:
        """The first row's number for each duplicate row, 0 elsewhere."""
        out = np.zeros(len(rows), dtype=np.int64)
        valid = np.flatnonzero(~invalid)
        if len(valid) == 0:
            return out
        b, m, r = bot_id[valid], message_id[valid], pc.take(reaction, pa.array(valid))
        uniq, first_idx, inverse = np.unique(_hash(b, m, r), return_index=True, return_inverse=True)
        first_here = rows[valid[first_idx]]
        if len(self._hashes):
            pos = np.minimum(np.searchsorted(self._hashes, uniq), len(self._hashes) - 1)
            earlier = self._hashes[pos] == uniq
            first_of_hash = np.where(earlier, self._first_rows[pos], first_here)
        else:
            earlier = np.zeros(len(uniq), dtype=bool)
            first_of_hash = first_here
        self._seen.append((rows[valid], b, m, r))
        first_for_row = first_of_hash[inverse]
        for j in np.flatnonzero(first_for_row != rows[valid]).tolist():
            key = (int(b[j]), int(m[j]), r[j].as_py())
            if self._key_of(int(first_for_row[j])) == key:
                out[valid[j]] = first_for_row[j]
        new = ~earlier
        if new.any():
            hashes = np.concatenate([self._hashes, uniq[new]])
            firsts = np.concatenate([self._first_rows, first_here[new]])
            order = np.argsort(hashes, kind="stable")
            self._hashes, self._first_rows = hashes[order], firsts[order]
        return out

    def _key_of(self, row: int) -> tuple[int, int, str] | None:
        for rows, b, m, r in self._seen:
            if rows[0] <= row <= rows[-1]:
                j = int(np.searchsorted(rows, row))
                if rows[j] == row:
                    return int(b[j]), int(m[j]), r[j].as_py()
        return None


def _hash(b: np.ndarray, m: np.ndarray, r: pa.Array) -> np.ndarray:
    hb = pd.util.hash_array(b.astype(np.int64))
    hm = pd.util.hash_array(m.astype(np.int64), hash_key="0123456789abcdef")
    # Reactions are few distinct strings: hash the dictionary, not every value.
    codes = pc.dictionary_encode(r)
    hr_dict = pd.util.hash_array(
        np.asarray(codes.dictionary.to_pylist(), dtype=object), hash_key="fedcba9876543210"
    )
    hr = hr_dict[codes.indices.to_numpy(zero_copy_only=False)]
    with np.errstate(over="ignore"):
        return hb * np.uint64(0x9E3779B97F4A7C15) ^ hm ^ (hr * np.uint64(0xC2B2AE3D27D4EB4F))


def _indices(mask: pa.Array) -> list[int]:
    return np.flatnonzero(mask.to_numpy(zero_copy_only=False)).tolist()


def _clip(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"
