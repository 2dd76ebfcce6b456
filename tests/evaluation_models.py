"""Small SavedModels that follow the trainer's serving signature contract, for evaluation tests.

Signatures, all on raw strings [N]:
  encode_question(question), encode_answer(answer) -> embedding float32 [N, D]
  decode(question, answer) -> probabilities [N, T, V], predicted_ids, predicted_tokens,
      target_ids, log_probability, target_length
`assets.extra/answer_bank.jsonl` is written next to the SavedModel as the contract requires.

Embedding kinds:
  "oracle": text -> one-hot of its group index from `groups`, so a question and its correct
      answers share one embedding. Unknown text embeds as the zero vector.
  "constant": every text embeds as the same unit vector.
  "nan": every embedding is NaN.

Decoder: answers are split on whitespace, each word maps to 4 + (hash mod (V - 4)), and END
(id 2) follows. The decoder puts probability `target_probability` on the target token at
every position and spreads the rest evenly over the other V - 1 ids. Its perplexity is
therefore exactly 1 / target_probability, and its masked token accuracy is 1 when
target_probability > 1 / V and 0 when the distribution is uniform (argmax picks id 0).
"""

import json
import os
from typing import Dict, Optional

import tensorflow as tf

END_ID = 2
FIRST_WORD_ID = 4
EMBEDDING_SIZE = 32


class _FaqTestModule(tf.Module):

    def __init__(self, kind: str, groups: Dict[str, int], vocabulary_size: int,
                 target_probability: float):
        super().__init__()
        if kind not in ("oracle", "constant", "nan"):
            raise ValueError(f"Unknown embedding kind {kind!r}. Use oracle, constant or nan.")
        if max(groups.values(), default=0) >= EMBEDDING_SIZE:
            raise ValueError(f"Group indices must be below {EMBEDDING_SIZE}.")
        self._kind = kind
        self._vocabulary_size = vocabulary_size
        self._target_probability = target_probability
        self.groups = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(
                tf.constant(list(groups.keys()), dtype=tf.string),
                tf.constant(list(groups.values()), dtype=tf.int64)),
            default_value=-1)

    def _embed(self, texts):
        count = tf.shape(texts)[0]
        if self._kind == "constant":
            return tf.fill([count, EMBEDDING_SIZE], EMBEDDING_SIZE ** -0.5)
        if self._kind == "nan":
            return tf.fill([count, EMBEDDING_SIZE], float("nan"))
        return tf.one_hot(self.groups.lookup(texts), EMBEDDING_SIZE, dtype=tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="question")])
    def encode_question(self, question):
        return {"embedding": self._embed(question)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="answer")])
    def encode_answer(self, answer):
        return {"embedding": self._embed(answer)}

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="question"),
                                  tf.TensorSpec([None], tf.string, name="answer")])
    def decode(self, question, answer):
        del question  # The test decoder ignores the question.
        words = tf.strings.split(answer)
        word_ids = tf.strings.to_hash_bucket_fast(words, self._vocabulary_size - FIRST_WORD_ID)
        word_ids = word_ids + FIRST_WORD_ID
        end = tf.fill([tf.shape(answer)[0], 1], tf.constant(END_ID, tf.int64))
        targets = tf.concat([word_ids, tf.RaggedTensor.from_tensor(end)], axis=1)
        target_ids = targets.to_tensor(default_value=0)
        target_length = targets.row_lengths()

        on_target = tf.one_hot(target_ids, self._vocabulary_size, dtype=tf.float32)
        off_probability = (1.0 - self._target_probability) / (self._vocabulary_size - 1)
        probabilities = (on_target * self._target_probability
                         + (1.0 - on_target) * off_probability)
        predicted_ids = tf.argmax(probabilities, axis=-1, output_type=tf.int64)
        log_probability = (tf.cast(target_length, tf.float32)
                           * tf.math.log(tf.constant(self._target_probability, tf.float32)))
        return {
            "probabilities": probabilities,
            "predicted_ids": predicted_ids,
            "predicted_tokens": tf.strings.as_string(predicted_ids),
            "target_ids": target_ids,
            "log_probability": log_probability,
            "target_length": target_length,
        }


def save_test_model(export_dir: str, kind: str, groups: Optional[Dict[str, int]] = None,
                    vocabulary_size: int = 64, target_probability: Optional[float] = None,
                    answer_bank: Optional[Dict[int, str]] = None) -> str:
    """Save a test SavedModel to `export_dir` and return `export_dir`.

    `target_probability` defaults to 1 / vocabulary_size, which is a uniform decoder.
    """
    if target_probability is None:
        target_probability = 1.0 / vocabulary_size
    module = _FaqTestModule(kind, groups or {}, vocabulary_size, target_probability)
    tf.saved_model.save(module, export_dir, signatures={
        "encode_question": module.encode_question,
        "encode_answer": module.encode_answer,
        "decode": module.decode,
    })

    assets_extra = os.path.join(export_dir, "assets.extra")
    os.makedirs(assets_extra, exist_ok=True)
    with open(os.path.join(assets_extra, "answer_bank.jsonl"), "w", encoding="utf-8") as bank:
        for answer_id, answer in sorted((answer_bank or {}).items()):
            bank.write(json.dumps({"answer_id": answer_id, "answer": answer},
                                  ensure_ascii=False) + "\n")
    return export_dir
