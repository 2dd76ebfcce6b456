"""TF-IDF ranking and add-one unigram perplexity on tiny hand-made data."""

import math

import numpy as np
import pytest

from components.evaluation import baseline, metrics

EVAL_ANSWERS = [
    "open settings and choose reset password",
    "shipping takes three days",
    "the password needs eight characters",
    "refunds arrive within five days",
    "密码至少八个字符",
]
# (question, index of its correct answer, expected pessimistic rank)
EVAL_QUESTIONS = [
    ("how do I reset my password", 0, 1),
    ("how long does shipping take", 1, 1),
    ("when do refunds arrive", 3, 1),
    ("什么是密码", 4, 1),
    # No shared token with any answer: all five scores are 0, so the tie ranks it last.
    ("unrelated words only", 1, 5),
    # Answer 2 shares both words, the correct answer 0 only "password".
    ("password characters", 0, 2),
]
TRAIN_TEXTS = EVAL_ANSWERS + [question for question, _, _ in EVAL_QUESTIONS] + [
    "where is my order",
    "your order ships from the warehouse",
]


def test_tokenizer_splits_han_characters():
    assert baseline.tokenize_for_tfidf("How do I 重置密码?") == [
        "how", "do", "i", "重", "置", "密", "码"]


def test_tokenizer_splits_mixed_runs():
    assert baseline.tokenize_for_tfidf("abc中文def, version 2.0") == [
        "abc", "中", "文", "def", "version", "2", "0"]


def test_tfidf_ranks_exact():
    vectorizer = baseline.fit_tfidf(TRAIN_TEXTS)
    questions = [question for question, _, _ in EVAL_QUESTIONS]
    correct = [np.array([answer]) for _, answer, _ in EVAL_QUESTIONS]

    full_ranks, _ = metrics.rank_questions(
        baseline.tfidf_score_function(vectorizer, questions, EVAL_ANSWERS),
        len(questions), correct, np.zeros(0, dtype=np.int64), np.zeros((0, 10), dtype=np.int64))

    assert full_ranks.tolist() == [float(rank) for _, _, rank in EVAL_QUESTIONS]


def test_tfidf_scores_are_cosines():
    vectorizer = baseline.fit_tfidf(TRAIN_TEXTS)

    scores = baseline.tfidf_score_function(vectorizer, ["shipping takes three days"],
                                           EVAL_ANSWERS)(np.array([0]))

    assert scores[0, 1] == pytest.approx(1.0)
    assert scores[0, 0] == 0.0


def test_unigram_counts_skip_padding():
    counts = baseline.unigram_counts(np.array([[5, 6, 2, 0], [5, 2, 0, 0]]), 8)

    assert counts.tolist() == [0, 0, 2, 0, 0, 2, 1, 0]


def test_unigram_counts_apply_row_weights():
    counts = baseline.unigram_counts(np.array([[5, 6, 2, 0], [5, 2, 0, 0]]), 8,
                                     row_weights=np.array([2, 1]))

    assert counts.tolist() == [0, 0, 3, 0, 0, 3, 2, 0]


def test_unigram_counts_reject_wrong_weight_shape():
    with pytest.raises(ValueError, match="one weight per target_ids row"):
        baseline.unigram_counts(np.array([[5, 2]]), 8, row_weights=np.array([1, 1]))


def test_unigram_perplexity_exact():
    # Train counts 5:2, 6:1, 2:2 over V=8 ids give p(5)=p(2)=3/13 and p(7)=1/13.
    counts = baseline.unigram_counts(np.array([[5, 6, 2, 0], [5, 2, 0, 0]]), 8)

    perplexity = baseline.unigram_perplexity(counts, np.array([[5, 7, 2, 0]]))

    assert perplexity == pytest.approx(13 / 9 ** (1 / 3))


def test_unigram_perplexity_uniform_without_counts():
    perplexity = baseline.unigram_perplexity(np.zeros(16, dtype=np.int64), np.array([4, 9, 2]))

    assert perplexity == pytest.approx(16.0)


def test_unigram_rejects_ids_outside_vocabulary():
    with pytest.raises(ValueError, match=r"Target ids must lie in \[0, 8\)"):
        baseline.unigram_perplexity(np.zeros(8, dtype=np.int64), np.array([3, 8]))


def test_unigram_rejects_empty_eval_tokens():
    with pytest.raises(ValueError, match="at least one eval target token"):
        baseline.unigram_perplexity(np.zeros(8, dtype=np.int64), np.array([[0, 0]]))


def test_unigram_perplexity_is_finite():
    counts = np.array([0, 0, 5, 0, 1000])

    assert math.isfinite(baseline.unigram_perplexity(counts, np.array([3])))
