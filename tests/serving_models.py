"""Builders of small SavedModels with the exact serving signatures of the trained model.

The fixture model embeds text as a hashed bag of words: each whitespace token of the
lower-cased text without ASCII punctuation is hashed into one of `EMBEDDING_DIM` buckets, the one-hot vectors are
summed, and the sum is L2-normalized. Cosine similarity is therefore the word-overlap
cosine (up to hash collisions), which makes query ranking predictable in tests.
`shift` rolls the embedding dimensions, so two versions return different embeddings
but rank answers identically. The decoder is a tiny teacher-forced softmax over
`VOCABULARY_SIZE` tokens whose output shapes follow the `decode` contract.
"""

import json
import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import tensorflow as tf

EMBEDDING_DIM = 256
VOCABULARY_SIZE = 16
PAD_ID = 0
START_ID = 1
END_ID = 2
OOV_ID = 3
RESERVED_TOKENS = 4

DEFECTS = (None, "nan_embedding", "wrong_embedding_shape")

DEFAULT_ANSWER_BANK = (
    {"answer_id": 11, "answer": "Reset your password from the account settings page."},
    {"answer_id": 12, "answer": "Shipping takes three to five business days."},
    {"answer_id": 13, "answer": "Refunds are issued to the original payment card."},
    {"answer_id": 14, "answer": "我们的客服每天九点到六点在线。"},
)

_STRING_VECTOR = tf.TensorSpec(shape=[None], dtype=tf.string)


def _normalize(text):
    return tf.strings.regex_replace(tf.strings.lower(text), r"[[:punct:]]", " ")


class FixtureModel(tf.Module):
    """A tf.Module whose signatures follow the serving contract of the FAQ model."""

    def __init__(self, shift: int = 0, defect: str | None = None):
        super().__init__()
        if defect not in DEFECTS:
            raise ValueError(f"Unknown defect {defect!r}; expected one of {DEFECTS}.")

        self._defect = defect
        table = np.roll(np.eye(EMBEDDING_DIM, dtype=np.float32), shift, axis=1)
        self.embedding_table = tf.Variable(table, trainable=False, name="embedding_table")

        rng = np.random.default_rng(seed=7)
        self.output_weights = tf.Variable(
            rng.normal(size=(EMBEDDING_DIM, VOCABULARY_SIZE)).astype(np.float32),
            trainable=False,
            name="output_weights",
        )
        self.position_bias = tf.Variable(
            rng.normal(size=(VOCABULARY_SIZE,)).astype(np.float32),
            trainable=False,
            name="position_bias",
        )
        tokens = ["[PAD]", "[START]", "[END]", "[OOV]"] + [
            f"tok{i}" for i in range(RESERVED_TOKENS, VOCABULARY_SIZE)
        ]
        self.vocabulary = tf.constant(tokens)

    def _embed(self, text):
        words = tf.strings.split(_normalize(text))
        buckets = tf.strings.to_hash_bucket_fast(words, EMBEDDING_DIM)
        vectors = tf.gather(self.embedding_table, buckets)
        summed = tf.reduce_sum(vectors, axis=1)
        return tf.math.l2_normalize(summed, axis=1)

    @tf.function(input_signature=[_STRING_VECTOR])
    def encode_question(self, question):
        embedding = self._embed(question)
        if self._defect == "nan_embedding":
            embedding = embedding * float("nan")
        return {"embedding": embedding}

    @tf.function(input_signature=[_STRING_VECTOR])
    def encode_answer(self, answer):
        embedding = self._embed(answer)
        if self._defect == "wrong_embedding_shape":
            embedding = tf.concat([embedding, embedding[:, :1]], axis=1)
        return {"embedding": embedding}

    @tf.function(input_signature=[_STRING_VECTOR])
    def echo(self, text):
        return {"text": tf.identity(text)}

    @tf.function(input_signature=[_STRING_VECTOR, _STRING_VECTOR])
    def decode(self, question, answer):
        # Target ids: answer tokens hashed into the non-reserved ids, then END, padded with PAD.
        words = tf.strings.split(_normalize(answer))
        word_ids = tf.strings.to_hash_bucket_fast(words, VOCABULARY_SIZE - RESERVED_TOKENS)
        word_ids = word_ids + RESERVED_TOKENS
        end_ids = tf.fill([tf.shape(answer)[0], 1], tf.constant(END_ID, tf.int64))
        target_ids = tf.concat([word_ids, tf.RaggedTensor.from_tensor(end_ids)], axis=1)
        target_ids = target_ids.to_tensor(default_value=PAD_ID)

        steps = tf.shape(target_ids)[1]
        question_logits = tf.matmul(self._embed(question), self.output_weights)
        positions = tf.cast(tf.range(steps), tf.float32)
        logits = question_logits[:, None, :] + positions[None, :, None] * self.position_bias
        probabilities = tf.nn.softmax(logits, axis=-1)

        mask = tf.not_equal(target_ids, PAD_ID)
        log_probs = tf.math.log(tf.gather(probabilities, target_ids, batch_dims=2))
        log_probability = tf.reduce_sum(tf.where(mask, log_probs, 0.0), axis=1)
        predicted_ids = tf.argmax(probabilities, axis=-1)
        return {
            "probabilities": probabilities,
            "predicted_ids": predicted_ids,
            "predicted_tokens": tf.gather(self.vocabulary, predicted_ids),
            "target_ids": target_ids,
            "log_probability": log_probability,
            "target_length": tf.reduce_sum(tf.cast(mask, tf.int64), axis=1),
        }


def save_fixture_model(
    export_dir: str,
    shift: int = 0,
    defect: str | None = None,
    answer_bank=DEFAULT_ANSWER_BANK,
    echo_signature: bool = False,
) -> str:
    """Save a fixture SavedModel with `assets.extra/answer_bank.jsonl` and return export_dir.

    echo_signature=True adds an "echo" signature that returns its string input `text`
    unchanged, so tests can see the exact bytes that reach the model.
    """
    module = FixtureModel(shift=shift, defect=defect)
    signatures = {
        "encode_question": module.encode_question,
        "encode_answer": module.encode_answer,
        "decode": module.decode,
    }
    if echo_signature:
        signatures["echo"] = module.echo
    tf.saved_model.save(module, export_dir, signatures=signatures)

    extra_dir = os.path.join(export_dir, "assets.extra")
    os.makedirs(extra_dir, exist_ok=True)
    with open(os.path.join(extra_dir, "answer_bank.jsonl"), "w", encoding="utf-8") as bank:
        for row in answer_bank:
            bank.write(json.dumps(row, ensure_ascii=False) + "\n")
    return export_dir


SAMPLE_QUESTIONS = ["How do I reset my password?", "运费是多少", ""]
SAMPLE_ANSWERS = ["Reset your password from the settings page.", "三到五天", ""]


def sample_inputs(signature_name: str) -> dict:
    """Return request inputs for a signature: English, Chinese and empty strings."""
    if signature_name == "encode_question":
        return {"question": SAMPLE_QUESTIONS}
    if signature_name == "encode_answer":
        return {"answer": SAMPLE_ANSWERS}
    return {"question": SAMPLE_QUESTIONS, "answer": SAMPLE_ANSWERS}


def call_in_process(saved_model_dir: str, signature_name: str, inputs: dict) -> dict:
    """Call a signature of the SavedModel in this process and return numpy outputs."""
    loaded = tf.saved_model.load(saved_model_dir)
    function = loaded.signatures[signature_name]
    feeds = {name: tf.constant(values, dtype=tf.string) for name, values in inputs.items()}
    return {name: tensor.numpy() for name, tensor in function(**feeds).items()}


def start_server(model_base_path: str, log_path: str, **options):
    """Start the model server the launcher picks and wait until a version is AVAILABLE."""
    from components.serving.launcher import ServerProcess

    server = ServerProcess(model_base_path, log_path=log_path, **options).start()
    try:
        server.wait_until_ready(timeout_seconds=120)
    except BaseException:
        server.stop()
        raise
    return server
