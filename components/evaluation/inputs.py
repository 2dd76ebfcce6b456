"""FaqEvaluator inputs: raw example splits, the retrieval set, and SavedModel signature calls."""

import collections
import dataclasses
import os
from typing import Dict, Iterator, List, Sequence

import numpy as np
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.types import artifact_utils
from tfx.utils import path_utils

from components.preprocessing import PAD_ID


@dataclasses.dataclass(frozen=True)
class PairSplit:
    """The (question, answer) pairs of one split, in file order."""

    questions: List[str]
    answers: List[str]
    question_ids: np.ndarray
    answer_ids: np.ndarray


@dataclasses.dataclass(frozen=True)
class RetrievalSet:
    """Distinct eval questions, the candidate pool of distinct eval answers, and the relevance."""

    question_ids: np.ndarray
    questions: List[str]
    answer_ids: np.ndarray
    answers: List[str]
    # Indices into `answer_ids` of the correct answers of each question.
    correct_per_question: List[np.ndarray]


# ---------------------------------------------------------------------------------------------
# Reading the examples.


def read_split(examples: types.Artifact, split: str) -> PairSplit:
    """Read the raw tf.Examples (GZIP TFRecords) of one split of an `Examples` artifact."""
    [split_uri] = artifact_utils.get_split_uris([examples], split)
    files = sorted(tf.io.gfile.glob(os.path.join(split_uri, "*.gz")))
    if not files:
        raise ValueError(f"No *.gz TFRecord files found in split '{split}' at {split_uri}.")

    columns = collections.defaultdict(list)
    for file_name in files:
        dataset = tf.data.TFRecordDataset(file_name, compression_type="GZIP")
        for index, record in enumerate(dataset.as_numpy_iterator()):
            example = tf.train.Example.FromString(record)
            location = f"{file_name} record {index}"
            columns["question"].append(_single_value(example, "question", location).decode("utf-8"))
            columns["answer"].append(_single_value(example, "answer", location).decode("utf-8"))
            columns["question_id"].append(_single_value(example, "question_id", location))
            columns["answer_id"].append(_single_value(example, "answer_id", location))

    if not columns["question"]:
        raise ValueError(f"Split '{split}' at {split_uri} contains no examples.")
    return PairSplit(
        questions=columns["question"],
        answers=columns["answer"],
        question_ids=np.asarray(columns["question_id"], dtype=np.int64),
        answer_ids=np.asarray(columns["answer_id"], dtype=np.int64),
    )


def _single_value(example: tf.train.Example, name: str, location: str):
    if name not in example.features.feature:
        raise ValueError(f"Feature '{name}' is missing in {location}. Raw examples must carry "
                         "question, answer (bytes) and question_id, answer_id (int64).")
    feature = example.features.feature[name]
    values = feature.bytes_list.value or feature.int64_list.value
    if len(values) != 1:
        raise ValueError(f"Feature '{name}' in {location} must have exactly one value, "
                         f"got {len(values)}.")
    return values[0]


def build_retrieval_set(pairs: PairSplit) -> RetrievalSet:
    """Group pairs by question_id and answer_id, sorted by id. Texts are the first seen per id."""
    question_text = {}
    answer_text = {}
    correct_ids = collections.defaultdict(set)
    for question, answer, question_id, answer_id in zip(
            pairs.questions, pairs.answers, pairs.question_ids, pairs.answer_ids):
        question_text.setdefault(int(question_id), question)
        answer_text.setdefault(int(answer_id), answer)
        correct_ids[int(question_id)].add(int(answer_id))

    question_ids = np.asarray(sorted(question_text), dtype=np.int64)
    answer_ids = np.asarray(sorted(answer_text), dtype=np.int64)
    answer_index = {answer_id: index for index, answer_id in enumerate(answer_ids.tolist())}
    correct_per_question = [
        np.asarray(sorted(answer_index[a] for a in correct_ids[q]), dtype=np.int64)
        for q in question_ids.tolist()
    ]
    return RetrievalSet(
        question_ids=question_ids,
        questions=[question_text[q] for q in question_ids.tolist()],
        answer_ids=answer_ids,
        answers=[answer_text[a] for a in answer_ids.tolist()],
        correct_per_question=correct_per_question,
    )


# ---------------------------------------------------------------------------------------------
# Calling the SavedModel signatures.


def load_serving_model(model: types.Artifact):
    """Load the SavedModel of a `Model` artifact and check that it has the expected signatures."""
    path = path_utils.serving_model_path(model.uri)
    logging.info("Loading SavedModel %s.", path)
    loaded = tf.saved_model.load(path)
    missing = {"encode_question", "encode_answer", "decode"} - set(loaded.signatures.keys())
    if missing:
        raise ValueError(f"SavedModel {path} lacks the signatures {sorted(missing)}. It has "
                         f"{sorted(loaded.signatures.keys())}. Export it with the trainer.")
    return loaded


def embed_texts(loaded, signature: str, input_name: str, texts: Sequence[str],
                batch_size: int) -> np.ndarray:
    """Call an `encode_*` signature on `texts` in batches and return float32 [len(texts), D]."""
    function = loaded.signatures[signature]
    batches = []
    for start in range(0, len(texts), batch_size):
        batch = list(texts[start:start + batch_size])
        outputs = function(**{input_name: tf.constant(batch, dtype=tf.string)})
        embedding = outputs["embedding"].numpy()
        if embedding.ndim != 2 or embedding.shape[0] != len(batch):
            raise ValueError(f"Signature {signature} returned an embedding of shape "
                             f"{embedding.shape} for {len(batch)} inputs; expected [N, D].")
        batches.append(embedding.astype(np.float32))
    return np.concatenate(batches, axis=0)


def decode_batches(loaded, questions: Sequence[str], answers: Sequence[str],
                   batch_size: int) -> Iterator[Dict[str, np.ndarray]]:
    """Yield the teacher-forced `decode` outputs in batches, plus `vocabulary_size`.

    The [N, T, V] probabilities are dropped after reading V, so memory per batch is
    batch_size x T x V floats inside the signature call only.
    """
    function = loaded.signatures["decode"]
    for start in range(0, len(questions), batch_size):
        outputs = function(
            question=tf.constant(list(questions[start:start + batch_size]), dtype=tf.string),
            answer=tf.constant(list(answers[start:start + batch_size]), dtype=tf.string))
        target_ids = outputs["target_ids"].numpy()
        target_length = outputs["target_length"].numpy()
        non_padding = int(np.count_nonzero(target_ids != PAD_ID))
        if non_padding != int(target_length.sum()):
            raise ValueError(f"decode returned {non_padding} non-padding target ids but "
                             f"target_length sums to {int(target_length.sum())}; the "
                             "signature contract requires them to match.")
        yield {
            "target_ids": target_ids,
            "target_length": target_length,
            "predicted_ids": outputs["predicted_ids"].numpy(),
            "log_probability": outputs["log_probability"].numpy(),
            "vocabulary_size": int(outputs["probabilities"].shape[-1]),
        }
