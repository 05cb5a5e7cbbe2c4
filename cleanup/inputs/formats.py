"""Input file names: which endings the readers take and the format each one means.

The one table for every place that looks at an input's name: the readers (after the file's
first bytes, which win), the inbox (which files it picks up), and the default report name
(which ending it drops). A compound ending such as `.csv.gz` counts as one.
"""

from __future__ import annotations

INPUT_SUFFIXES: dict[str, str] = {
    ".csv": "csv",
    ".csv.gz": "csv.gz",
    ".tsv": "tsv",
    ".tsv.gz": "tsv.gz",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
    ".parquet": "parquet",
    ".pq": "parquet",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}


def input_suffix(name: str) -> str | None:
    """The ending of `name` that the table knows (longest first, any case), else None."""
    lower = name.lower()
    for ext in sorted(INPUT_SUFFIXES, key=len, reverse=True):
        if lower.endswith(ext):
            return ext
    return None


def split_input_suffix(name: str) -> tuple[str, str]:
    """`rows.csv.gz` -> (`rows`, `.csv.gz`); a name the table does not know loses its last
    suffix only (`rows.txt` -> (`rows`, `.txt`))."""
    ext = input_suffix(name)
    if ext is not None:
        return name[: -len(ext)], name[-len(ext) :]
    stem, dot, last = name.rpartition(".")
    return (stem, dot + last) if dot and stem else (name, "")


__all__ = ["INPUT_SUFFIXES", "input_suffix", "split_input_suffix"]
