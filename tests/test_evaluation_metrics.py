"""Retrieval metrics on hand-built embeddings with exact expected values."""

import math

import numpy as np
import pytest

from components.evaluation import metrics


def _ranks(questions, answers, correct_per_question, block_size=512):
    score = metrics.cosine_score_function(np.asarray(questions, dtype=float),
                                          np.asarray(answers, dtype=float))
    correct = [np.asarray(c, dtype=np.int64) for c in correct_per_question]
    full_ranks, _ = metrics.rank_questions(
        score, len(questions), correct, np.zeros(0, dtype=np.int64),
        np.zeros((0, 10), dtype=np.int64), block_size=block_size)
    return full_ranks


def test_tie_with_wrong_candidate_ranks_below():
    ranks = _ranks([[1, 0]], [[1, 0], [1, 0], [0, 1]], [[1]])

    assert ranks.tolist() == [2.0]
    assert metrics.recall_at_k(ranks, 1) == 0.0
    assert metrics.recall_at_k(ranks, 5) == 1.0
    assert metrics.mean_reciprocal_rank(ranks) == 0.5


def test_tie_between_correct_answers_is_no_penalty():
    ranks = _ranks([[1, 0]], [[1, 0], [1, 0], [0, 1]], [[0, 1]])

    assert ranks.tolist() == [1.0]


def test_best_ranked_correct_answer_counts():
    # Scores are [0.6, 1.0, 0.8, 0.0]. The correct answers 0 and 3 score 0.6 and 0.0.
    ranks = _ranks([[1, 0]], [[0.6, 0.8], [1, 0], [0.8, 0.6], [0, 1]], [[0, 3]])

    assert ranks.tolist() == [3.0]


def test_missing_answer_is_miss_in_denominator():
    ranks = _ranks([[1, 0], [0, 1]], [[1, 0], [0.6, 0.8]], [[0], []])

    assert ranks[0] == 1.0
    assert ranks[1] == math.inf
    assert metrics.recall_at_k(ranks, 1) == 0.5
    assert metrics.recall_at_k(ranks, 100) == 0.5
    assert metrics.mean_reciprocal_rank(ranks) == 0.5


def test_k_larger_than_pool():
    ranks = _ranks([[1, 0]], [[0, 1], [0.6, 0.8], [1, 0]], [[0]])

    assert ranks.tolist() == [3.0]
    assert metrics.recall_at_k(ranks, 2) == 0.0
    assert metrics.recall_at_k(ranks, 10) == 1.0


def test_recall_rejects_invalid_k():
    with pytest.raises(ValueError, match="k must be at least 1, got 0"):
        metrics.recall_at_k(np.array([1.0]), 0)


def test_metrics_reject_empty_ranks():
    with pytest.raises(ValueError, match="empty rank array"):
        metrics.mean_reciprocal_rank(np.zeros(0))


def test_nan_question_embedding_is_miss():
    ranks = _ranks([[math.nan, 0]], [[1, 0], [0, 1]], [[0]])

    assert ranks.tolist() == [math.inf]


def test_nan_wrong_answer_ranks_above():
    ranks = _ranks([[1, 0]], [[math.nan, math.nan], [1, 0]], [[1]])

    assert ranks.tolist() == [2.0]


def test_zero_embedding_scores_zero():
    score = metrics.cosine_score_function(np.array([[0.0, 0.0]]), np.array([[3.0, 4.0]]))

    assert score(np.array([0])).tolist() == [[0.0]]


def test_cosine_normalizes_rows():
    score = metrics.cosine_score_function(np.array([[2.0, 0.0]]), np.array([[3.0, 4.0]]))

    assert score(np.array([0]))[0, 0] == pytest.approx(0.6)


def test_block_size_does_not_change_ranks():
    rng = np.random.default_rng(7)
    questions = rng.normal(size=(7, 4))
    answers = rng.normal(size=(9, 4))
    correct = [[i % 9] for i in range(7)]

    one_block = _ranks(questions, answers, correct, block_size=512)
    small_blocks = _ranks(questions, answers, correct, block_size=2)

    assert one_block.tolist() == small_blocks.tolist()


def test_one_in_ten_sets_follow_protocol():
    correct = [np.array([0, 1]), np.array([2]), np.array([3])]

    rows, sets, skipped = metrics.sample_one_in_ten(correct, 12, seed=3)

    assert rows.tolist() == [0, 0, 1, 2]
    assert sets.shape == (4, 10)
    assert sets[:, 0].tolist() == [0, 1, 2, 3]
    assert skipped == []
    for pair in range(4):
        distractors = set(sets[pair, 1:].tolist())
        assert len(distractors) == 9
        assert not distractors & set(correct[rows[pair]].tolist())


def test_one_in_ten_sampling_is_seeded():
    correct = [np.array([0]), np.array([1])]

    _, first, _ = metrics.sample_one_in_ten(correct, 30, seed=5)
    _, again, _ = metrics.sample_one_in_ten(correct, 30, seed=5)
    _, other, _ = metrics.sample_one_in_ten(correct, 30, seed=6)

    assert first.tolist() == again.tolist()
    assert first.tolist() != other.tolist()


def test_one_in_ten_skips_small_pools():
    # Question 0 has 2 correct answers among 10 candidates, so only 8 wrong ones.
    correct = [np.array([0, 1]), np.array([2])]

    rows, sets, skipped = metrics.sample_one_in_ten(correct, 10, seed=0)

    assert skipped == [0]
    assert rows.tolist() == [1]
    assert sets.shape == (1, 10)


def test_one_in_ten_ranks_use_sets():
    # Question 0 matches candidate 0 exactly. Question 1 ties candidates 1 and 2, and
    # candidate 2 is its true answer, so it ranks pessimistically.
    answers = np.eye(12)
    answers[1] = answers[2]
    questions = np.stack([answers[0], answers[2]])
    correct = [np.array([0]), np.array([2])]
    sets = np.array([[0] + list(range(3, 12)), [2, 1] + list(range(4, 12))])
    rows = np.array([0, 1])

    _, one_in_ten_ranks = metrics.rank_questions(
        metrics.cosine_score_function(questions, answers), 2, correct, rows, sets)

    assert one_in_ten_ranks.tolist() == [1.0, 2.0]


def test_summarize_ranks_exact_values():
    full_ranks = np.array([1.0, 2.0, 6.0, math.inf])
    one_in_ten_ranks = np.array([1.0, 3.0, 2.0])

    summary = metrics.summarize_ranks(full_ranks, one_in_ten_ranks)

    assert summary["recall@1"] == 0.25
    assert summary["recall@5"] == 0.5
    assert summary["recall@10"] == 0.75
    assert summary["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 6) / 4)
    assert summary["r10@1"] == pytest.approx(1 / 3)
    assert summary["r10@2"] == pytest.approx(2 / 3)
    assert summary["r10@5"] == 1.0


def test_summarize_without_one_in_ten_pairs_is_nan():
    summary = metrics.summarize_ranks(np.array([1.0]), np.zeros(0))

    assert math.isnan(summary["r10@1"])


def test_recall_curve_values():
    curve = metrics.recall_curve(np.array([1.0, 3.0]), 3)

    assert curve == [0.5, 0.5, 1.0]
