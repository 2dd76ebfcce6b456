"""Trainer module: `run_fn` trains the matching and generation models and exports the inference signatures.

The two models share no layers, so they train one after the other. When early stopping is on, the
matching model keeps the weights of its epoch with the best eval-split MRR and the generation model
those of its lowest validation loss. Only `components.export` decides what is exported.
"""

import json
import math
import os
import time
from typing import Any, Dict, List

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tf_keras
from absl import logging
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from components import export
from components import model as faq_model
from components import preprocessing
from components.evaluation import metrics

DEFAULT_HYPERPARAMETERS = {
    "embedding_dim": 64,
    "encoder_units": 128,
    "decoder_units": 128,
    "margin": 0.5,
    "epochs": 30,
    "batch_size": 64,
    "learning_rate": 0.002,
    "early_stopping_patience": 0,
    "seed": 42,
    "num_negatives": 4,
    "validation_fraction": 0.1,
}
HISTORY_FILE = "training_history.json"


def add_in_batch_negatives(features: Dict[str, tf.Tensor], num_negatives: int = 1) -> Dict[str, tf.Tensor]:
    """Pair every row of a batch with `num_negatives` wrong answers from the same batch.

    Returns the B input rows repeated `num_negatives` times (B * num_negatives rows) plus
    `wrong_answer_ids` [B * num_negatives, T] and `negative_weight` [B * num_negatives]. Row
    k * B + i takes the answer of the (k + 1)-th row after row i (cyclically) whose answer key
    differs, so a wrong answer never has the right answer's text. When the batch has no such
    row, the row gets weight 0 and so adds nothing to the loss.
    """
    if num_negatives < 1:
        raise ValueError(f"num_negatives={num_negatives} is invalid: use a positive integer.")
    keys = features[preprocessing.ANSWER_KEY_ID]
    batch_size = tf.shape(keys)[0]
    rows = tf.range(batch_size)

    # candidates[i, s] is row i + s + 1 (mod B). The extra last column, row i itself, is never
    # valid and keeps argmax defined when no candidate is valid (B == 1 or all keys equal).
    candidates = (rows[:, None] + tf.range(1, batch_size)[None, :]) % batch_size
    candidates = tf.concat([candidates, rows[:, None]], axis=1)
    valid = tf.not_equal(tf.gather(keys, candidates), keys[:, None])
    valid_rank = tf.cumsum(tf.cast(valid, tf.int32), axis=1)  # 1-based rank among valid candidates.

    negative_ids = []
    negative_weights = []
    for rank in range(1, num_negatives + 1):
        chosen = valid & tf.equal(valid_rank, rank)
        column = tf.argmax(tf.cast(chosen, tf.int32), axis=1, output_type=tf.int32)
        negatives = tf.gather(candidates, column, batch_dims=1)
        negative_ids.append(tf.gather(features[preprocessing.ANSWER_IDS], negatives))
        negative_weights.append(tf.cast(tf.reduce_any(chosen, axis=1), tf.float32))

    repeated = {name: tf.concat([value] * num_negatives, axis=0) for name, value in features.items()}
    return {
        **repeated,
        "wrong_answer_ids": tf.concat(negative_ids, axis=0),
        "negative_weight": tf.concat(negative_weights, axis=0),
    }


def _matching_example(features):
    """Map a batch with negatives to (inputs, dummy target, sample weight) for the matching model."""
    inputs = {
        "question_ids": features[preprocessing.QUESTION_IDS],
        "answer_ids": features[preprocessing.ANSWER_IDS],
        "wrong_answer_ids": features["wrong_answer_ids"],
    }
    dummy_target = tf.zeros_like(features["negative_weight"])
    return inputs, dummy_target, features["negative_weight"]


def _generation_example(features):
    inputs = {
        "question_ids": features[preprocessing.QUESTION_IDS],
        "decoder_input_ids": features[preprocessing.DECODER_INPUT_IDS],
        "decoder_target_ids": features[preprocessing.DECODER_TARGET_IDS],
    }
    return (inputs,)


def _transformed_dataset(file_pattern: List[str], data_accessor, tf_transform_output, batch_size: int,
                         shuffle: bool, seed: int) -> tf.data.Dataset:
    options = tfxio.TensorFlowDatasetOptions(batch_size=batch_size, num_epochs=1, shuffle=shuffle, shuffle_seed=seed)
    return data_accessor.tf_dataset_factory(file_pattern, options, tf_transform_output.transformed_metadata.schema)


class RetrievalValidation(tf_keras.callbacks.Callback):
    """Add `val_mrr` and `val_recall_at_1` to the epoch logs: validation questions ranked among all their answers.

    This is the full-pool ranking FaqEvaluator reports, computed on the validation questions
    held out of the train split, with `components.evaluation.metrics`. The transformed features carry no question id, so
    questions with equal token ids count as one question, and answers are grouped by answer key.
    It must come before EarlyStopping and the loggers in the callback list, which read these logs.
    """

    def __init__(self, question_encoder: tf_keras.Model, answer_encoder: tf_keras.Model,
                 dataset: tf.data.Dataset):
        super().__init__()
        self.question_encoder = question_encoder
        self.answer_encoder = answer_encoder

        columns = {name: [] for name in (preprocessing.QUESTION_IDS, preprocessing.ANSWER_IDS,
                                         preprocessing.ANSWER_KEY_ID)}
        for batch in dataset:
            for name, values in columns.items():
                values.append(batch[name].numpy())
        if not columns[preprocessing.ANSWER_KEY_ID]:
            raise ValueError("The validation split has no examples, so retrieval validation cannot rank answers: "
                             "raise validation_fraction or use more data.")
        question_ids, answer_ids, answer_keys = (np.concatenate(columns[name]) for name in columns)

        self.questions, question_index, question_row = np.unique(
            question_ids, axis=0, return_index=True, return_inverse=True)
        keys, answer_index, answer_row = np.unique(answer_keys, return_index=True, return_inverse=True)
        self.answers = answer_ids[answer_index]
        correct = [set() for _ in question_index]
        for question, answer in zip(question_row.ravel(), answer_row.ravel()):
            correct[question].add(answer)
        self.correct_per_question = [np.asarray(sorted(answers), dtype=np.int64) for answers in correct]
        logging.info("Trainer: retrieval validation ranks %d validation questions among %d distinct answers",
                     len(self.questions), len(keys))

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        question_vectors = self.question_encoder.predict(self.questions, batch_size=256, verbose=0)
        answer_vectors = self.answer_encoder.predict(self.answers, batch_size=256, verbose=0)
        no_one_in_ten_sets = np.zeros([0, metrics.ONE_IN_TEN_DISTRACTORS + 1], dtype=np.int64)
        full_ranks, _ = metrics.rank_questions(
            metrics.cosine_score_function(question_vectors, answer_vectors), len(self.questions),
            self.correct_per_question, np.zeros([0], dtype=np.int64), no_one_in_ten_sets)
        logs["val_mrr"] = metrics.mean_reciprocal_rank(full_ranks)
        logs["val_recall_at_1"] = metrics.recall_at_k(full_ranks, 1)


class PerplexityLogger(tf_keras.callbacks.Callback):
    """Add `perplexity` = exp(epoch-mean per-sequence loss) to the epoch logs (and `val_perplexity`).

    This is the exponential of the mean loss, not the mean of per-batch exponentials. It must come
    before TensorBoard and the progress logger in the callback list, which read the same logs.
    """

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        for prefix in ("", "val_"):
            if f"{prefix}loss" in logs:
                logs[f"{prefix}perplexity"] = math.exp(min(logs[f"{prefix}loss"], 700.0))  # exp(700) is near float64 max.


class EpochLogger(tf_keras.callbacks.Callback):
    """Log every epoch's metrics with absl, since TFX components run without a Keras progress bar."""

    def __init__(self, label: str, epochs: int):
        super().__init__()
        self.label = label
        self.epochs = epochs
        self.started = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        metrics = " ".join(f"{name}={value:.4f}" for name, value in sorted((logs or {}).items()))
        logging.info("Trainer: %s epoch %d/%d: %s (%.1f s)", self.label, epoch + 1, self.epochs, metrics,
                     time.monotonic() - self.started)


def split_validation(dataset: tf.data.Dataset, validation_fraction: float, batch_size: int):
    """Split batched transformed rows into (train, validation) by question, so no question is in both.

    The bucket is question_id mod 1000; question ids are uniform hashes, so about
    `validation_fraction` of the questions, with all their answers, go to validation.
    """
    threshold = round(validation_fraction * 1000)

    def is_validation(features):
        return tf.math.floormod(features[preprocessing.QUESTION_KEY_ID], 1000) < threshold

    rows = dataset.unbatch()
    train = rows.filter(lambda features: tf.logical_not(is_validation(features))).batch(batch_size)
    validation = rows.filter(is_validation).batch(batch_size)
    return train, validation


def _fit(label: str, keras_model, train, evaluation, hyperparameters: Dict[str, Any], model_run_dir: str,
         metric_callbacks: List[tf_keras.callbacks.Callback], monitor: str, mode: str):
    """Fit one training model with per-epoch logging and TensorBoard; return its History dict.

    `metric_callbacks` add entries to the epoch logs, so they run before the others. Early
    stopping keeps the weights of the epoch with the best `monitor` value ("min" or "max" `mode`).
    """
    callbacks = list(metric_callbacks) + [
        EpochLogger(label, hyperparameters["epochs"]),
        tf_keras.callbacks.TensorBoard(log_dir=os.path.join(model_run_dir, label), update_freq="epoch"),
    ]
    if hyperparameters["early_stopping_patience"]:
        callbacks.append(tf_keras.callbacks.EarlyStopping(
            monitor=monitor, mode=mode, patience=hyperparameters["early_stopping_patience"],
            restore_best_weights=True))

    logging.info("Trainer: training the %s model for up to %d epochs", label, hyperparameters["epochs"])
    history = keras_model.fit(train, validation_data=evaluation, epochs=hyperparameters["epochs"],
                              callbacks=callbacks, verbose=0)
    return {name: [float(value) for value in values] for name, values in history.history.items()}


def run_fn(fn_args: tfx.components.FnArgs) -> None:
    """TFX Trainer entry point: train both models, export the inference signatures and the answer bank."""
    hyperparameters = {**DEFAULT_HYPERPARAMETERS, **(fn_args.custom_config or {})}
    tf_keras.utils.set_random_seed(hyperparameters["seed"])
    tf_transform_output = tft.TFTransformOutput(fn_args.transform_output)

    def dataset(files, shuffle):
        return _transformed_dataset(files, fn_args.data_accessor, tf_transform_output,
                                    hyperparameters["batch_size"], shuffle, hyperparameters["seed"])

    sizes = faq_model.ModelSizes(
        vocab_size=tf_transform_output.vocabulary_size_by_name(preprocessing.VOCABULARY_NAME)
        + preprocessing.NUM_RESERVED_IDS,
        embedding_dim=hyperparameters["embedding_dim"],
        encoder_units=hyperparameters["encoder_units"],
        decoder_units=hyperparameters["decoder_units"])
    logging.info("Trainer: vocabulary of %d ids (including %d reserved); hyperparameters %s",
                 sizes.vocab_size, preprocessing.NUM_RESERVED_IDS, hyperparameters)
    models = faq_model.build_models(sizes, hyperparameters["margin"], hyperparameters["learning_rate"])

    def matching_example(features):
        return _matching_example(add_in_batch_negatives(features, hyperparameters["num_negatives"]))

    # Validation (early stopping, val_* logs) uses questions held out of the train split. The eval
    # split is left to FaqEvaluator, so the epoch choice does not bias its metrics.
    def train_and_validation(shuffle):
        return split_validation(dataset(fn_args.train_files, shuffle), hyperparameters["validation_fraction"],
                                hyperparameters["batch_size"])

    # The matching model keeps its epoch with the best validation MRR over the whole answer pool,
    # because that is how it is used; its validation loss only compares a few in-batch negatives.
    retrieval_validation = RetrievalValidation(models.question_encoder, models.answer_encoder,
                                               train_and_validation(shuffle=False)[1])
    runs = (
        ("matching", models.matching, matching_example, [retrieval_validation], "val_mrr", "max"),
        ("generation", models.generation, _generation_example, [PerplexityLogger()], "val_loss", "min"),
    )
    history = {}
    for label, keras_model, to_example, metric_callbacks, monitor, mode in runs:
        train, validation = train_and_validation(shuffle=True)
        history[label] = _fit(label, keras_model, train.map(to_example), validation.map(to_example),
                              hyperparameters, fn_args.model_run_dir, metric_callbacks, monitor, mode)

    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, HISTORY_FILE), "w") as file:
        json.dump(history, file, indent=2)

    answer_bank = export.collect_answer_bank(dataset(fn_args.train_files, shuffle=False))
    export.export_serving_model(models, tf_transform_output, fn_args.serving_model_dir, answer_bank)
