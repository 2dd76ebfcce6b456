"""FaqEvaluator: a TFX component that scores the candidate SavedModel and blesses or rejects it.

TFX's Evaluator (TFMA) cannot score this model, because its training output is a loss and its
signatures take raw strings. This component calls the serving signatures in-process,
compares them with a TF-IDF baseline and a unigram model on the eval split, and writes the
standard `ModelEvaluation` and `ModelBlessing` artifacts. The blessing carries the same custom
properties as TFX's Evaluator, so `LatestBlessedModelStrategy` and the standard Pusher work
with it unchanged.
"""

import dataclasses
import json
import math
import os
from typing import Any, Dict, List, Optional

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
from tfx.utils import io_utils

from components.evaluation import blessing, report
from components.evaluation.inputs import load_serving_model, read_split
from components.evaluation.scoring import compute_metrics

TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
METRICS_FILE_NAME = "metrics.json"
TRAINING_HISTORY_FILE_NAME = "training_history.json"

MIN_RECALL_AT_1_KEY = "min_recall_at_1"
MIN_R10_AT_1_RATIO_KEY = "min_r10_at_1_ratio_to_tfidf"
MAX_RECALL_AT_1_REGRESSION_KEY = "max_recall_at_1_regression"
MAX_R10_AT_1_REGRESSION_KEY = "max_r10_at_1_regression"
ONE_IN_TEN_SEED_KEY = "one_in_ten_seed"
EMBEDDING_BATCH_SIZE_KEY = "embedding_batch_size"
DECODE_BATCH_SIZE_KEY = "decode_batch_size"
RECALL_CURVE_MAX_K_KEY = "recall_curve_max_k"


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
