"""The answer bank of a served model: loading, embedding cache and cosine ranking.

Answer embeddings depend on the model version and the bank contents, so the cache key is
model name + version + SHA-256 of the bank file. A new version or a changed bank gets a
new cache file; old files stay until the cache directory is cleared.
"""

import dataclasses
import hashlib
import json
import os
import tempfile
from typing import List, Sequence

import numpy as np
from absl import logging

ANSWER_BANK_RELATIVE_PATH = os.path.join("assets.extra", "answer_bank.jsonl")
DEFAULT_CACHE_DIR = os.path.join("~", ".cache", "faq-pipeline")
DEFAULT_BATCH_SIZE = 256


@dataclasses.dataclass(frozen=True)
class BankEntry:
    answer_id: int
    answer: str


@dataclasses.dataclass(frozen=True)
class RankedAnswer:
    answer_id: int
    answer: str
    score: float


def default_answer_bank_path(model_base_path: str, version: int) -> str:
    return os.path.join(model_base_path, str(version), ANSWER_BANK_RELATIVE_PATH)


def load_answer_bank(path: str) -> List[BankEntry]:
    """Read answer_bank.jsonl, raising ValueError that names the line of any malformed entry."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Answer bank {path} not found; pass --answer_bank or point --model_base_path at the "
            "pushed model folder whose versions contain assets.extra/answer_bank.jsonl."
        )

    entries = []
    with open(path, encoding="utf-8") as bank_file:
        for line_number, line in enumerate(bank_file, start=1):
            if not line.strip():
                continue
            entries.append(_parse_entry(path, line_number, line))
    if not entries:
        raise ValueError(f"Answer bank {path} has no entries; it needs one JSON object per line.")
    return entries


def _parse_entry(path: str, line_number: int, line: str) -> BankEntry:
    try:
        row = json.loads(line)
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}:{line_number} is not valid JSON: {error}") from error

    if (
        not isinstance(row, dict)
        or not isinstance(row.get("answer_id"), int)
        or not isinstance(row.get("answer"), str)
    ):
        raise ValueError(
            f'{path}:{line_number} must be {{"answer_id": int, "answer": str}}, got {line.strip()[:200]!r}.'
        )
    return BankEntry(answer_id=row["answer_id"], answer=row["answer"])


def file_checksum(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as bank_file:
        for block in iter(lambda: bank_file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def cache_path(cache_dir: str, model_name: str, version: int, checksum: str) -> str:
    directory = os.path.join(os.path.expanduser(cache_dir), model_name, str(version))
    return os.path.join(directory, f"answer_embeddings-{checksum}.npy")


def load_or_encode_answers(
    client,
    version: int,
    entries: Sequence[BankEntry],
    checksum: str,
    cache_dir: str = DEFAULT_CACHE_DIR,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> np.ndarray:
    """Return the [len(entries), D] answer embeddings, from the cache or by calling encode_answer.

    `client` is a ServingClient; every batch pins `version` so all rows come from one model.
    """
    path = cache_path(cache_dir, client.model_name, version, checksum)
    if os.path.isfile(path):
        embeddings = np.load(path)
        if embeddings.ndim == 2 and embeddings.shape[0] == len(entries):
            logging.info("Loaded %d answer embeddings from cache %s.", len(entries), path)
            return embeddings
        logging.warning(
            "Cached embeddings %s have shape %s but the bank has %d answers; re-encoding.",
            path, embeddings.shape, len(entries),
        )

    answers = [entry.answer for entry in entries]
    batches = [
        client.encode_answers(answers[start:start + batch_size], version)
        for start in range(0, len(answers), batch_size)
    ]
    embeddings = np.concatenate(batches, axis=0)
    _save_atomically(path, embeddings)
    logging.info("Encoded %d answers with version %d; cached at %s.", len(entries), version, path)
    return embeddings


def _save_atomically(path: str, array: np.ndarray) -> None:
    # Write to a temporary file and rename, so a concurrent reader never sees a partial file.
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".npy.tmp")
    try:
        with os.fdopen(handle, "wb") as output:
            np.save(output, array)
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def rank_answers(
    question_embedding: np.ndarray,
    answer_embeddings: np.ndarray,
    entries: Sequence[BankEntry],
    top_k: int,
) -> List[RankedAnswer]:
    """Return the top_k entries by cosine similarity, best first. Ties keep bank order.

    A zero vector (for example the embedding of an empty string) has cosine 0 with everything.
    """
    question = np.asarray(question_embedding, dtype=np.float64)
    answers = np.asarray(answer_embeddings, dtype=np.float64)
    if answers.shape != (len(entries), question.shape[-1]):
        raise ValueError(
            f"Answer embeddings have shape {answers.shape}, expected ({len(entries)}, {question.shape[-1]})."
        )

    scores = answers @ question
    norms = np.linalg.norm(answers, axis=1) * np.linalg.norm(question)
    cosine = np.divide(scores, norms, out=np.zeros_like(scores), where=norms > 0)

    order = np.argsort(-cosine, kind="stable")[:top_k]
    return [
        RankedAnswer(entries[index].answer_id, entries[index].answer, float(cosine[index]))
        for index in order
    ]
