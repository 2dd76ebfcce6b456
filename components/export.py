"""Export the inference signatures, which take raw strings, as a SavedModel for TF Serving.

The exported object tracks the TFT layer (its vocabulary asset and tables) and the model
variables, never the Keras training models: the training graph and its loss are not exported,
and skipping Keras' per-layer call tracing keeps the export fast.
"""

import json
import os
from typing import Dict, List, Tuple

import tensorflow as tf
from absl import logging

from components import model as faq_model
from components import preprocessing

SIGNATURE_NAMES = ("encode_question", "encode_answer", "decode")
ANSWER_BANK_FILE = "answer_bank.jsonl"  # In <SavedModel>/assets.extra/, which TF Serving ignores.

_STRINGS = tf.TensorSpec([None], tf.string)


class _Untracked:
    """Hold Keras models out of tf.Module's attribute tracking, so tf.saved_model.save skips them."""

    def __init__(self, models: faq_model.FaqModels):
        self.models = models


def _unit_or_zero(vectors: tf.Tensor, ids: tf.Tensor) -> tf.Tensor:
    """L2-normalize rows, and zero the rows whose input has no token, so their cosine with anything is 0."""
    has_tokens = tf.reduce_any(tf.not_equal(ids, preprocessing.PAD_ID), axis=1, keepdims=True)
    return tf.math.l2_normalize(vectors, axis=-1) * tf.cast(has_tokens, vectors.dtype)


class FaqServingModule(tf.Module):
    """The object saved as the serving SavedModel: the TFT layer, the variables and the signatures."""

    def __init__(self, models: faq_model.FaqModels, tf_transform_output):
        super().__init__(name="faq_serving")
        self.tft_layer = tf_transform_output.transform_features_layer()
        self._keras = _Untracked(models)
        self.model_variables = [variable for keras_model in (models.question_encoder, models.answer_encoder,
                                                             models.decoder_logits)
                                for variable in keras_model.variables]
        vocabulary = tf_transform_output.vocabulary_by_name(preprocessing.VOCABULARY_NAME)
        self.id_to_token = tf.constant([token.encode("utf-8") for token in preprocessing.RESERVED_TOKENS]
                                       + list(vocabulary))

    def _transform(self, question: tf.Tensor, answer: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Run the Transform graph on [N] strings; the ids it needs are irrelevant at inference (zeros)."""
        tf.debugging.assert_equal(tf.shape(question), tf.shape(answer),
                                  message="question and answer must have the same number of rows")
        zeros = tf.zeros([tf.shape(question)[0], 1], tf.int64)
        return self.tft_layer({
            preprocessing.QUESTION_KEY: tf.reshape(question, [-1, 1]),
            preprocessing.ANSWER_KEY: tf.reshape(answer, [-1, 1]),
            preprocessing.QUESTION_ID_KEY: zeros,
            preprocessing.ANSWER_ID_KEY: zeros,
        })

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="question")])
    def encode_question(self, question):
        """Unit-length embeddings; a text with no tokens (e.g. "") gets the zero vector."""
        features = self._transform(question, tf.zeros_like(question))
        ids = features[preprocessing.QUESTION_IDS]
        return {"embedding": _unit_or_zero(self._keras.models.question_encoder(ids), ids)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="answer")])
    def encode_answer(self, answer):
        """Unit-length embeddings; a text with no tokens (e.g. "") gets the zero vector."""
        features = self._transform(tf.zeros_like(answer), answer)
        ids = features[preprocessing.ANSWER_IDS]
        return {"embedding": _unit_or_zero(self._keras.models.answer_encoder(ids), ids)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="question"),
                                  tf.TensorSpec([None], tf.string, name="answer")])
    def decode(self, question, answer):
        """Teacher-forced decoder output for the given answer: per-position distributions and argmax."""
        features = self._transform(question, answer)
        logits = self._keras.models.decoder_logits(
            [features[preprocessing.QUESTION_IDS], features[preprocessing.DECODER_INPUT_IDS]])
        target_ids = features[preprocessing.DECODER_TARGET_IDS]
        mask = tf.cast(tf.not_equal(target_ids, preprocessing.PAD_ID), tf.float32)

        token_log_probabilities = -tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target_ids, logits=logits)
        predicted_ids = tf.argmax(logits, axis=-1, output_type=tf.int64)
        return {
            "probabilities": tf.nn.softmax(logits, axis=-1),
            "predicted_ids": predicted_ids,
            "predicted_tokens": tf.gather(self.id_to_token, predicted_ids),
            "target_ids": target_ids,
            "log_probability": tf.reduce_sum(token_log_probabilities * mask, axis=1),
            "target_length": tf.reduce_sum(tf.cast(mask, tf.int64), axis=1),
        }


def collect_answer_bank(dataset: tf.data.Dataset) -> List[Tuple[int, str]]:
    """Return the distinct (answer_id, answer) of a transformed dataset, sorted by id."""
    answers: Dict[int, str] = {}
    for batch in dataset:
        keys = batch[preprocessing.ANSWER_KEY_ID].numpy()
        texts = batch[preprocessing.ANSWER_TEXT].numpy()
        for key, text in zip(keys, texts):
            answers.setdefault(int(key), text.decode("utf-8"))
    return sorted(answers.items())


def write_answer_bank(serving_model_dir: str, answer_bank: List[Tuple[int, str]]) -> str:
    path = os.path.join(serving_model_dir, "assets.extra", ANSWER_BANK_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as file:
        for answer_id, answer in answer_bank:
            file.write(json.dumps({"answer_id": answer_id, "answer": answer}, ensure_ascii=False) + "\n")
    return path


def export_serving_model(models: faq_model.FaqModels, tf_transform_output, serving_model_dir: str,
                         answer_bank: List[Tuple[int, str]]) -> None:
    """Save the three inference signatures and the answer bank under `serving_model_dir`."""
    module = FaqServingModule(models, tf_transform_output)
    signatures = {name: getattr(module, name) for name in SIGNATURE_NAMES}
    logging.info("Trainer: exporting signatures %s to %s", ", ".join(SIGNATURE_NAMES), serving_model_dir)
    tf.saved_model.save(module, serving_model_dir, signatures=signatures)
    path = write_answer_bank(serving_model_dir, answer_bank)
    logging.info("Trainer: wrote %d answers to %s", len(answer_bank), path)
