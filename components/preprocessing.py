"""Transform module: tokenize questions and answers, build one shared vocabulary, pad to fixed lengths.

`preprocessing_fn` is passed to TFX Transform by its import path. The same graph runs inside the
exported model, so serving tokenizes raw strings exactly as training did.
"""

import functools
import sys
import unicodedata
from typing import Any, Dict, Optional, Tuple

import tensorflow as tf
import tensorflow_transform as tft

# Reserved token ids; vocabulary tokens start at NUM_RESERVED_IDS.
PAD_ID = 0
START_ID = 1
END_ID = 2
OOV_ID = 3
NUM_RESERVED_IDS = 4
RESERVED_TOKENS = ("<pad>", "<start>", "<end>", "<oov>")

VOCABULARY_NAME = "tokens"

# Raw feature keys (the schema) and transformed feature keys (the Trainer's inputs).
QUESTION_KEY = "question"
ANSWER_KEY = "answer"
QUESTION_ID_KEY = "question_id"
ANSWER_ID_KEY = "answer_id"
QUESTION_IDS = "question_ids"
ANSWER_IDS = "answer_ids"
DECODER_INPUT_IDS = "decoder_input_ids"
DECODER_TARGET_IDS = "decoder_target_ids"
ANSWER_KEY_ID = "answer_key"  # int64 per row; rows with equal keys share the answer text.
ANSWER_TEXT = "answer_text"  # The raw answer, passed through for the Trainer's answer bank.
QUESTION_KEY_ID = "question_key"  # int64 question_id, for the Trainer's validation split.

DEFAULT_CONFIG = {
    "max_question_length": 24,
    "max_answer_length": 32,
    "vocab_top_k": 20000,
    "vocab_min_frequency": 1,
}

# Han, Hiragana and Katakana characters, and every punctuation or symbol character, become tokens
# of their own: CJK text has no spaces between words, and "hi!" should share "hi" with "hi".
_SINGLE_CHARACTER_TOKENS = r"([\p{Han}\p{Hiragana}\p{Katakana}]|[\p{P}\p{S}])"


@functools.lru_cache(maxsize=1)
def _nfkc_character_map() -> Tuple[Tuple[int, ...], Tuple[str, ...]]:
    """Return (code points, their NFKC forms), sorted, for every character NFKC changes (about 4,900)."""
    codepoints, forms = [], []
    for codepoint in range(sys.maxunicode + 1):
        if 0xD800 <= codepoint <= 0xDFFF:
            continue  # Surrogates cannot appear in valid UTF-8.
        form = unicodedata.normalize("NFKC", chr(codepoint))
        if form != chr(codepoint):
            codepoints.append(codepoint)
            forms.append(form)
    return tuple(codepoints), tuple(forms)


def normalize_nfkc(texts: tf.Tensor) -> tf.Tensor:
    """Apply NFKC character by character, with constants and core TensorFlow ops only.

    tf.strings has no NFKC op, and tensorflow_text's op is missing from the official TF Serving
    binary, so each character is looked up (binary search) in a constant table built from
    Python's unicodedata. Unlike full NFKC it does not compose a base letter with a following
    combining mark; width variants, ligatures, compatibility ideographs and the like are covered.
    Input must be valid UTF-8.
    """
    codepoints, forms = _nfkc_character_map()
    keys = tf.constant(codepoints, tf.int32)
    characters = tf.strings.unicode_split(texts, "UTF-8")
    decoded = tf.strings.unicode_decode(texts, "UTF-8").flat_values

    position = tf.minimum(tf.searchsorted(keys, decoded, side="left"), len(codepoints) - 1)
    found = tf.equal(tf.gather(keys, position), decoded)
    normalized = tf.where(found, tf.gather(tf.constant(forms), position), characters.flat_values)
    return tf.strings.reduce_join(characters.with_flat_values(normalized), axis=1)


def tokenize(texts: tf.Tensor) -> tf.RaggedTensor:
    """Split UTF-8 strings [N] into tokens [N, None] after NFKC normalization and lowercasing.

    Invalid UTF-8 bytes become U+FFFD (a symbol, so one token each) instead of failing the batch.
    """
    texts = tf.strings.unicode_transcode(texts, "UTF-8", "UTF-8", errors="replace")
    texts = normalize_nfkc(texts)
    texts = tf.strings.lower(texts, encoding="utf-8")
    texts = tf.strings.regex_replace(texts, _SINGLE_CHARACTER_TOKENS, r" \1 ")
    return tf.strings.split(texts)


def _lookup_ids(tokens: tf.RaggedTensor, vocabulary: Any) -> tf.RaggedTensor:
    """Map tokens to ids, shifting vocabulary indices past the reserved ids; unknown tokens get OOV_ID."""
    indices = tft.apply_vocabulary(tokens.flat_values, vocabulary, default_value=-1)
    ids = tf.where(indices < 0, tf.constant(OOV_ID, tf.int64), indices + NUM_RESERVED_IDS)
    return tokens.with_flat_values(ids)


def _with_token(ids: tf.RaggedTensor, token_id: int, at_start: bool) -> tf.RaggedTensor:
    column = tf.fill(tf.stack([ids.nrows(), 1]), tf.constant(token_id, tf.int64))
    column = tf.RaggedTensor.from_tensor(column)
    return tf.concat([column, ids] if at_start else [ids, column], axis=1)


def _pad(ids: tf.RaggedTensor, length: int) -> tf.Tensor:
    """Pad with PAD_ID or truncate each row to exactly `length` ids."""
    return ids.to_tensor(default_value=PAD_ID, shape=[None, length])


def preprocessing_fn(inputs: Dict[str, tf.Tensor], custom_config: Optional[Dict[str, Any]] = None) -> Dict[str, tf.Tensor]:
    """Turn raw question/answer strings [N, 1] into padded token id matrices and the answer key."""
    config = {**DEFAULT_CONFIG, **(custom_config or {})}
    question_tokens = tokenize(tf.reshape(inputs[QUESTION_KEY], [-1]))
    answer_tokens = tokenize(tf.reshape(inputs[ANSWER_KEY], [-1]))

    all_tokens = tf.concat([question_tokens.flat_values, answer_tokens.flat_values], axis=0)
    vocabulary = tft.vocabulary(all_tokens, top_k=config["vocab_top_k"],
                                frequency_threshold=config["vocab_min_frequency"],
                                vocab_filename=VOCABULARY_NAME)

    question_ids = _lookup_ids(question_tokens, vocabulary)
    answer_ids = _lookup_ids(answer_tokens, vocabulary)
    answer_length = config["max_answer_length"]
    return {
        QUESTION_IDS: _pad(question_ids, config["max_question_length"]),
        ANSWER_IDS: _pad(answer_ids, answer_length),
        DECODER_INPUT_IDS: _pad(_with_token(answer_ids, START_ID, at_start=True), answer_length),
        DECODER_TARGET_IDS: _pad(_with_token(answer_ids, END_ID, at_start=False), answer_length),
        ANSWER_KEY_ID: tf.reshape(inputs[ANSWER_ID_KEY], [-1]),
        ANSWER_TEXT: tf.reshape(inputs[ANSWER_KEY], [-1]),
        QUESTION_KEY_ID: tf.reshape(inputs[QUESTION_ID_KEY], [-1]),
    }
