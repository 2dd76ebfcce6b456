"""Loss layers, the loss-output training models, and in-batch negatives, against hand-computed values."""

import math

import numpy as np
import pytest
import tensorflow as tf
import tf_keras

from components import model as faq_model
from components import trainer


def test_cosine_similarity_values():
    layer = faq_model.CosineSimilarity()
    left = tf.constant([[1.0, 0.0], [3.0, 4.0], [0.0, 0.0], [2.0, 2.0]])
    right = tf.constant([[0.0, 1.0], [4.0, 3.0], [1.0, 1.0], [-1.0, -1.0]])
    np.testing.assert_allclose(layer([left, right]).numpy(), [0.0, 24.0 / 25.0, 0.0, -1.0], atol=1e-6)


def test_ranking_loss_hand_values():
    layer = faq_model.RankingLoss(margin=0.3)
    cosine_right = tf.constant([0.9, 0.2, 0.5, 0.4])
    cosine_wrong = tf.constant([0.1, 0.4, 0.8, 0.1])
    # relu(0.3 + wrong - right): clamped at 0 for the first row, exactly at 0 for the last.
    np.testing.assert_allclose(layer([cosine_right, cosine_wrong]).numpy(), [0.0, 0.5, 0.6, 0.0], atol=1e-6)


def test_output_loss_returns_prediction():
    y_pred = tf.constant([0.25, 0.0, 1.5])
    np.testing.assert_array_equal(faq_model.output_loss(tf.zeros([3]), y_pred).numpy(), y_pred.numpy())


@pytest.fixture(scope="module")
def models():
    tf.keras.utils.set_random_seed(7)
    sizes = faq_model.ModelSizes(vocab_size=20, embedding_dim=8, encoder_units=6, decoder_units=5)
    return faq_model.build_models(sizes, margin=0.25, learning_rate=0.01)


def test_matching_output_equals_ranking_loss(models):
    question = np.array([[5, 6, 7, 0], [8, 0, 0, 0]], np.int64)
    right = np.array([[9, 10, 0, 0], [11, 12, 13, 0]], np.int64)
    wrong = np.array([[14, 0, 0, 0], [15, 16, 0, 0]], np.int64)

    loss = models.matching([question, right, wrong]).numpy()

    def unit(vectors):
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)

    q = unit(models.question_encoder(question).numpy())
    cosine_right = np.sum(q * unit(models.answer_encoder(right).numpy()), axis=1)
    cosine_wrong = np.sum(q * unit(models.answer_encoder(wrong).numpy()), axis=1)
    np.testing.assert_allclose(loss, np.maximum(0.0, 0.25 + cosine_wrong - cosine_right), atol=1e-5)


def test_matching_compiled_loss_is_output_mean(models):
    question = np.array([[5, 6], [8, 0], [9, 9]], np.int64)
    right = np.array([[9, 10], [11, 12], [3, 4]], np.int64)
    wrong = np.array([[14, 0], [15, 16], [17, 18]], np.int64)
    expected = models.matching([question, right, wrong]).numpy().mean()
    evaluated = models.matching.evaluate([question, right, wrong], np.zeros(3), verbose=0)
    assert evaluated == pytest.approx(expected, abs=1e-5)


def test_masked_max_pooling_skips_padding():
    layer = faq_model.MaskedGlobalMaxPooling()
    steps = tf.constant([[[1.0, -5.0], [-2.0, -1.0], [9.0, 9.0]],
                         [[-3.0, -4.0], [-1.0, -6.0], [0.0, 0.0]],
                         [[7.0, 7.0], [7.0, 7.0], [7.0, 7.0]]])
    mask = tf.constant([[True, True, False], [True, True, False], [False, False, False]])
    # Row 0 ignores the padded 9s. Row 1 keeps its negative maxima instead of the padded 0.
    # Row 2 has no unmasked step, so it pools to zeros.
    np.testing.assert_array_equal(layer(steps, mask=mask).numpy(), [[1.0, -1.0], [-1.0, -4.0], [0.0, 0.0]])


def test_encoders_ignore_trailing_padding(models):
    short = np.array([[5, 6, 7]], np.int64)
    padded = np.array([[5, 6, 7, 0, 0, 0]], np.int64)
    np.testing.assert_allclose(models.answer_encoder(padded).numpy(), models.answer_encoder(short).numpy(), atol=1e-6)
    np.testing.assert_allclose(models.question_encoder(padded).numpy(), models.question_encoder(short).numpy(),
                               atol=1e-6)


def test_untrained_question_encoder_equals_answer_encoder():
    # The identity-initialized Dense makes both untrained encoders one function, so a text is
    # its own nearest answer before training.
    sizes = faq_model.ModelSizes(vocab_size=20, embedding_dim=8, encoder_units=6, decoder_units=5)
    untrained = faq_model.build_models(sizes, margin=0.25, learning_rate=0.01)
    ids = np.array([[5, 6, 7, 0], [8, 9, 0, 0], [19, 4, 4, 4]], np.int64)
    np.testing.assert_allclose(untrained.question_encoder(ids).numpy(), untrained.answer_encoder(ids).numpy(),
                               atol=1e-6)


def test_question_encoder_has_dense_answer_does_not(models):
    question_layers = {layer.name for layer in models.question_encoder.layers}
    answer_layers = {layer.name for layer in models.answer_encoder.layers}
    assert "question_projection" in question_layers
    assert "question_projection" not in answer_layers
    assert {"matching_embedding", "matching_lstm"} <= question_layers & answer_layers


def test_masked_loss_uniform_logits():
    # Uniform logits over 4 classes: every target token costs log(4), whatever the target.
    logits = tf.zeros([2, 3, 4])
    targets = tf.constant([[1, 2, 0], [3, 0, 0]], tf.int64)
    np.testing.assert_allclose(faq_model.masked_sequence_loss(targets, logits).numpy(),
                               [math.log(4.0), math.log(4.0)], rtol=1e-6)


def test_masked_loss_per_sequence_average():
    logits = tf.math.log(tf.constant([[[0.5, 0.5, 1e-9], [0.1, 0.9, 1e-9]]]))
    targets = tf.constant([[1, 1]], tf.int64)
    expected = (-math.log(0.5) - math.log(0.9)) / 2
    np.testing.assert_allclose(faq_model.masked_sequence_loss(targets, logits).numpy(), [expected], rtol=1e-5)


def test_masked_loss_ignores_pad_logits():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 5, 7)).astype(np.float32)
    targets = tf.constant([[3, 4, 2, 0, 0], [5, 2, 0, 0, 0]], tf.int64)
    changed = logits.copy()
    changed[0, 3:] = rng.normal(size=(2, 7)) * 100
    changed[1, 2:] = rng.normal(size=(3, 7)) * 100
    original = faq_model.masked_sequence_loss(targets, tf.constant(logits)).numpy()
    np.testing.assert_allclose(faq_model.masked_sequence_loss(targets, tf.constant(changed)).numpy(), original)


def test_masked_loss_all_padding_is_zero():
    loss = faq_model.masked_sequence_loss(tf.zeros([1, 3], tf.int64), tf.random.normal([1, 3, 4]))
    np.testing.assert_array_equal(loss.numpy(), [0.0])


def test_masked_token_accuracy_counts_tokens():
    layer = faq_model.MaskedSequenceLoss()
    # Argmax per position: row 0 -> [1, 2, 2], row 1 -> [3, 3, 1].
    logits = tf.one_hot([[1, 2, 2], [3, 3, 1]], depth=4) * 10.0
    targets = tf.constant([[1, 3, 0], [3, 0, 0]], tf.int64)  # 3 real tokens, 2 of them predicted.
    layer([targets, logits])
    assert layer.token_accuracy.result().numpy() == pytest.approx(2.0 / 3.0)


def test_generation_perplexity_is_exp_loss(models):
    rng = np.random.default_rng(1)
    inputs = {
        "question_ids": rng.integers(4, 20, size=(16, 5)),
        "decoder_input_ids": rng.integers(4, 20, size=(16, 6)),
        "decoder_target_ids": rng.integers(4, 20, size=(16, 6)),
    }
    inputs["decoder_target_ids"][:, 4:] = 0
    dataset = tf.data.Dataset.from_tensor_slices(inputs).batch(8).map(lambda batch: (batch,))
    history = models.generation.fit(dataset, validation_data=dataset, epochs=2, verbose=0,
                                    callbacks=[trainer.PerplexityLogger()]).history
    for epoch in range(2):
        assert history["perplexity"][epoch] == pytest.approx(math.exp(history["loss"][epoch]), rel=1e-9)
        assert history["val_perplexity"][epoch] == pytest.approx(math.exp(history["val_loss"][epoch]), rel=1e-9)
    assert 0.0 <= history["masked_token_accuracy"][-1] <= 1.0


def test_in_batch_negatives_never_share_key():
    features = {
        "answer_key": tf.constant([5, 5, 7, 8], tf.int64),
        "answer_ids": tf.constant([[10], [11], [12], [13]], tf.int64),
    }
    batch = trainer.add_in_batch_negatives(features)
    # Row 0 skips row 1 (same key 5) and takes row 2; the others take the next row.
    np.testing.assert_array_equal(batch["wrong_answer_ids"].numpy().ravel(), [12, 12, 13, 10])
    np.testing.assert_array_equal(batch["negative_weight"].numpy(), [1.0, 1.0, 1.0, 1.0])


def test_in_batch_negatives_several_per_row():
    features = {
        "answer_key": tf.constant([5, 5, 7, 8], tf.int64),
        "answer_ids": tf.constant([[10], [11], [12], [13]], tf.int64),
    }
    batch = trainer.add_in_batch_negatives(features, num_negatives=2)
    # Rows 0-3 take the first valid partner after them and rows 4-7 the second. Rows 0 and 1 skip key 5.
    np.testing.assert_array_equal(batch["answer_ids"].numpy().ravel(), [10, 11, 12, 13, 10, 11, 12, 13])
    np.testing.assert_array_equal(batch["answer_key"].numpy(), [5, 5, 7, 8, 5, 5, 7, 8])
    np.testing.assert_array_equal(batch["wrong_answer_ids"].numpy().ravel(), [12, 12, 13, 10, 13, 13, 10, 11])
    np.testing.assert_array_equal(batch["negative_weight"].numpy(), [1.0] * 8)


def test_in_batch_negatives_fewer_partners_than_requested():
    features = {"answer_key": tf.constant([3, 3, 4], tf.int64), "answer_ids": tf.constant([[1], [2], [9]], tf.int64)}
    batch = trainer.add_in_batch_negatives(features, num_negatives=2)
    # Rows with key 3 have one partner (key 4), so their second negative is masked out.
    np.testing.assert_array_equal(batch["negative_weight"].numpy(), [1.0, 1.0, 1.0, 0.0, 0.0, 1.0])
    np.testing.assert_array_equal(batch["wrong_answer_ids"].numpy().ravel()[[0, 1, 2, 5]], [9, 9, 1, 2])


def test_in_batch_negatives_rejects_zero():
    features = {"answer_key": tf.constant([1, 2], tf.int64), "answer_ids": tf.constant([[1], [2]], tf.int64)}
    with pytest.raises(ValueError, match="num_negatives=0"):
        trainer.add_in_batch_negatives(features, num_negatives=0)


def _first_token_encoder():
    ids = tf_keras.Input(shape=(None,), dtype=tf.int64)
    one_hot = tf_keras.layers.Lambda(lambda batch: tf.one_hot(batch[:, 0], depth=10))(ids)
    return tf_keras.Model(ids, one_hot)


def _retrieval_eval_dataset(rows):
    columns = {
        "question_ids": np.array([row[0] for row in rows], np.int64),
        "answer_ids": np.array([row[1] for row in rows], np.int64),
        "answer_key": np.array([row[2] for row in rows], np.int64),
    }
    return tf.data.Dataset.from_tensor_slices(columns).batch(2)


def test_retrieval_validation_hand_ranks():
    # Encoders embed the first token one-hot. Question [1] has two correct answers and ranks
    # answer [1] first. Question [2] matches no answer, so its correct answer ties at cosine 0
    # with both wrong ones and ranks last (3) by the pessimistic tie rule.
    rows = [([1, 0], [1, 0], 100), ([2, 0], [3, 0], 200), ([1, 0], [4, 0], 300)]
    callback = trainer.RetrievalValidation(_first_token_encoder(), _first_token_encoder(),
                                           _retrieval_eval_dataset(rows))
    logs = {}
    callback.on_epoch_end(0, logs)
    assert logs["val_mrr"] == pytest.approx((1.0 + 1.0 / 3.0) / 2.0)
    assert logs["val_recall_at_1"] == pytest.approx(0.5)
    assert len(callback.questions) == 2
    assert len(callback.answers) == 3


def test_retrieval_validation_rejects_empty_split():
    empty = _retrieval_eval_dataset([([1, 0], [1, 0], 1)]).take(0)
    with pytest.raises(ValueError, match="no examples"):
        trainer.RetrievalValidation(_first_token_encoder(), _first_token_encoder(), empty)


def test_in_batch_negatives_without_partner():
    same_keys = {"answer_key": tf.constant([3, 3], tf.int64), "answer_ids": tf.constant([[1], [2]], tf.int64)}
    np.testing.assert_array_equal(trainer.add_in_batch_negatives(same_keys)["negative_weight"].numpy(), [0.0, 0.0])

    single = {"answer_key": tf.constant([3], tf.int64), "answer_ids": tf.constant([[1]], tf.int64)}
    np.testing.assert_array_equal(trainer.add_in_batch_negatives(single)["negative_weight"].numpy(), [0.0])
