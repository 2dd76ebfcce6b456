"""FaqEvaluator: a TFX component that scores the candidate SavedModel and blesses or rejects it.

TFX's Evaluator (TFMA) cannot score this model, because its training output is a loss and its
signatures take raw strings. This component calls the serving signatures in-process,
compares them with a TF-IDF baseline and a unigram model on the eval split, and writes the
standard `ModelEvaluation` and `ModelBlessing` artifacts. The blessing carries the same custom
properties as TFX's Evaluator, so `LatestBlessedModelStrategy` and the standard Pusher work
with it unchanged.
"""

import collections
import dataclasses
import json
import math
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence

import numpy as np
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.evaluator import constants as evaluator_constants
from tfx.dsl.components.base import base_component, base_executor, executor_spec
from tfx.dsl.components.common import resolver
from tfx.dsl.input_resolution.strategies.latest_blessed_model_strategy import (
    LatestBlessedModelStrategy)
from tfx.types import artifact_utils, standard_artifacts, standard_component_specs
from tfx.types.component_spec import ChannelParameter, ExecutionParameter
from tfx.types.system_executions import Evaluate
from tfx.utils import io_utils, path_utils

from components.evaluation import baseline, blessing, metrics, report

TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
METRICS_FILE_NAME = "metrics.json"
TRAINING_HISTORY_FILE_NAME = "training_history.json"

RECALL_KS = (1, 5, 10)
ONE_IN_TEN_KS = (1, 2, 5)
PADDING_ID = 0

MIN_RECALL_AT_1_KEY = "min_recall_at_1"
MIN_R10_AT_1_RATIO_KEY = "min_r10_at_1_ratio_to_tfidf"
MAX_RECALL_AT_1_REGRESSION_KEY = "max_recall_at_1_regression"
MAX_R10_AT_1_REGRESSION_KEY = "max_r10_at_1_regression"
ONE_IN_TEN_SEED_KEY = "one_in_ten_seed"
EMBEDDING_BATCH_SIZE_KEY = "embedding_batch_size"
DECODE_BATCH_SIZE_KEY = "decode_batch_size"
RECALL_CURVE_MAX_K_KEY = "recall_curve_max_k"


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
        non_padding = int(np.count_nonzero(target_ids != PADDING_ID))
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


# ---------------------------------------------------------------------------------------------
# Metrics.


def evaluate_retrieval(loaded, retrieval_set: RetrievalSet, one_in_ten_rows: np.ndarray,
                       one_in_ten_sets: np.ndarray, batch_size: int) -> Dict[str, Any]:
    """Embed questions and candidates with the model and rank them. Return ranks and NaN counts."""
    question_embeddings = embed_texts(loaded, "encode_question", "question",
                                      retrieval_set.questions, batch_size)
    answer_embeddings = embed_texts(loaded, "encode_answer", "answer",
                                    retrieval_set.answers, batch_size)
    full_ranks, one_in_ten_ranks = metrics.rank_questions(
        metrics.cosine_score_function(question_embeddings, answer_embeddings),
        len(retrieval_set.questions), retrieval_set.correct_per_question,
        one_in_ten_rows, one_in_ten_sets)
    return {
        "full_ranks": full_ranks,
        "one_in_ten_ranks": one_in_ten_ranks,
        "question_embeddings_with_nan": int(np.isnan(question_embeddings).any(axis=1).sum()),
        "answer_embeddings_with_nan": int(np.isnan(answer_embeddings).any(axis=1).sum()),
    }


def evaluate_tfidf(train: PairSplit, retrieval_set: RetrievalSet, one_in_ten_rows: np.ndarray,
                   one_in_ten_sets: np.ndarray) -> Dict[str, np.ndarray]:
    """Rank the same questions and candidates by TF-IDF cosine, fit on distinct train texts."""
    train_texts = sorted(set(train.questions)) + sorted(set(train.answers))
    vectorizer = baseline.fit_tfidf(train_texts)
    full_ranks, one_in_ten_ranks = metrics.rank_questions(
        baseline.tfidf_score_function(vectorizer, retrieval_set.questions, retrieval_set.answers),
        len(retrieval_set.questions), retrieval_set.correct_per_question,
        one_in_ten_rows, one_in_ten_sets)
    return {"full_ranks": full_ranks, "one_in_ten_ranks": one_in_ten_ranks}


def evaluate_generation(loaded, train: PairSplit, eval_pairs: PairSplit,
                        batch_size: int) -> Dict[str, Any]:
    """Compute perplexity and masked token accuracy of `decode`, and the unigram perplexity.

    Both models are scored on the same tokens: the `target_ids` that `decode` returns for the
    eval pairs. The unigram counts come from `decode`'s `target_ids` for each distinct train
    answer, weighted by the number of train pairs that contain that answer.
    """
    total_log_probability = 0.0
    total_target_length = 0
    correct_tokens = 0
    eval_tokens = []
    vocabulary_size = None
    for outputs in decode_batches(loaded, eval_pairs.questions, eval_pairs.answers, batch_size):
        vocabulary_size = outputs["vocabulary_size"]
        mask = outputs["target_ids"] != PADDING_ID
        total_log_probability += float(outputs["log_probability"].astype(np.float64).sum())
        total_target_length += int(outputs["target_length"].sum())
        correct_tokens += int(np.count_nonzero((outputs["predicted_ids"] ==
                                                outputs["target_ids"]) & mask))
        eval_tokens.append(outputs["target_ids"][mask])

    if total_target_length == 0:
        raise ValueError("decode returned no target tokens for the eval pairs, so perplexity "
                         "is undefined. Check that the eval answers are not empty.")

    train_counts = _train_unigram_counts(loaded, train, vocabulary_size, batch_size)
    eval_token_array = np.concatenate(eval_tokens)
    return {
        "model": {
            "perplexity": float(np.exp(-total_log_probability / total_target_length)),
            "masked_token_accuracy": correct_tokens / total_target_length,
        },
        "unigram": {"perplexity": baseline.unigram_perplexity(train_counts, eval_token_array)},
        "eval_target_tokens": total_target_length,
        "train_target_tokens": int(train_counts.sum()),
        "vocabulary_size": vocabulary_size,
    }


def _train_unigram_counts(loaded, train: PairSplit, vocabulary_size: int,
                          batch_size: int) -> np.ndarray:
    pair_count = collections.Counter(train.answer_ids.tolist())
    first_pair = {}
    for index, answer_id in enumerate(train.answer_ids.tolist()):
        first_pair.setdefault(answer_id, index)
    answer_ids = sorted(first_pair)
    questions = [train.questions[first_pair[a]] for a in answer_ids]
    answers = [train.answers[first_pair[a]] for a in answer_ids]
    weights = np.asarray([pair_count[a] for a in answer_ids], dtype=np.int64)

    counts = np.zeros(vocabulary_size, dtype=np.int64)
    start = 0
    for outputs in decode_batches(loaded, questions, answers, batch_size):
        batch_weights = weights[start:start + outputs["target_ids"].shape[0]]
        start += outputs["target_ids"].shape[0]
        counts += baseline.unigram_counts(outputs["target_ids"], vocabulary_size, batch_weights)
    return counts


def compute_metrics(candidate, baseline_model, train: PairSplit, eval_pairs: PairSplit,
                    seed: int, embedding_batch_size: int, decode_batch_size: int,
                    recall_curve_max_k: int) -> Dict[str, Any]:
    """Build the `metrics.json` dictionary: retrieval, generation and NaN counts.

    `baseline_model` is a loaded SavedModel or None. It is scored on the same questions,
    candidates and 1-in-10 sets, for the regression check.
    """
    retrieval_set = build_retrieval_set(eval_pairs)
    one_in_ten_rows, one_in_ten_sets, skipped = metrics.sample_one_in_ten(
        retrieval_set.correct_per_question, len(retrieval_set.answers), seed)
    if skipped:
        logging.warning("1-in-10 protocol skipped %d of %d eval questions with fewer than %d "
                        "wrong candidates, for example question_id %d.", len(skipped),
                        len(retrieval_set.questions), metrics.ONE_IN_TEN_DISTRACTORS,
                        retrieval_set.question_ids[skipped[0]])

    model_ranks = evaluate_retrieval(candidate, retrieval_set, one_in_ten_rows, one_in_ten_sets,
                                     embedding_batch_size)
    tfidf_ranks = evaluate_tfidf(train, retrieval_set, one_in_ten_rows, one_in_ten_sets)
    baseline_summary = None
    if baseline_model is not None:
        baseline_ranks = evaluate_retrieval(baseline_model, retrieval_set, one_in_ten_rows,
                                            one_in_ten_sets, embedding_batch_size)
        baseline_summary = _summarize(baseline_ranks)

    curve_ks = list(range(1, min(recall_curve_max_k, len(retrieval_set.answers)) + 1))
    return {
        "eval_split": {
            "pairs": len(eval_pairs.questions),
            "questions": len(retrieval_set.questions),
            "candidate_answers": len(retrieval_set.answers),
            "questions_without_candidate": sum(c.size == 0
                                               for c in retrieval_set.correct_per_question),
        },
        "one_in_ten": {
            "seed": seed,
            "pairs": int(one_in_ten_rows.shape[0]),
            "questions_skipped": len(skipped),
        },
        "retrieval": {
            "model": _summarize(model_ranks),
            "tfidf": _summarize(tfidf_ranks),
            "baseline_model": baseline_summary,
        },
        "recall_curve": {
            "k": curve_ks,
            "model": metrics.recall_curve(model_ranks["full_ranks"], len(curve_ks)),
            "tfidf": metrics.recall_curve(tfidf_ranks["full_ranks"], len(curve_ks)),
        },
        "nan_counts": {
            "question_embeddings_with_nan": model_ranks["question_embeddings_with_nan"],
            "answer_embeddings_with_nan": model_ranks["answer_embeddings_with_nan"],
        },
        "generation": evaluate_generation(candidate, train, eval_pairs, decode_batch_size),
    }


def _summarize(ranks: Dict[str, Any]) -> Dict[str, float]:
    return metrics.summarize_ranks(ranks["full_ranks"], ranks["one_in_ten_ranks"],
                                   RECALL_KS, ONE_IN_TEN_KS)


# ---------------------------------------------------------------------------------------------
# Artifacts.


def write_blessing(blessing_artifact: types.Artifact, decision: blessing.BlessingDecision,
                   model: types.Artifact, baseline_model: Optional[types.Artifact]) -> None:
    """Write the BLESSED or NOT_BLESSED file and the custom properties TFX's Evaluator writes."""
    blessing_artifact.set_string_custom_property(
        evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri)
    blessing_artifact.set_int_custom_property(
        evaluator_constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
    if baseline_model is not None:
        blessing_artifact.set_string_custom_property(
            evaluator_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY, baseline_model.uri)
        blessing_artifact.set_int_custom_property(
            evaluator_constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY, baseline_model.id)
    blessing_artifact.set_string_custom_property(
        evaluator_constants.ARTIFACT_PROPERTY_BLESSING_MESSAGE_KEY, decision.message)

    if decision.blessed:
        file_name = evaluator_constants.BLESSED_FILE_NAME
        value = evaluator_constants.BLESSED_VALUE
    else:
        file_name = evaluator_constants.NOT_BLESSED_FILE_NAME
        value = evaluator_constants.NOT_BLESSED_VALUE
    io_utils.write_string_file(os.path.join(blessing_artifact.uri, file_name), "")
    blessing_artifact.set_int_custom_property(
        evaluator_constants.ARTIFACT_PROPERTY_BLESSED_KEY, value)


def read_training_history(model_run: Optional[types.Artifact]) -> Dict[str, Any]:
    """Read `training_history.json` from a `ModelRun` artifact, or return {} when there is none."""
    if model_run is None:
        return {}
    path = os.path.join(model_run.uri, TRAINING_HISTORY_FILE_NAME)
    if not tf.io.gfile.exists(path):
        logging.warning("No training history at %s; the report will have no training curves.",
                        path)
        return {}
    with tf.io.gfile.GFile(path, "r") as history_file:
        return json.load(history_file)


def write_metrics(evaluation_uri: str, metrics_dict: Dict[str, Any]) -> str:
    """Write `metrics.json`. NaN and infinity are stored as null, so strict JSON readers accept it."""
    path = os.path.join(evaluation_uri, METRICS_FILE_NAME)
    io_utils.write_string_file(path, json.dumps(_non_finite_to_none(metrics_dict), indent=2,
                                                allow_nan=False))
    return path


def _non_finite_to_none(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _non_finite_to_none(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_non_finite_to_none(item) for item in value]
    return value


# ---------------------------------------------------------------------------------------------
# TFX component.


class Executor(base_executor.BaseExecutor):
    """Scores the candidate model, writes metrics.json and report.html, and decides the blessing."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        examples = artifact_utils.get_single_instance(
            input_dict[standard_component_specs.EXAMPLES_KEY])
        model = artifact_utils.get_single_instance(input_dict[standard_component_specs.MODEL_KEY])
        model_run = _optional_single(input_dict, standard_component_specs.MODEL_RUN_KEY)
        baseline_model = _optional_single(input_dict, standard_component_specs.BASELINE_MODEL_KEY)
        evaluation = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.EVALUATION_KEY])
        blessing_artifact = artifact_utils.get_single_instance(
            output_dict[standard_component_specs.BLESSING_KEY])
        thresholds = blessing.BlessingThresholds(
            min_recall_at_1=exec_properties[MIN_RECALL_AT_1_KEY],
            min_r10_at_1_ratio_to_tfidf=exec_properties[MIN_R10_AT_1_RATIO_KEY],
            max_recall_at_1_regression=exec_properties[MAX_RECALL_AT_1_REGRESSION_KEY],
            max_r10_at_1_regression=exec_properties[MAX_R10_AT_1_REGRESSION_KEY])

        logging.info("Evaluating model %s (id %d) against baseline model %s.", model.uri,
                     model.id, baseline_model.uri if baseline_model else "none")
        train = read_split(examples, TRAIN_SPLIT)
        eval_pairs = read_split(examples, EVAL_SPLIT)
        metrics_dict = compute_metrics(
            load_serving_model(model),
            load_serving_model(baseline_model) if baseline_model else None,
            train, eval_pairs,
            seed=exec_properties[ONE_IN_TEN_SEED_KEY],
            embedding_batch_size=exec_properties[EMBEDDING_BATCH_SIZE_KEY],
            decode_batch_size=exec_properties[DECODE_BATCH_SIZE_KEY],
            recall_curve_max_k=exec_properties[RECALL_CURVE_MAX_K_KEY])

        decision = blessing.decide_blessing(metrics_dict, thresholds)
        metrics_dict["model_uri"] = model.uri
        metrics_dict["baseline_model_uri"] = baseline_model.uri if baseline_model else ""
        metrics_dict["blessing"] = {"blessed": decision.blessed, "message": decision.message,
                                    "thresholds": dataclasses.asdict(thresholds)}
        write_metrics(evaluation.uri, metrics_dict)
        report.write_report(evaluation.uri, metrics_dict, read_training_history(model_run))
        write_blessing(blessing_artifact, decision, model, baseline_model)
        logging.info("%s: %s Metrics: %s; report: %s.", model.uri, decision.message,
                     os.path.join(evaluation.uri, METRICS_FILE_NAME),
                     report.report_path(evaluation.uri))


def _optional_single(input_dict: Dict[str, List[types.Artifact]],
                     key: str) -> Optional[types.Artifact]:
    artifacts = input_dict.get(key) or []
    if len(artifacts) > 1:
        raise ValueError(f"Input '{key}' must have at most one artifact, got {len(artifacts)}.")
    return artifacts[0] if artifacts else None


class FaqEvaluatorSpec(types.ComponentSpec):
    """FaqEvaluator inputs, outputs and parameters."""

    PARAMETERS = {
        MIN_RECALL_AT_1_KEY: ExecutionParameter(type=float),
        MIN_R10_AT_1_RATIO_KEY: ExecutionParameter(type=float),
        MAX_RECALL_AT_1_REGRESSION_KEY: ExecutionParameter(type=float),
        MAX_R10_AT_1_REGRESSION_KEY: ExecutionParameter(type=float),
        ONE_IN_TEN_SEED_KEY: ExecutionParameter(type=int),
        EMBEDDING_BATCH_SIZE_KEY: ExecutionParameter(type=int),
        DECODE_BATCH_SIZE_KEY: ExecutionParameter(type=int),
        RECALL_CURVE_MAX_K_KEY: ExecutionParameter(type=int),
    }
    INPUTS = {
        standard_component_specs.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        standard_component_specs.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        standard_component_specs.MODEL_RUN_KEY: ChannelParameter(
            type=standard_artifacts.ModelRun, optional=True),
        standard_component_specs.BASELINE_MODEL_KEY: ChannelParameter(
            type=standard_artifacts.Model, optional=True),
    }
    OUTPUTS = {
        standard_component_specs.EVALUATION_KEY: ChannelParameter(
            type=standard_artifacts.ModelEvaluation),
        standard_component_specs.BLESSING_KEY: ChannelParameter(
            type=standard_artifacts.ModelBlessing),
    }
    TYPE_ANNOTATION = Evaluate


class FaqEvaluator(base_component.BaseComponent):
    """Evaluates the FAQ model against TF-IDF and the latest blessed model, and blesses it.

    Outputs `evaluation` (ModelEvaluation with metrics.json and report.html) and `blessing`
    (ModelBlessing that the standard Pusher and LatestBlessedModelStrategy read).
    """

    SPEC_CLASS = FaqEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(Executor)

    def __init__(self,
                 examples: types.BaseChannel,
                 model: types.BaseChannel,
                 model_run: Optional[types.BaseChannel] = None,
                 baseline_model: Optional[types.BaseChannel] = None,
                 thresholds: blessing.BlessingThresholds = blessing.BlessingThresholds(),
                 one_in_ten_seed: int = 0,
                 embedding_batch_size: int = 256,
                 decode_batch_size: int = 32,
                 recall_curve_max_k: int = 50):
        """Create the component.

        Args:
          examples: Examples with `train` and `eval` splits of raw question/answer pairs.
          model: the candidate Model from the Trainer.
          model_run: the Trainer's ModelRun, whose `training_history.json` feeds the report.
          baseline_model: the latest blessed Model, from `create_latest_blessed_model_resolver`.
          thresholds: blessing thresholds; see `blessing.BlessingThresholds`.
          one_in_ten_seed: seed for drawing the 9 distractors of each 1-in-10 set.
          embedding_batch_size: texts per `encode_*` signature call.
          decode_batch_size: pairs per `decode` call. Each call materializes a
            [batch, T, V] float32 probability tensor, so keep it small for large vocabularies.
          recall_curve_max_k: largest k of the Recall@k curve in the report.
        """
        for name, value in (("embedding_batch_size", embedding_batch_size),
                            ("decode_batch_size", decode_batch_size),
                            ("recall_curve_max_k", recall_curve_max_k)):
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}.")

        spec = FaqEvaluatorSpec(
            examples=examples,
            model=model,
            model_run=model_run,
            baseline_model=baseline_model,
            min_recall_at_1=float(thresholds.min_recall_at_1),
            min_r10_at_1_ratio_to_tfidf=float(thresholds.min_r10_at_1_ratio_to_tfidf),
            max_recall_at_1_regression=float(thresholds.max_recall_at_1_regression),
            max_r10_at_1_regression=float(thresholds.max_r10_at_1_regression),
            one_in_ten_seed=one_in_ten_seed,
            embedding_batch_size=embedding_batch_size,
            decode_batch_size=decode_batch_size,
            recall_curve_max_k=recall_curve_max_k,
            evaluation=types.Channel(type=standard_artifacts.ModelEvaluation),
            blessing=types.Channel(type=standard_artifacts.ModelBlessing))
        super().__init__(spec=spec)


def create_latest_blessed_model_resolver() -> resolver.Resolver:
    """Return the Resolver node whose `model` output is the latest blessed Model, if any.

    This is `tfx.dsl.Resolver` with `tfx.dsl.experimental.LatestBlessedModelStrategy`. Its
    `model` output is empty until some FaqEvaluator run has blessed a model.
    """
    return resolver.Resolver(
        strategy_class=LatestBlessedModelStrategy,
        model=types.Channel(type=standard_artifacts.Model),
        model_blessing=types.Channel(type=standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
