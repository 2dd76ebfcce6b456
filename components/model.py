"""Keras (tf_keras, Keras 2 API) models: a dual encoder for matching and a seq2seq answer generator.

Both training models output or attach their own loss:
- The matching training model's output IS the ranking loss, so it is compiled with
  `loss=lambda y_true, y_pred: y_pred` and fitted against a dummy target.
- The generation training model attaches its masked cross-entropy with `add_loss` and is compiled
  with `loss=None`.
Inference uses the sub-models (question encoder, answer encoder, generation encoder, decoder),
which share their layers, and so their trained weights, with the training models.
"""

import dataclasses

import tensorflow as tf
import tf_keras

from components import preprocessing

MATCHING_LOSS_NAME = "ranking_loss"
GENERATION_LOSS_NAME = "sequence_loss"
TOKEN_ACCURACY_NAME = "masked_token_accuracy"


def output_loss(y_true: tf.Tensor, y_pred: tf.Tensor) -> tf.Tensor:
    """Keras loss for a model whose output already is the per-example loss; the dummy target is ignored."""
    del y_true
    return y_pred


class CosineSimilarity(tf_keras.layers.Layer):
    """Cosine of two batches of vectors [N, d] -> [N], by the dot product of L2-normalized rows.

    Zero vectors (e.g. an all-padding input) have cosine 0 with everything instead of NaN.
    """

    def call(self, inputs):
        left, right = inputs
        left = tf.math.l2_normalize(left, axis=-1)
        right = tf.math.l2_normalize(right, axis=-1)
        return tf.reduce_sum(left * right, axis=-1)


class RankingLoss(tf_keras.layers.Layer):
    """Hinge ranking loss per example: relu(margin + cos(q, a_wrong) - cos(q, a_right)), shape [N]."""

    def __init__(self, margin: float, **kwargs):
        super().__init__(**kwargs)
        self.margin = margin

    def call(self, inputs):
        cosine_right, cosine_wrong = inputs
        return tf.nn.relu(self.margin + cosine_wrong - cosine_right)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


class MaskedGlobalMaxPooling(tf_keras.layers.Layer):
    """Max over the unmasked time steps, [N, T, d] -> [N, d]. A sequence with no unmasked step pools to zeros.

    GlobalMaxPooling1D in tf_keras 2.16 ignores the mask, so values at padding positions would
    enter the max.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.supports_masking = True

    def call(self, inputs, mask=None):
        if mask is None:
            return tf.reduce_max(inputs, axis=1)
        mask = tf.cast(mask, tf.bool)
        lowest = tf.fill(tf.shape(inputs), inputs.dtype.min)
        pooled = tf.reduce_max(tf.where(mask[:, :, None], inputs, lowest), axis=1)
        has_steps = tf.reduce_any(mask, axis=1, keepdims=True)
        return tf.where(has_steps, pooled, tf.zeros_like(pooled))

    def compute_mask(self, inputs, mask=None):
        return None


def masked_sequence_loss(target_ids: tf.Tensor, logits: tf.Tensor) -> tf.Tensor:
    """Sparse softmax cross-entropy per sequence [N], averaged over non-padding target positions.

    Padding positions (target id PAD_ID) contribute nothing, so their logits do not change the loss.
    A sequence with no target token has loss 0.
    """
    mask = tf.cast(tf.not_equal(target_ids, preprocessing.PAD_ID), logits.dtype)
    token_loss = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=target_ids, logits=logits)
    return tf.reduce_sum(token_loss * mask, axis=1) / tf.maximum(tf.reduce_sum(mask, axis=1), 1.0)


class MaskedSequenceLoss(tf_keras.layers.Layer):
    """Attach the mean masked sequence loss with `add_loss` and track masked token accuracy.

    Accuracy is token-weighted over the whole epoch (correct non-padding tokens / non-padding
    tokens), not a mean of per-batch accuracies. Returns the per-sequence loss [N].
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.token_accuracy = tf_keras.metrics.Mean(name=TOKEN_ACCURACY_NAME)

    def call(self, inputs):
        target_ids, logits = inputs
        sequence_loss = masked_sequence_loss(target_ids, logits)
        self.add_loss(tf.reduce_mean(sequence_loss))

        mask = tf.cast(tf.not_equal(target_ids, preprocessing.PAD_ID), tf.float32)
        correct = tf.cast(tf.equal(tf.argmax(logits, axis=-1, output_type=target_ids.dtype), target_ids), tf.float32)
        self.add_metric(self.token_accuracy(correct, sample_weight=mask))
        return sequence_loss


@dataclasses.dataclass(frozen=True)
class ModelSizes:
    """Sizes of the layers; vocab_size includes the reserved ids."""

    vocab_size: int
    embedding_dim: int = 64
    encoder_units: int = 128
    decoder_units: int = 128


@dataclasses.dataclass
class FaqModels:
    """Training models and the inference sub-models that share their weights."""

    matching: tf_keras.Model  # (question_ids, answer_ids, wrong_answer_ids) -> ranking loss [N]
    generation: tf_keras.Model  # (question_ids, decoder_input_ids, decoder_target_ids) -> sequence loss [N]
    question_encoder: tf_keras.Model  # question_ids [N, Tq] -> [N, encoder_units]
    answer_encoder: tf_keras.Model  # answer_ids [N, Ta] -> [N, encoder_units]
    decoder_logits: tf_keras.Model  # (question_ids, decoder_input_ids) -> logits [N, Ta, vocab_size]


def _ids_input(name: str) -> tf_keras.Input:
    return tf_keras.Input(shape=(None,), dtype=tf.int64, name=name)


def build_encoders(sizes: ModelSizes):
    """Build the question and answer encoders over one shared Embedding and LSTM.

    Each encoder max-pools the LSTM outputs over the tokens, so a word shared by a question and
    an answer tends to raise the same features on both sides. The question side's Dense layer
    starts as the identity, so before training both encoders compute the same function and
    ranking starts from word overlap instead of from random projections.
    """
    embedding = tf_keras.layers.Embedding(sizes.vocab_size, sizes.embedding_dim, mask_zero=True,
                                          name="matching_embedding")
    lstm = tf_keras.layers.LSTM(sizes.encoder_units, return_sequences=True, name="matching_lstm")
    pooling = MaskedGlobalMaxPooling(name="matching_max_pooling")

    def encode(ids):
        return pooling(lstm(embedding(ids)))

    answer_ids = _ids_input("answer_ids")
    answer_encoder = tf_keras.Model(answer_ids, encode(answer_ids), name="answer_encoder")

    question_ids = _ids_input("question_ids")
    projection = tf_keras.layers.Dense(sizes.encoder_units, kernel_initializer="identity",
                                       name="question_projection")
    question_encoder = tf_keras.Model(question_ids, projection(encode(question_ids)), name="question_encoder")
    return question_encoder, answer_encoder


def build_matching_model(question_encoder, answer_encoder, margin: float) -> tf_keras.Model:
    """Compose the encoders into the training model whose output is the ranking loss [N]."""
    question_ids = _ids_input("question_ids")
    answer_ids = _ids_input("answer_ids")
    wrong_answer_ids = _ids_input("wrong_answer_ids")

    question_vector = question_encoder(question_ids)
    cosine_right = CosineSimilarity(name="cosine_right")([question_vector, answer_encoder(answer_ids)])
    cosine_wrong = CosineSimilarity(name="cosine_wrong")([question_vector, answer_encoder(wrong_answer_ids)])
    loss = RankingLoss(margin, name=MATCHING_LOSS_NAME)([cosine_right, cosine_wrong])
    return tf_keras.Model([question_ids, answer_ids, wrong_answer_ids], loss, name="matching_training")


def build_generation_models(sizes: ModelSizes):
    """Build the decoder-logits inference model and the training model with the attached masked loss."""
    embedding = tf_keras.layers.Embedding(sizes.vocab_size, sizes.embedding_dim, mask_zero=True,
                                          name="generation_embedding")
    encoder_lstm = tf_keras.layers.LSTM(sizes.decoder_units, return_state=True, name="generation_encoder_lstm")
    decoder_lstm = tf_keras.layers.LSTM(sizes.decoder_units, return_sequences=True, name="decoder_lstm")
    output_layer = tf_keras.layers.Dense(sizes.vocab_size, name="decoder_logits")

    question_ids = _ids_input("question_ids")
    decoder_input_ids = _ids_input("decoder_input_ids")
    _, state_h, state_c = encoder_lstm(embedding(question_ids))
    decoder_states = decoder_lstm(embedding(decoder_input_ids), initial_state=[state_h, state_c])
    logits = output_layer(decoder_states)
    decoder_logits = tf_keras.Model([question_ids, decoder_input_ids], logits, name="decoder")

    decoder_target_ids = _ids_input("decoder_target_ids")
    sequence_loss = MaskedSequenceLoss(name=GENERATION_LOSS_NAME)([decoder_target_ids, logits])
    generation = tf_keras.Model([question_ids, decoder_input_ids, decoder_target_ids], sequence_loss,
                                name="generation_training")
    return generation, decoder_logits


def build_models(sizes: ModelSizes, margin: float, learning_rate: float) -> FaqModels:
    """Build and compile both training models and return them with their inference sub-models."""
    question_encoder, answer_encoder = build_encoders(sizes)
    matching = build_matching_model(question_encoder, answer_encoder, margin)
    # The sample weight masks rows without a valid negative; no metric needs weighting.
    matching.compile(optimizer=tf_keras.optimizers.Adam(learning_rate), loss=output_loss, weighted_metrics=[])

    generation, decoder_logits = build_generation_models(sizes)
    generation.compile(optimizer=tf_keras.optimizers.Adam(learning_rate), loss=None)
    return FaqModels(matching, generation, question_encoder, answer_encoder, decoder_logits)
