"""Read question/answer pairs from the chatterbot corpus or from a user's CSV or JSON Lines file.

Every row that cannot become a pair is counted under a skip reason and its location is logged,
so `ReadResult.skipped` accounts for each row read that is not in `ReadResult.pairs`.
"""

import collections
import csv
import dataclasses
import glob
import hashlib
import json
import os
import unicodedata
from typing import Counter, Dict, Iterator, List, Optional, Tuple

import yaml
from absl import logging

CHATTERBOT_PREFIX = "chatterbot:"
MAX_LOGGED_SKIPS_PER_REASON = 5  # Later skips of the same reason are only counted.

# Skip reasons, the keys of ReadResult.skipped.
MISSING_FIELD = "missing_field"
EMPTY_FIELD = "empty_field"
WRONG_TYPE = "wrong_type"
INVALID_UTF8 = "invalid_utf8"
INVALID_JSON = "invalid_json"
TOO_LONG = "too_long"
DUPLICATE_PAIR = "duplicate_pair"


@dataclasses.dataclass(frozen=True)
class Pair:
    """One (question, answer) row with ids that are stable hashes of the normalized text."""

    question: str
    answer: str
    question_id: int
    answer_id: int


@dataclasses.dataclass
class ReadResult:
    """Pairs read from one source, and the count of rows skipped per reason."""

    pairs: List[Pair]
    rows_read: int
    skipped: Counter[str]


def normalize_text(text: str) -> str:
    """Normalize for identity: Unicode NFKC, lowercase, runs of white space as one space, stripped."""
    return " ".join(unicodedata.normalize("NFKC", text).lower().split())


def text_id(text: str) -> int:
    """Return a stable non-negative int64 id of the normalized text (first 8 bytes of its SHA-256)."""
    digest = hashlib.sha256(normalize_text(text).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF


class _SkipCounter:
    """Count skipped rows per reason and log the first few of each with their location."""

    def __init__(self) -> None:
        self.counts: Counter[str] = collections.Counter()

    def skip(self, reason: str, location: str, detail: str) -> None:
        self.counts[reason] += 1
        if self.counts[reason] <= MAX_LOGGED_SKIPS_PER_REASON:
            logging.warning("Skipped %s (%s): %s", location, reason, detail)
        elif self.counts[reason] == MAX_LOGGED_SKIPS_PER_REASON + 1:
            logging.warning("More rows skipped for %s; only their count is reported from here on.", reason)


def _check_field(row: Dict[str, object], name: str, max_chars: int) -> Tuple[Optional[str], str, str]:
    """Return (text, "", "") for a valid field, else (None, skip reason, detail naming the fix)."""
    if name not in row or row[name] is None:
        return None, MISSING_FIELD, f"field {name!r} is missing; every row needs `question` and `answer`"
    value = row[name]
    if not isinstance(value, str):
        return None, WRONG_TYPE, f"field {name!r} is {type(value).__name__} {value!r:.60}; it must be a string"
    if any("\udc80" <= char <= "\udcff" for char in value):
        return None, INVALID_UTF8, f"field {name!r} is not valid UTF-8; re-encode the file as UTF-8"
    if not value.strip():
        return None, EMPTY_FIELD, f"field {name!r} is empty"
    if len(value) > max_chars:
        return None, TOO_LONG, f"field {name!r} has {len(value)} characters, more than max_field_chars={max_chars}"
    return value, "", ""


def _rows_to_pairs(rows: Iterator[Tuple[str, object]], skips: _SkipCounter, max_chars: int) -> ReadResult:
    """Validate (location, row) items into unique pairs. A row that is not a dict is skipped as wrong_type."""
    pairs: List[Pair] = []
    seen = set()
    rows_read = 0
    for location, row in rows:
        rows_read += 1
        if row is None:
            continue  # The reader already counted this row as skipped.
        if not isinstance(row, dict):
            skips.skip(WRONG_TYPE, location, f"row is {type(row).__name__}, expected an object with question and answer")
            continue

        question, reason, detail = _check_field(row, "question", max_chars)
        if question is not None:
            answer, reason, detail = _check_field(row, "answer", max_chars)
        if question is None or answer is None:
            skips.skip(reason, location, detail)
            continue

        pair = Pair(question, answer, text_id(question), text_id(answer))
        if (pair.question_id, pair.answer_id) in seen:
            skips.skip(DUPLICATE_PAIR, location, "same normalized question and answer as an earlier row")
            continue
        seen.add((pair.question_id, pair.answer_id))
        pairs.append(pair)
    return ReadResult(pairs, rows_read, skips.counts)


def chatterbot_data_dir() -> str:
    """Return the data folder of the installed chatterbot-corpus package."""
    import chatterbot_corpus  # pylint: disable=import-outside-toplevel

    return os.path.join(os.path.dirname(chatterbot_corpus.__file__), "data")


def chatterbot_languages() -> List[str]:
    return sorted(name for name in os.listdir(chatterbot_data_dir())
                  if os.path.isdir(os.path.join(chatterbot_data_dir(), name)))


def _chatterbot_rows(language: str, skips: _SkipCounter) -> Iterator[Tuple[str, object]]:
    """Yield one row per answer: the first line of a conversation is the question, each later line an answer."""
    folder = os.path.join(chatterbot_data_dir(), language)
    if not os.path.isdir(folder):
        raise ValueError(f"Chatterbot language {language!r} not found: use one of {', '.join(chatterbot_languages())}.")
    for path in sorted(glob.glob(os.path.join(folder, "*.yml"))):
        with open(path, encoding="utf-8") as file:
            document = yaml.safe_load(file) or {}
        for index, conversation in enumerate(document.get("conversations") or []):
            location = f"{language}/{os.path.basename(path)} conversation {index}"
            if not isinstance(conversation, list) or len(conversation) < 2:
                yield location, None
                skips.skip(MISSING_FIELD, location, "a conversation needs a question and at least one answer")
                continue
            # YAML reads bare numbers and booleans as such; in this corpus they are text.
            lines = [str(line) if isinstance(line, (int, float, bool)) else line for line in conversation]
            for answer in lines[1:]:
                yield location, {"question": lines[0], "answer": answer}


def _csv_rows(path: str) -> Iterator[Tuple[str, object]]:
    """Yield CSV rows; quoted fields may span lines. Undecodable bytes surface as INVALID_UTF8 skips."""
    with open(path, encoding="utf-8", errors="surrogateescape", newline="") as file:
        reader = csv.DictReader(file)
        if not reader.fieldnames or not {"question", "answer"} <= set(reader.fieldnames):
            raise ValueError(f"{path}: the CSV header is {reader.fieldnames}; it must name `question` and `answer`.")
        for row in reader:
            yield f"{path}:{reader.line_num}", row


def _jsonl_rows(path: str, skips: _SkipCounter) -> Iterator[Tuple[str, object]]:
    """Yield one parsed object per non-blank line of a JSON Lines file."""
    with open(path, "rb") as file:
        for line_number, raw_line in enumerate(file, start=1):
            location = f"{path}:{line_number}"
            if not raw_line.strip():
                continue
            try:
                line = raw_line.decode("utf-8")
            except UnicodeDecodeError as error:
                yield location, None
                skips.skip(INVALID_UTF8, location, f"{error}; re-encode the file as UTF-8")
                continue
            try:
                yield location, json.loads(line)
            except json.JSONDecodeError as error:
                yield location, None
                skips.skip(INVALID_JSON, location, f"{error.msg} at column {error.colno}")


def read_pairs(corpus: str = "chatterbot:english", data: str = "", max_field_chars: int = 5000) -> ReadResult:
    """Read pairs from `data` (a .csv, .jsonl or .json file) if given, else from the named corpus."""
    skips = _SkipCounter()
    if data:
        if not os.path.isfile(data):
            raise FileNotFoundError(f"Data file {data!r} not found: pass a CSV or JSON Lines file with --data.")
        extension = os.path.splitext(data)[1].lower()
        if extension == ".csv":
            rows = _csv_rows(data)
        elif extension in (".jsonl", ".json"):
            rows = _jsonl_rows(data, skips)
        else:
            raise ValueError(f"Data file {data!r} has an unsupported extension: use .csv, .jsonl or .json (JSON Lines).")
    elif corpus.startswith(CHATTERBOT_PREFIX):
        rows = _chatterbot_rows(corpus[len(CHATTERBOT_PREFIX):], skips)
    else:
        raise ValueError(f"Corpus {corpus!r} is not supported: use chatterbot:<language>, e.g. chatterbot:english.")

    result = _rows_to_pairs(rows, skips, max_field_chars)
    if not result.pairs:
        raise ValueError(f"No valid question/answer pairs in {data or corpus}: {dict(result.skipped)} rows skipped.")
    return result

