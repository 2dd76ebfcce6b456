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
from typing import Any, Counter, Dict, Iterator, List, Optional, Tuple

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
INVALID_CSV = "invalid_csv"
EXTRA_COLUMNS = "extra_columns"

# Python's csv module raises on fields over 131072 characters by default. This bound is the largest
# value a C long holds on every platform. A field cannot be longer than its file, so one field still
# needs no more memory than the file's size. max_field_chars then skips the long fields.
CSV_FIELD_SIZE_LIMIT = 2**31 - 1
# The csv module of Python 3.10 raises on NUL. The CSV reader swaps each NUL for this code point so
# the row still splits into fields, then skips the row. A UTF-8 decoder with errors="surrogateescape"
# only produces U+DC80 to U+DCFF, so U+DC00 in the text can only come from a NUL byte.
NUL_STANDIN = "\udc00"


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
    if any("\ud800" <= char <= "\udfff" for char in value):
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


def _line_span(path: str, first_line: int, last_line: int) -> str:
    """Return "path:line", or "path:first-last" for a row that spans several lines."""
    if last_line > first_line:
        return f"{path}:{first_line}-{last_line}"
    return f"{path}:{first_line}"


def _csv_header(path: str, reader: Any) -> List[str]:
    """Read and check the header row, and return its column names with white space stripped."""
    try:
        header = next(reader, None)
    except csv.Error as error:
        raise ValueError(f"{path}:1: the CSV header cannot be parsed ({error}). "
                         "The first line must be the header `question,answer`.") from error
    if header is None:
        raise ValueError(f"{path} is empty: the first line must be the header `question,answer`.")
    if any(NUL_STANDIN in name for name in header):
        raise ValueError(f"{path}:1: the CSV header contains NUL bytes. If the file is UTF-16, save it as UTF-8.")

    names = [name.strip() for name in header]
    if not {"question", "answer"} <= set(names):
        hint = ""
        if len(names) == 1:
            for delimiter in (";", "\t", "|"):
                if delimiter in names[0]:
                    hint = (f" The header contains {delimiter!r} but no comma: this reader only splits on commas, "
                            "so save the file as comma-separated.")
                    break
        raise ValueError(f"{path}: the CSV header is {header}; it must name `question` and `answer`.{hint}")
    for name in ("question", "answer"):
        columns = [index + 1 for index, column in enumerate(names) if column == name]
        if len(columns) > 1:
            raise ValueError(f"{path}:1: the CSV header names {name!r} in columns {columns}: "
                             "name each column once.")
    return names


def _csv_rows(path: str, skips: _SkipCounter) -> Iterator[Tuple[str, object]]:
    """Yield CSV rows as dicts keyed by the header, located at the line where each row starts.

    Quoted fields may span lines. A UTF-8 BOM is accepted. Undecodable bytes reach _check_field as
    INVALID_UTF8 skips. A row with a NUL byte, one the csv module cannot parse, or one with text in
    more columns than the header names is skipped. A quoted field still open at the end of the file
    raises ValueError, because the rows after its opening quote cannot be split reliably.
    """
    previous_limit = csv.field_size_limit(CSV_FIELD_SIZE_LIMIT)
    try:
        with open(path, encoding="utf-8-sig", errors="surrogateescape", newline="") as file:
            lines = (line.replace("\0", NUL_STANDIN) for line in file)
            # strict=True makes the reader raise on text after a closing quote and on a quoted field still
            # open at the end of the file. Without it, both are stored silently as changed text.
            reader = csv.reader(lines, strict=True)
            names = _csv_header(path, reader)
            yield from _csv_data_rows(path, reader, names, skips)
    finally:
        csv.field_size_limit(previous_limit)


def _csv_data_rows(path: str, reader: Any, names: List[str],
                   skips: _SkipCounter) -> Iterator[Tuple[str, object]]:
    while True:
        first_line = reader.line_num + 1
        try:
            fields = next(reader)
        except StopIteration:
            return
        except csv.Error as error:
            location = _line_span(path, first_line, reader.line_num)
            # NOTE: csv.Error has no error codes, so this matches the message of Python 3.10's _csv module.
            if "unexpected end of data" in str(error):
                raise ValueError(
                    f"{path}:{first_line}: a quoted field starts on this line and is not closed before the end of "
                    f"the file (line {reader.line_num}), so the rows after it cannot be read. Close the quote, "
                    'and write each " inside a quoted field as "".') from error
            # After an error the csv module resumes at the next line.
            skips.skip(INVALID_CSV, location, f"{error}. Inside a quoted field, write each \" as \"\".")
            yield location, None
            continue

        location = _line_span(path, first_line, reader.line_num)
        if not fields:
            continue  # A blank line is not a row.
        if any(NUL_STANDIN in field for field in fields):
            skips.skip(INVALID_CSV, location, "the row contains a NUL byte: remove it")
            yield location, None
            continue
        extra_fields = fields[len(names):]
        if any(field.strip() for field in extra_fields):
            skips.skip(EXTRA_COLUMNS, location,
                       f"the row has {len(fields)} fields but the header names {len(names)} columns. "
                       'Put double quotes around fields that contain commas, e.g. "a, b"')
            yield location, None
            continue
        # A short row lacks the last keys, which _check_field reports as missing_field.
        yield location, dict(zip(names, fields))


def _lone_surrogate_detail(row: object) -> str:
    """Return a skip detail if the question or answer of a parsed JSON row contains a lone surrogate, else "".

    Python's json module decodes an unpaired escape such as \\ud800 to a lone surrogate, which is not a
    valid character and cannot be encoded as UTF-8.
    """
    if not isinstance(row, dict):
        return ""
    for name in ("question", "answer"):
        value = row.get(name)
        if not isinstance(value, str):
            continue
        for char in value:
            if "\ud800" <= char <= "\udfff":
                return (f"field {name!r} contains the escape \\u{ord(char):04x}, a UTF-16 surrogate without its "
                        "pair, which is not a valid character. Remove it or write the intended character")
    return ""


def _jsonl_rows(path: str, skips: _SkipCounter) -> Iterator[Tuple[str, object]]:
    """Yield one parsed object per non-blank line of a JSON Lines file."""
    with open(path, "rb") as file:
        for line_number, raw_line in enumerate(file, start=1):
            location = f"{path}:{line_number}"
            if not raw_line.strip():
                continue
            if line_number == 1 and raw_line.startswith(b"\xef\xbb\xbf"):
                raw_line = raw_line[3:]  # A UTF-8 BOM.
            try:
                line = raw_line.decode("utf-8")
            except UnicodeDecodeError as error:
                skips.skip(INVALID_UTF8, location, f"{error}; re-encode the file as UTF-8")
                yield location, None
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as error:
                skips.skip(INVALID_JSON, location, f"{error.msg} at column {error.colno}")
                yield location, None
                continue
            yield location, _without_lone_surrogates(row, location, skips)


def _without_lone_surrogates(row: object, location: str, skips: _SkipCounter) -> object:
    """Return `row`, or None after counting an INVALID_UTF8 skip if a field has a lone surrogate escape."""
    detail = _lone_surrogate_detail(row)
    if detail:
        skips.skip(INVALID_UTF8, location, detail)
        return None
    return row


def _starts_with_array(path: str) -> bool:
    """Return whether the first character after a UTF-8 BOM and white space is "["."""
    with open(path, "rb") as file:
        chunk = file.read(65536)
        if chunk.startswith(b"\xef\xbb\xbf"):
            chunk = chunk[3:]
        while chunk:
            text = chunk.lstrip()
            if text:
                return text.startswith(b"[")
            chunk = file.read(65536)
    return False


def _json_array_rows(path: str, skips: _SkipCounter) -> Iterator[Tuple[str, object]]:
    """Yield the items of a file that contains one JSON array, located by their index from 0.

    The file is one JSON document, so invalid UTF-8 or invalid JSON anywhere raises ValueError
    instead of skipping a row.
    """
    with open(path, "rb") as file:
        raw = file.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        line = raw.count(b"\n", 0, error.start) + 1
        raise ValueError(f"{path}:{line}: byte 0x{raw[error.start]:02x} is not valid UTF-8: "
                         "re-encode the file as UTF-8.") from error
    try:
        items = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{error.lineno}:{error.colno}: invalid JSON ({error.msg}). The file starts with '[', "
                         "so it is read as one JSON array of objects: fix the JSON, or write one object per line "
                         "(JSON Lines).") from error

    for index, row in enumerate(items):
        location = f"{path}: array item {index}"
        yield location, _without_lone_surrogates(row, location, skips)


def read_pairs(corpus: str = "chatterbot:english", data: str = "", max_field_chars: int = 5000) -> ReadResult:
    """Read pairs from `data` if given, else from the named corpus.

    `data` is a .csv file with a `question,answer` header, a .jsonl file, or a .json file that contains
    either JSON Lines or one JSON array of objects.
    """
    if max_field_chars < 1:
        raise ValueError(f"max_field_chars={max_field_chars} is invalid: use a positive number of characters.")
    skips = _SkipCounter()
    if data:
        if not os.path.isfile(data):
            raise FileNotFoundError(f"Data file {data!r} not found: pass a CSV or JSON Lines file with --data.")
        extension = os.path.splitext(data)[1].lower()
        if extension == ".csv":
            rows = _csv_rows(data, skips)
        elif extension == ".json" and _starts_with_array(data):
            rows = _json_array_rows(data, skips)
        elif extension in (".jsonl", ".json"):
            rows = _jsonl_rows(data, skips)
        else:
            raise ValueError(f"Data file {data!r} has an unsupported extension: use .csv, .jsonl or .json "
                             "(JSON Lines, or one JSON array of objects).")
    elif corpus.startswith(CHATTERBOT_PREFIX):
        rows = _chatterbot_rows(corpus[len(CHATTERBOT_PREFIX):], skips)
    else:
        raise ValueError(f"Corpus {corpus!r} is not supported: use chatterbot:<language>, e.g. chatterbot:english.")

    result = _rows_to_pairs(rows, skips, max_field_chars)
    if not result.rows_read:
        raise ValueError(f"No question/answer rows in {data or corpus}: the file is empty or has only blank lines "
                         "(and, in a CSV file, the header).")
    if not result.pairs:
        hint = ""
        if data and result.skipped.get(INVALID_JSON):
            hint = (" A .jsonl or .json file must contain one JSON object per line (JSON Lines), but a .json file "
                    "may instead contain one JSON array of objects.")
        raise ValueError(f"No valid question/answer pairs in {data or corpus}: {dict(result.skipped)} rows skipped."
                         + hint)
    return result
