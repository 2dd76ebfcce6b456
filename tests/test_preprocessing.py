"""Tokenization and the Transform preprocessing_fn, run with real tf.Transform on in-memory data."""

import tempfile

import numpy as np
import pytest
import tensorflow as tf
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from components import preprocessing


def _tokens(text) -> list:
    return [token.decode("utf-8") for token in preprocessing.tokenize(tf.constant([text]))[0].numpy()]


def test_tokenize_english_punctuation():
    assert _tokens("Hello, World!") == ["hello", ",", "world", "!"]
    assert _tokens("What's up?") == ["what", "'", "s", "up", "?"]
    assert _tokens("  multiple   spaces\nand\tlines ") == ["multiple", "spaces", "and", "lines"]


def test_tokenize_chinese_characters():
    assert _tokens("你好，世界") == ["你", "好", ",", "世", "界"]
    assert _tokens("我爱Python编程") == ["我", "爱", "python", "编", "程"]
    assert _tokens("日本語のテスト") == ["日", "本", "語", "の", "テ", "ス", "ト"]


def test_tokenize_nfkc_lowercase():
    assert _tokens("ＡＢＣ１２３") == ["abc123"]  # Full-width letters and digits.
    assert _tokens("ﬁle") == ["file"]  # The ligature U+FB01.
    assert _tokens("Ÿes ÉCOLE") == ["ÿes", "école"]
    assert _tokens("a\u3000b") == ["a", "b"]  # Ideographic space.


def test_tokenize_empty_and_invalid_utf8():
    assert _tokens("") == []
    assert _tokens("   ") == []
    assert _tokens(b"bad\xff byte") == ["bad", "\ufffd", "byte"]


def _run_transform(rows, custom_config):
    feature_spec = {
        "question": tf.io.FixedLenFeature([1], tf.string),
        "answer": tf.io.FixedLenFeature([1], tf.string),
        "question_id": tf.io.FixedLenFeature([1], tf.int64),
        "answer_id": tf.io.FixedLenFeature([1], tf.int64),
    }
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(feature_spec))
    instances = [{"question": [q.encode()], "answer": [a.encode()], "question_id": [i], "answer_id": [100 + i]}
                 for i, (q, a) in enumerate(rows)]

    def preprocessing_fn(inputs):
        return preprocessing.preprocessing_fn(inputs, custom_config)

    with tft_beam.Context(temp_dir=tempfile.mkdtemp()):
        (transformed, _), transform_fn = (instances, metadata) | tft_beam.AnalyzeAndTransformDataset(
            preprocessing_fn, output_record_batches=False)
    return transformed, transform_fn


# "b" appears 4 times, "a" 3 times, "c" 2 times, "d" once: the vocabulary is ordered by frequency.
ROWS = [
    ("b b a", "b a c"),
    ("a b", "c d"),
]
CONFIG = {"max_question_length": 3, "max_answer_length": 4, "vocab_top_k": 100, "vocab_min_frequency": 1}
B, A, C, D = 4, 5, 6, 7  # Vocabulary index + NUM_RESERVED_IDS.


@pytest.fixture(scope="module")
def transformed_rows():
    transformed, _ = _run_transform(ROWS, CONFIG)
    return transformed


def test_reserved_ids():
    assert preprocessing.PAD_ID == 0
    assert preprocessing.START_ID == 1
    assert preprocessing.END_ID == 2
    assert preprocessing.OOV_ID == 3
    assert preprocessing.NUM_RESERVED_IDS == 4


def test_preprocessing_exact_ids(transformed_rows):
    first = transformed_rows[0]
    np.testing.assert_array_equal(first["question_ids"], [B, B, A])
    np.testing.assert_array_equal(first["answer_ids"], [B, A, C, 0])
    np.testing.assert_array_equal(first["decoder_input_ids"], [1, B, A, C])
    np.testing.assert_array_equal(first["decoder_target_ids"], [B, A, C, 2])
    assert first["answer_key"] == 100
    assert first["answer_text"] == b"b a c"

    second = transformed_rows[1]
    np.testing.assert_array_equal(second["question_ids"], [A, B, 0])
    np.testing.assert_array_equal(second["answer_ids"], [C, D, 0, 0])
    np.testing.assert_array_equal(second["decoder_input_ids"], [1, C, D, 0])
    np.testing.assert_array_equal(second["decoder_target_ids"], [C, D, 2, 0])


def _ids_for(question, answer):
    """Transform one extra row alongside ROWS, so the vocabulary stays b, a, c, d, then the new tokens."""
    transformed, _ = _run_transform(ROWS + [(question, answer)], CONFIG)
    return transformed[-1]


def test_padding_and_truncation_lengths():
    # max_question_length 3: 2 tokens (L-1), 3 (L), 4 (L+1) and the empty string.
    row = _ids_for("a b", "")
    np.testing.assert_array_equal(row["question_ids"], [A, B, 0])
    np.testing.assert_array_equal(row["answer_ids"], [0, 0, 0, 0])
    np.testing.assert_array_equal(row["decoder_input_ids"], [1, 0, 0, 0])
    np.testing.assert_array_equal(row["decoder_target_ids"], [2, 0, 0, 0])

    row = _ids_for("a b c", "a b c")  # answer of L-1 = 3 tokens: END still fits.
    np.testing.assert_array_equal(row["question_ids"], [A, B, C])
    np.testing.assert_array_equal(row["decoder_input_ids"], [1, A, B, C])
    np.testing.assert_array_equal(row["decoder_target_ids"], [A, B, C, 2])

    row = _ids_for("a b c d", "a b c d")  # L+1 question tokens; an answer of exactly L tokens.
    np.testing.assert_array_equal(row["question_ids"], [A, B, C])
    np.testing.assert_array_equal(row["answer_ids"], [A, B, C, D])
    np.testing.assert_array_equal(row["decoder_input_ids"], [1, A, B, C])
    np.testing.assert_array_equal(row["decoder_target_ids"], [A, B, C, D])  # END is truncated away.


def test_preprocessing_chinese_and_oov():
    transformed, _ = _run_transform(ROWS + [("你好", "你")], {**CONFIG, "vocab_min_frequency": 2})
    # With a minimum frequency of 2 the vocabulary is b (4), a (3), then the ties at 2 in
    # descending byte order: "你" (0xE4...) before "c". "d" and "好" (1 each) are out of vocabulary.
    you, c = 6, 7
    chinese_row = transformed[-1]
    np.testing.assert_array_equal(chinese_row["question_ids"], [you, preprocessing.OOV_ID, 0])
    np.testing.assert_array_equal(chinese_row["answer_ids"], [you, 0, 0, 0])
    np.testing.assert_array_equal(transformed[1]["answer_ids"], [c, preprocessing.OOV_ID, 0, 0])
