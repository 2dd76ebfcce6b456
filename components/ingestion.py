"""Split pairs into train/eval by question and write them as gzipped TFRecords of tf.Example.

ImportExampleGen reads the result. TFRecords keep multi-line answers intact, which TFX 1.16's
CsvExampleGen cannot read inside quoted fields. The output folder is named by a fingerprint of
its content and written once, so an unchanged corpus keeps its file modification times and
ExampleGen's cache stays valid across runs.
"""

import collections
import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from typing import Counter, Dict, List, Sequence

import tensorflow as tf
from absl import logging

from components import corpus

TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
SPLITS = (TRAIN_SPLIT, EVAL_SPLIT)
FILE_NAME = "data.tfrecord.gz"
COMPLETE_MARKER = "_COMPLETE"
HASH_BUCKETS = 10000  # Resolution of eval_fraction: 0.01 %.


@dataclasses.dataclass
class IngestionReport:
    """Counts of one ingestion run and where it wrote."""

    data_root: str
    rows_read: int
    written: Dict[str, int]
    skipped: Counter[str]
    reused: bool

    def summary(self) -> str:
        skipped = ", ".join(f"{reason}={count}" for reason, count in sorted(self.skipped.items())) or "none"
        written = ", ".join(f"{split}={self.written[split]}" for split in SPLITS)
        return (f"Ingestion: {self.rows_read} rows read; written {written}; skipped {skipped}; "
                f"{'reused' if self.reused else 'wrote'} {self.data_root}")


def split_of(question_id: int, eval_fraction: float) -> str:
    """Assign a question (with all its answers) to a split by its id, so no question is in both."""
    bucket = question_id % HASH_BUCKETS
    return EVAL_SPLIT if bucket < round(eval_fraction * HASH_BUCKETS) else TRAIN_SPLIT


def split_pairs(pairs: Sequence[corpus.Pair], eval_fraction: float) -> Dict[str, List[corpus.Pair]]:
    splits: Dict[str, List[corpus.Pair]] = {split: [] for split in SPLITS}
    for pair in pairs:
        splits[split_of(pair.question_id, eval_fraction)].append(pair)
    return splits


def to_example(pair: corpus.Pair) -> tf.train.Example:
    def bytes_feature(text: str) -> tf.train.Feature:
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=[text.encode("utf-8")]))

    def int_feature(value: int) -> tf.train.Feature:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[value]))

    return tf.train.Example(features=tf.train.Features(feature={
        "question": bytes_feature(pair.question),
        "answer": bytes_feature(pair.answer),
        "question_id": int_feature(pair.question_id),
        "answer_id": int_feature(pair.answer_id),
    }))


def fingerprint(pairs: Sequence[corpus.Pair], eval_fraction: float) -> str:
    """Return a hex digest of the pairs, in order, and the split fraction: the output folder's name."""
    digest = hashlib.sha256(f"eval_fraction={eval_fraction}\n".encode("utf-8"))
    for pair in pairs:
        digest.update(json.dumps(dataclasses.astuple(pair), ensure_ascii=False).encode("utf-8") + b"\n")
    return digest.hexdigest()[:16]


def _write_splits(splits: Dict[str, List[corpus.Pair]], output_dir: str) -> None:
    """Write each split under a temporary folder, then rename it into place in one step."""
    parent = os.path.dirname(output_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".staging-", dir=parent)
    for split, pairs in splits.items():
        os.makedirs(os.path.join(staging, split))
        options = tf.io.TFRecordOptions(compression_type="GZIP")
        with tf.io.TFRecordWriter(os.path.join(staging, split, FILE_NAME), options) as writer:
            for pair in pairs:
                writer.write(to_example(pair).SerializeToString())
    open(os.path.join(staging, COMPLETE_MARKER), "w").close()
    if os.path.exists(output_dir):
        shutil.rmtree(output_dir)  # An incomplete earlier attempt: it has no COMPLETE_MARKER.
    os.rename(staging, output_dir)


def ingest(corpus_name: str, data: str, eval_fraction: float, output_base: str,
           max_examples: int = 0, max_field_chars: int = 5000) -> IngestionReport:
    """Read, validate and split the pairs, and write them under `output_base/<fingerprint>`.

    `max_examples` keeps the first N valid pairs (0 keeps all). Fields longer than `max_field_chars`
    characters are skipped as too_long.
    """
    if max_examples < 0:
        raise ValueError(f"max_examples={max_examples} is invalid: use 0 (keep all pairs) or a positive number.")
    if max_field_chars < 1:
        raise ValueError(f"max_field_chars={max_field_chars} is invalid: use a positive number of characters.")
    logging.info("Ingestion: reading %s", data or corpus_name)
    result = corpus.read_pairs(corpus_name, data, max_field_chars)
    pairs = result.pairs[:max_examples] if max_examples else result.pairs
    splits = split_pairs(pairs, eval_fraction)
    for split in SPLITS:
        if not splits[split]:
            raise ValueError(f"The {split} split is empty for {len(pairs)} pairs at eval_fraction={eval_fraction}: "
                             "use more data or an eval_fraction further from 0 and 1.")

    output_dir = os.path.join(output_base, fingerprint(pairs, eval_fraction))
    reused = os.path.exists(os.path.join(output_dir, COMPLETE_MARKER))
    if not reused:
        _write_splits(splits, output_dir)

    skipped = collections.Counter(result.skipped)
    if max_examples and len(result.pairs) > max_examples:
        skipped["over_max_examples"] = len(result.pairs) - max_examples
    report = IngestionReport(output_dir, result.rows_read, {s: len(splits[s]) for s in SPLITS}, skipped, reused)
    logging.info("%s", report.summary())
    return report
