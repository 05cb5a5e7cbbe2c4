"""Validate raw rows, a chunk at a time, and find exact duplicates across the whole input.

The checks are vectorised (pyarrow compute, numpy) so that a million-row dry run costs
about as much as reading the file: ids take a fast path for plain digits (the full rule runs
only on the rest), reactions are checked once per distinct value, and duplicates are found
by sorting 64-bit keys. Only rows that fail a check are looked at one by one, to write
their reason.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from cleanup.inputs.links import MESSAGE_PARAM, is_link, message_of_link
from cleanup.inputs.reactions import REACTION_CODES, from_emoji, looks_like_emoji, suggest
from cleanup.inputs.readers import RawChunk
from cleanup.results import RowResult, Status

MAX_REACTION_LENGTH = 100
# The portal substitutes these inside batch command values even when URL-encoded.
_BATCH_PLACEHOLDERS = ("$result[", "$next[", "$total[", "$time[", "$error[")
# 18 significant digits stay inside int64; leading zeros are allowed; Excel writes 12 as 12.0
_ID_PATTERN = r"^0*\d{1,18}(\.0*)?$"
_ID_RE = re.compile(_ID_PATTERN)
_PLAIN_ID_DIGITS = 18  # up to 18 plain digits is always below 10**18: no regex needed

INVALID_BOT_ID = "INVALID_BOT_ID"
INVALID_MESSAGE_ID = "INVALID_MESSAGE_ID"
INVALID_REACTION = "INVALID_REACTION"
INVALID_ROW = "INVALID_ROW"
NO_BOT_TOKEN = "NO_BOT_TOKEN"


@dataclass(frozen=True, slots=True)
class Row:
    """A valid row to send: typed values plus the text as given, for the report, and what
    a cell was read as when that is not the text itself (an emoji, a link)."""

    row: int
    bot_id: int
    message_id: int
    reaction: str
    given: tuple[str, str, str]
    note: str = ""

    def result(
        self,
        status: Status,
        error: str = "",
        description: str = "",
        attempts: int = 0,
        given_up: bool = False,
    ) -> RowResult:
        described = with_note(description, self.note)
        return RowResult(self.row, *self.given, status, error, described, attempts, given_up)


def with_note(description: str, note: str) -> str:
    """A row's description, then what its cells were read as (once: a result read back
    from the journal on --resume has it already)."""
    if not note or note in description:
        return description
    return f"{description}; {note}" if description else note


@dataclass
class CheckedChunk:
    """A chunk after validation. Rows are either valid and first (to send) or carry a result."""

    first_row: int
    rows: np.ndarray  # each row's number (ascending; gaps where rows were left out)
    given: tuple[pa.Array, pa.Array, pa.Array]
    bot_id: np.ndarray
    message_id: np.ndarray
    reaction: pa.Array  # canonical spelling where known (dictionary-encoded)
    invalid: np.ndarray  # bool
    duplicate_of: np.ndarray  # first row's number, 0 where not a duplicate
    problems: dict[int, tuple[str, str]]  # index -> (error, description)
    notes: dict[int, str] = field(default_factory=dict)  # index -> what a cell was read as

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

    def row_at(self, index: int) -> int:
        return int(self.rows[index])

    def as_planned(self) -> Iterator[RowResult]:
        """Each row's line in a dry run's report: invalid, duplicate, or to_send."""
        for item in self.items():
            yield item.result(Status.TO_SEND) if isinstance(item, Row) else item

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
        notes = self.notes
        for i, row in enumerate(self.rows.tolist()):
            text = (given[0][i], given[1][i], given[2][i])
            note = notes.get(i, "") if notes else ""
            if invalid[i]:
                error, description = self.problems[i]
                yield RowResult(row, *text, Status.INVALID, error, with_note(description, note))
            elif dups[i]:
                why = with_note(f"duplicate of row {dups[i]}", note)
                yield RowResult(row, *text, Status.DUPLICATE, "", why)
            else:
                yield Row(row, bots[i], msgs[i], reactions[i], text, note)


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
        notes: dict[int, list[str]] = {}
        bot_id = self._ids(chunk.bot_id, "botId", INVALID_BOT_ID, problems)
        message_id = self._ids(
            chunk.message_id, "messageId", INVALID_MESSAGE_ID, problems, links=notes
        )
        reaction = self._reactions(chunk.reaction, problems, notes)
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
        rows = chunk.row_numbers()
        duplicate_of = self._dedup.mark(rows, bot_id, message_id, reaction, invalid)
        merged = {i: (found[0][0], "; ".join(d for _, d in found)) for i, found in problems.items()}
        given = (chunk.bot_id, chunk.message_id, chunk.reaction)
        return CheckedChunk(
            chunk.first_row,
            rows,
            given,
            bot_id,
            message_id,
            reaction,
            invalid,
            duplicate_of,
            merged,
            {i: "; ".join(found) for i, found in notes.items()},
        )

    def _ids(
        self,
        arr: pa.Array,
        column: str,
        code: str,
        problems: dict[int, list[tuple[str, str]]],
        links: dict[int, list[str]] | None = None,
    ) -> np.ndarray:
        """The ids of a column, 0 where a cell is not one (its reason in `problems`). With
        `links`, a cell holding a message's link is read as its IM_MESSAGE, noted there."""
        if arr.null_count:
            arr = pc.fill_null(arr, "")
        # Nearly every id in a real file is plain ASCII digits, at most 18 of them: those
        # are cast directly. The full rule (spaces, Excel's 12.0, leading zeros) runs only
        # on the other rows.
        plain = pc.and_(
            pc.ascii_is_decimal(arr), pc.less_equal(pc.binary_length(arr), _PLAIN_ID_DIGITS)
        ).to_numpy(zero_copy_only=False)
        if plain.all():
            values = pc.cast(arr, pa.int64()).to_numpy(zero_copy_only=False).copy()
        else:
            values = np.zeros(len(arr), dtype=np.int64)
            easy = np.flatnonzero(plain)
            if len(easy):
                values[easy] = pc.cast(pc.take(arr, pa.array(easy)), pa.int64()).to_numpy(
                    zero_copy_only=False
                )
            rest = np.flatnonzero(~plain)
            values[rest] = _ids_by_rule(pc.take(arr, pa.array(rest)))
        bad = values <= 0
        for i in np.flatnonzero(bad).tolist():
            raw = arr[i].as_py()
            text = raw.strip()
            if links is not None and is_link(text):
                found, note = _id_of_link(text)
                if found:
                    values[i], bad[i] = found, False
                    links.setdefault(i, []).append(note)
                else:
                    problems.setdefault(i, []).append((code, f"{column}: {note}"))
                continue
            if not text:
                why = f"{column}: value is empty"
            elif values[i] == 0 and _ID_RE.match(text):
                why = f"{column}: {text!r} is not a positive integer (ids start at 1)"
            else:
                why = f"{column}: {_clip(raw)!r} is not a positive integer"
            problems.setdefault(i, []).append((code, why))
        values[bad] = 0
        checked: np.ndarray = values
        return checked

    def _reactions(
        self,
        arr: pa.Array,
        problems: dict[int, list[tuple[str, str]]],
        notes: dict[int, list[str]],
    ) -> pa.Array:
        """The canonical spelling per row, as a dictionary array: a file has few distinct
        reactions, so each is checked once, not once per row. An emoji is read as its code
        (noted per row)."""
        if pa.types.is_dictionary(arr.type):
            encoded = arr
        else:
            encoded = pc.dictionary_encode(pc.fill_null(arr, "") if arr.null_count else arr)
        if encoded.null_count:
            encoded = pc.dictionary_encode(pc.fill_null(encoded.dictionary_decode(), ""))
        text = pc.utf8_trim_whitespace(encoded.dictionary.cast(pa.string()))
        index = pc.index_in(pc.utf8_lower(text), value_set=self._folded_codes)
        known = pc.is_valid(index)
        canonical = pc.if_else(known, pc.take(self._codes, index), text)
        if pc.all(known).as_py():
            return pa.DictionaryArray.from_arrays(encoded.indices, canonical)
        codes = canonical.to_pylist()
        reasons: dict[int, str] = {}
        read_as: dict[int, str] = {}
        for entry in np.flatnonzero(~known.to_numpy(zero_copy_only=False)).tolist():
            value = text[entry].as_py()
            if (code := from_emoji(value)) is not None:
                codes[entry] = code
                read_as[entry] = f"reaction: read {value!r} as {code}"
            elif why := self._unknown_reason(value):
                reasons[entry] = why
        indices = encoded.indices.to_numpy(zero_copy_only=False)
        for entries, add in ((reasons, _add_problem(problems)), (read_as, _add_note(notes))):
            if entries:
                for i in np.flatnonzero(np.isin(indices, list(entries))).tolist():
                    add(i, entries[int(indices[i])])
        return pa.DictionaryArray.from_arrays(encoded.indices, pa.array(codes, pa.string()))

    def _unknown_reason(self, value: str) -> str | None:
        if not value:
            return "reaction: value is empty"
        if looks_like_emoji(value):  # never a code, even with --allow-unknown-reactions
            return (
                f"reaction: {_clip(value)!r} is not an emoji the portal has as a reaction"
                " (give one of its 48 reaction codes or their emoji: see the how-to"
                ' "Spreadsheets, emoji and links")'
            )
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

    Each reaction gets a small integer id, so a key is three integers. Keys are hashed;
    the top 40 bits of the hash go above the row's index in its chunk, so one plain sort
    orders a chunk by hash and says where each row went (cheaper than an argsort), and a
    bitmap of hash prefixes says which hashes may have been seen in earlier chunks (a few
    percent of false alarms); only those are looked up, by binary search, in the sorted
    runs of earlier hashes (one per chunk, merged like a binary counter once there are
    many). A hash match is only a
    candidate: it is confirmed against the first row's actual key, and keys whose hash
    collides with another key's are kept apart in `_collided`, so the result is exact.
    """

    _INDEX_BITS = 24  # 2**24 rows per sorted slice; the other 40 bits hold the hash
    _FILTER_BITS = 25  # a 32 MiB bitmap (one byte per prefix): ~3 % false alarms at 1M keys
    _FEW_RUNS = 4  # runs kept apart before merging starts

    def __init__(self) -> None:
        # Sorted runs of (hashes, first rows); every distinct hash is in exactly one run.
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []
        self._filter: np.ndarray | None = None  # hash prefix -> seen (allocated when needed)
        self._reaction_ids: dict[str, int] = {}
        # Per chunk: first valid row, and its valid rows' numbers and keys (to confirm).
        self._chunk_starts: list[int] = []
        self._seen: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._collided: dict[tuple[int, int, int], int] = {}  # key -> first row

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
        rid = self._reaction_id_per_row(reaction)
        if len(valid) < len(rows):
            rows, bot_id, message_id, rid = (
                rows[valid],
                bot_id[valid],
                message_id[valid],
                rid[valid],
            )
        step = 1 << self._INDEX_BITS
        for lo in range(0, len(rows), step):
            part = slice(lo, lo + step)
            found = self._mark(rows[part], bot_id[part], message_id[part], rid[part])
            out[valid[lo : lo + step]] = found
        return out

    def _mark(
        self, rows: np.ndarray, bot_id: np.ndarray, message_id: np.ndarray, rid: np.ndarray
    ) -> np.ndarray:
        n = len(rows)
        index_mask = np.uint64((1 << self._INDEX_BITS) - 1)
        hash_mask = ~index_mask
        packed = np.sort(
            (_hash(bot_id, message_id, rid) & hash_mask) | np.arange(n, dtype=np.uint64)
        )
        order = (packed & index_mask).astype(np.int64)
        hs = packed & hash_mask
        new_run = np.empty(n, dtype=bool)
        new_run[0] = True
        np.not_equal(hs[1:], hs[:-1], out=new_run[1:])
        all_distinct = bool(new_run.all())
        starts = np.flatnonzero(new_run) if not all_distinct else None
        uniq = hs if starts is None else hs[starts]
        # The first row of each hash in this chunk (rows ascend: the smallest index).
        first_here = rows[order if starts is None else np.minimum.reduceat(order, starts)]
        earlier, first_earlier = self._lookup(uniq)
        any_earlier = bool(earlier.any())
        self._chunk_starts.append(int(rows[0]))
        self._seen.append((rows, bot_id, message_id, rid))
        found = np.zeros(n, dtype=np.int64)
        if starts is not None or any_earlier:  # some hash seen twice: look at those rows
            first_of_hash = (
                np.where(earlier, first_earlier, first_here) if any_earlier else first_here
            )
            run = np.cumsum(new_run) - 1
            first_sorted = first_of_hash[run]
            candidates = np.flatnonzero(first_sorted != rows[order])
            self._confirm(
                order[candidates], first_sorted[candidates], rows, bot_id, message_id, rid, found
            )
        if any_earlier:
            uniq, first_here = uniq[~earlier], first_here[~earlier]
        if len(uniq):
            self._add_run(uniq, first_here)
        return found

    def _lookup(self, uniq: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """For sorted hashes: which were seen before, and their first rows."""
        earlier = np.zeros(len(uniq), dtype=bool)
        first = np.zeros(len(uniq), dtype=np.int64)
        if self._filter is None:
            return earlier, first
        maybe = np.flatnonzero(self._filter[self._prefix(uniq)])
        if len(maybe) == 0:
            return earlier, first
        for hashes, firsts in self._runs:  # each hash is in one run: stop looking once found
            wanted = uniq[maybe]
            pos = np.minimum(np.searchsorted(hashes, wanted), len(hashes) - 1)
            hit = hashes[pos] == wanted
            first[maybe[hit]] = firsts[pos[hit]]
            earlier[maybe[hit]] = True
            maybe = maybe[~hit]
            if len(maybe) == 0:
                break
        return earlier, first

    def _add_run(self, hashes: np.ndarray, firsts: np.ndarray) -> None:
        if self._filter is None:
            self._filter = np.zeros(1 << self._FILTER_BITS, dtype=bool)
        self._filter[self._prefix(hashes)] = True
        self._runs.append((hashes, firsts))
        while len(self._runs) > self._FEW_RUNS and len(self._runs[-2][0]) <= 2 * len(
            self._runs[-1][0]
        ):
            b_hashes, b_firsts = self._runs.pop()
            a_hashes, a_firsts = self._runs.pop()
            self._runs.append(_merge_sorted(a_hashes, a_firsts, b_hashes, b_firsts))

    def _prefix(self, hashes: np.ndarray) -> np.ndarray:
        return (hashes >> np.uint64(64 - self._FILTER_BITS)).astype(np.intp)

    def _confirm(
        self,
        idx: np.ndarray,
        firsts: np.ndarray,
        rows: np.ndarray,
        bot_id: np.ndarray,
        message_id: np.ndarray,
        rid: np.ndarray,
        found: np.ndarray,
    ) -> None:
        """Rows whose hash was seen before: a duplicate if the first row has the same key;
        otherwise (a hash collision) the key is looked up, or recorded, in `_collided`."""
        same = self._same_key(firsts, bot_id[idx], message_id[idx], rid[idx])
        found[idx[same]] = firsts[same]
        for j in np.sort(idx[~same]).tolist():
            key = (int(bot_id[j]), int(message_id[j]), int(rid[j]))
            first = self._collided.setdefault(key, int(rows[j]))
            if first != rows[j]:
                found[j] = first

    def _reaction_id_per_row(self, reaction: pa.Array) -> np.ndarray:
        encoded = (
            reaction if pa.types.is_dictionary(reaction.type) else pc.dictionary_encode(reaction)
        )
        ids = self._reaction_ids
        lookup = np.array(
            [ids.setdefault(v, len(ids)) for v in encoded.dictionary.to_pylist()], dtype=np.int64
        )
        found: np.ndarray = lookup[encoded.indices.to_numpy(zero_copy_only=False)]
        return found

    def _same_key(
        self, firsts: np.ndarray, bot_id: np.ndarray, message_id: np.ndarray, rid: np.ndarray
    ) -> np.ndarray:
        """Whether each first row's key equals the given key (a hash match confirmed)."""
        same = np.zeros(len(firsts), dtype=bool)
        if len(self._seen) == 1:
            chunk_of = np.zeros(len(firsts), dtype=np.intp)
        else:
            chunk_of = np.searchsorted(np.asarray(self._chunk_starts), firsts, side="right") - 1
        for c in np.unique(chunk_of).tolist():
            pick = np.flatnonzero(chunk_of == c) if len(self._seen) > 1 else slice(None)
            rows, b, m, r = self._seen[c]
            if rows[-1] - rows[0] + 1 == len(rows):  # no invalid row in between: direct
                j = np.clip(firsts[pick] - rows[0], 0, len(rows) - 1)
            else:
                j = np.minimum(np.searchsorted(rows, firsts[pick]), len(rows) - 1)
            same[pick] = (
                (rows[j] == firsts[pick])
                & (b[j] == bot_id[pick])
                & (m[j] == message_id[pick])
                & (r[j] == rid[pick])
            )
        return same


def _id_of_link(text: str) -> tuple[int, str]:
    """A message link's id and the note saying so, or 0 and why the link gives none."""
    value = message_of_link(text)
    if value is None:
        return 0, (
            f"{_clip(text)!r} is a link without one {MESSAGE_PARAM} (the message's id):"
            " copy the link of the message, not of the chat"
        )
    found = int(re.sub(r"\.0*$", "", value)) if _ID_RE.match(value) else 0
    if found <= 0:
        return 0, f"the link's {MESSAGE_PARAM} {_clip(value)!r} is not a positive integer"
    return found, f"messageId: read as {found} (the link's {MESSAGE_PARAM})"


def _add_problem(problems: dict[int, list[tuple[str, str]]]) -> Callable[[int, str], None]:
    return lambda i, why: problems.setdefault(i, []).append((INVALID_REACTION, why))


def _add_note(notes: dict[int, list[str]]) -> Callable[[int, str], None]:
    return lambda i, note: notes.setdefault(i, []).append(note)


def _ids_by_rule(arr: pa.Array) -> np.ndarray:
    """The full id rule: spaces around, leading zeros and Excel's `12.0` allowed; 0 where
    the text is not a positive integer below 10**18 (the caller writes the reason)."""
    text = pc.utf8_trim_whitespace(arr)
    ok = pc.match_substring_regex(text, _ID_PATTERN)
    digits = pc.if_else(ok, pc.replace_substring_regex(text, r"\.0*$", ""), "0")
    ids: np.ndarray = pc.cast(digits, pa.int64()).to_numpy(zero_copy_only=False)
    return ids


def _merge_sorted(
    a: np.ndarray, a_rows: np.ndarray, b: np.ndarray, b_rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Two sorted hash arrays (with aligned rows) as one, in linear time."""
    at = np.searchsorted(a, b) + np.arange(len(b))
    total = len(a) + len(b)
    from_a = np.ones(total, dtype=bool)
    from_a[at] = False
    hashes = np.empty(total, dtype=np.uint64)
    rows = np.empty(total, dtype=np.int64)
    hashes[at], rows[at] = b, b_rows
    hashes[from_a], rows[from_a] = a, a_rows
    return hashes, rows


def _hash(b: np.ndarray, m: np.ndarray, r: np.ndarray) -> np.ndarray:
    """A 64-bit mix of three integers (splitmix64's finaliser over a combination)."""
    with np.errstate(over="ignore"):
        x = b.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
        x ^= m.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
        x ^= r.astype(np.uint64) * np.uint64(0x165667B19E3779F9)
        x ^= x >> np.uint64(30)
        x *= np.uint64(0xBF58476D1CE4E5B9)
        x ^= x >> np.uint64(27)
        x *= np.uint64(0x94D049BB133111EB)
        x ^= x >> np.uint64(31)
        return x


def _indices(mask: pa.Array) -> list[int]:
    return np.flatnonzero(mask.to_numpy(zero_copy_only=False)).tolist()


def _clip(value: str, limit: int = 60) -> str:
    return value if len(value) <= limit else value[: limit - 1] + "…"
