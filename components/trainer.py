"""Trainer module: `run_fn` trains the matching and generation models and exports the inference signatures.

The two models share no layers, so they train one after the other; each keeps the weights of its
best validation epoch when early stopping is on. Only `components.export` decides what is exported.
"""

import json
import math
import os
import time
from typing import Any, Dict, List

import tensorflow as tf
import tensorflow_transform as tft
import tf_keras
from absl import logging
from tfx import v1 as tfx
from tfx_bsl.public import tfxio

from components import export
from components import model as faq_model
from components import preprocessing

DEFAULT_HYPERPARAMETERS = {
    "embedding_dim": 64,
    "encoder_units": 128,
    "decoder_units": 128,
    "margin": 0.3,
    "epochs": 20,
    "batch_size": 64,
    "learning_rate": 0.002,
    "early_stopping_patience": 5,
    "seed": 42,
}
HISTORY_FILE = "training_history.json"


def add_in_batch_negatives(features: Dict[str, tf.Tensor]) -> Dict[str, tf.Tensor]:
    """Add `wrong_answer_ids` [B, T] and `negative_weight` [B] to a batch of transformed features.

    Row i takes the answer of the first row after it (cyclically) whose answer key differs, so a
    wrong answer never has the right answer's text. A row with no such partner in the batch gets
    weight 0 and so adds nothing to the loss.
    """
    keys = features[preprocessing.ANSWER_KEY_ID]
    batch_size = tf.shape(keys)[0]
    rows = tf.range(batch_size)

    # candidates[i, s] is row i + s + 1 (mod B); the extra last column, row i itself, keeps
    # argmax defined when no candidate is valid (B == 1 or all keys equal).
    candidates = (rows[:, None] + tf.range(1, batch_size)[None, :]) % batch_size
    candidates = tf.concat([candidates, rows[:, None]], axis=1)
    valid = tf.not_equal(tf.gather(keys, candidates), keys[:, None])
    first_valid = tf.argmax(tf.cast(valid, tf.int32), axis=1, output_type=tf.int32)
    negatives = tf.gather(candidates, first_valid, batch_dims=1)

    return {
        **features,
        "wrong_answer_ids": tf.gather(features[preprocessing.ANSWER_IDS], negatives),
        "negative_weight": tf.cast(tf.reduce_any(valid, axis=1), tf.float32),
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


def _fit(label: str, keras_model, train, evaluation, hyperparameters: Dict[str, Any], model_run_dir: str):
    """Fit one training model with per-epoch logging and TensorBoard; return its History dict."""
    callbacks = [PerplexityLogger()] if label == "generation" else []
    callbacks += [
        EpochLogger(label, hyperparameters["epochs"]),
        tf_keras.callbacks.TensorBoard(log_dir=os.path.join(model_run_dir, label), update_freq="epoch"),
    ]
    if hyperparameters["early_stopping_patience"]:
        callbacks.append(tf_keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=hyperparameters["early_stopping_patience"], restore_best_weights=True))

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

    history = {}
    matching_example = lambda features: _matching_example(add_in_batch_negatives(features))
    for label, keras_model, to_example in (("matching", models.matching, matching_example),
                                          ("generation", models.generation, _generation_example)):
        train = dataset(fn_args.train_files, shuffle=True).map(to_example)
        evaluation = dataset(fn_args.eval_files, shuffle=False).map(to_example)
        history[label] = _fit(label, keras_model, train, evaluation, hyperparameters, fn_args.model_run_dir)

    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, HISTORY_FILE), "w") as file:
        json.dump(history, file, indent=2)

    answer_bank = export.collect_answer_bank(dataset(fn_args.train_files, shuffle=False))
    export.export_serving_model(models, tf_transform_output, fn_args.serving_model_dir, answer_bank)
