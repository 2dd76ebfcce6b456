"""Retrieval metrics on score matrices: full-pool ranks, Recall@k, MRR and the 1-in-10 protocol.

Rules shared by every function here:

- A question may have several correct answers. Its rank is the rank of its best-ranked correct
  answer, so Recall@k counts a hit when any correct answer is within the top k, and MRR uses
  the reciprocal of that best rank.
- Ties are broken pessimistically and deterministically: a wrong candidate whose score equals
  the best correct score ranks above it. Other correct answers never push the rank down.
- A NaN score is pessimistic too. A wrong candidate with a NaN score ranks above the correct
  answer, and a correct answer with a NaN score cannot be the best-ranked one.
- A question with no correct answer among the candidates, or whose correct scores are all NaN,
  gets rank `inf`: a miss at every k and a reciprocal rank of 0. It stays in the denominator.
"""

import math
from typing import Callable, Dict, List, Sequence, Tuple

import numpy as np

MISS_RANK = math.inf

# Number of wrong answers drawn per (question, true answer) pair in the 1-in-10 protocol that the
# Ubuntu Dialogue Corpus benchmark uses, which ranks one true answer among 10 candidates.
ONE_IN_TEN_DISTRACTORS = 9

# Maps a block of query row indices to their dense score rows over all candidates.
ScoreFunction = Callable[[np.ndarray], np.ndarray]


def best_correct_rank(scores: np.ndarray, correct: np.ndarray) -> float:
    """Return the pessimistic 1-based rank of the best correct candidate, or `MISS_RANK`.

    `scores` is one question's score per candidate and `correct` contains the indices of its
    correct candidates. `correct` is empty when the answer is missing from the pool.
    """
    correct_scores = scores[correct]
    correct_scores = correct_scores[~np.isnan(correct_scores)]
    if correct_scores.size == 0:
        return MISS_RANK

    best_score = correct_scores.max()
    is_wrong = np.ones(scores.shape[0], dtype=bool)
    is_wrong[correct] = False
    wrong_scores = scores[is_wrong]
    wrong_at_or_above = np.count_nonzero((wrong_scores >= best_score) | np.isnan(wrong_scores))
    return float(1 + wrong_at_or_above)


def recall_at_k(ranks: np.ndarray, k: int) -> float:
    """Return the fraction of questions whose rank is at most k (k may exceed the pool size)."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}.")
    if ranks.size == 0:
        raise ValueError("Recall@k needs at least one question, got an empty rank array.")
    return float(np.mean(ranks <= k))


def mean_reciprocal_rank(ranks: np.ndarray) -> float:
    """Return the mean of 1/rank, where a miss (rank `inf`) contributes 0."""
    if ranks.size == 0:
        raise ValueError("MRR needs at least one question, got an empty rank array.")
    return float(np.mean(1.0 / ranks))


def sample_one_in_ten(
    correct_per_question: Sequence[np.ndarray],
    num_candidates: int,
    seed: int,
) -> Tuple[np.ndarray, np.ndarray, List[int]]:
    """Draw the 1-in-10 candidate sets for every (question, correct answer) pair.

    For each pair, in question order then candidate index order, 9 distractors are drawn
    without replacement, with one `numpy.random.default_rng(seed)`, from the candidates that
    are not correct for that question.

    Returns:
      question_rows: int array [P], the question index of each pair.
      candidate_sets: int array [P, 10]. Column 0 is the true answer, columns 1-9 the distractors.
      skipped_questions: indices of questions with fewer than 9 wrong candidates. Their pairs
        are left out because the protocol cannot be applied to them.
    """
    rng = np.random.default_rng(seed)
    question_rows = []
    candidate_sets = []
    skipped_questions = []

    for question_index, correct in enumerate(correct_per_question):
        is_wrong = np.ones(num_candidates, dtype=bool)
        is_wrong[correct] = False
        wrong = np.flatnonzero(is_wrong)
        if wrong.size < ONE_IN_TEN_DISTRACTORS:
            skipped_questions.append(question_index)
            continue

        for true_answer in np.sort(correct):
            distractors = rng.choice(wrong, size=ONE_IN_TEN_DISTRACTORS, replace=False)
            question_rows.append(question_index)
            candidate_sets.append(np.concatenate([[true_answer], distractors]))

    question_array = np.asarray(question_rows, dtype=np.int64)
    candidate_array = np.asarray(candidate_sets, dtype=np.int64).reshape(
        -1, ONE_IN_TEN_DISTRACTORS + 1)
    return question_array, candidate_array, skipped_questions


def rank_questions(
    score_function: ScoreFunction,
    num_questions: int,
    correct_per_question: Sequence[np.ndarray],
    one_in_ten_rows: np.ndarray,
    one_in_ten_sets: np.ndarray,
    block_size: int = 512,
) -> Tuple[np.ndarray, np.ndarray]:
    """Rank every question against the full pool and against its 1-in-10 sets.

    Scores are computed `block_size` questions at a time so memory stays at
    block_size x num_candidates floats.

    Returns:
      full_ranks: float array [num_questions], ranks in the full candidate pool.
      one_in_ten_ranks: float array [P], the rank of the true answer (column 0) in each 1-in-10 set.
    """
    full_ranks = np.empty(num_questions, dtype=np.float64)
    one_in_ten_ranks = np.empty(one_in_ten_rows.shape[0], dtype=np.float64)

    for start in range(0, num_questions, block_size):
        rows = np.arange(start, min(start + block_size, num_questions))
        scores = np.asarray(score_function(rows), dtype=np.float64)

        for offset, row in enumerate(rows):
            full_ranks[row] = best_correct_rank(scores[offset], correct_per_question[row])

        pairs = np.flatnonzero((one_in_ten_rows >= rows[0]) & (one_in_ten_rows <= rows[-1]))
        for pair in pairs:
            set_scores = scores[one_in_ten_rows[pair] - start, one_in_ten_sets[pair]]
            one_in_ten_ranks[pair] = best_correct_rank(set_scores, np.array([0]))

    return full_ranks, one_in_ten_ranks


def summarize_ranks(
    full_ranks: np.ndarray,
    one_in_ten_ranks: np.ndarray,
    recall_ks: Sequence[int] = (1, 5, 10),
    one_in_ten_ks: Sequence[int] = (1, 2, 5),
) -> Dict[str, float]:
    """Return `recall@k`, `mrr` and `r10@k` from full-pool and 1-in-10 ranks.

    The `r10@k` values are NaN when there is no 1-in-10 pair, which keeps such a model from
    being blessed.
    """
    summary = {f"recall@{k}": recall_at_k(full_ranks, k) for k in recall_ks}
    summary["mrr"] = mean_reciprocal_rank(full_ranks)

    for k in one_in_ten_ks:
        if one_in_ten_ranks.size == 0:
            summary[f"r10@{k}"] = math.nan
        else:
            summary[f"r10@{k}"] = recall_at_k(one_in_ten_ranks, k)
    return summary


def recall_curve(full_ranks: np.ndarray, max_k: int) -> List[float]:
    """Return [Recall@1, ..., Recall@max_k]."""
    return [recall_at_k(full_ranks, k) for k in range(1, max_k + 1)]


def cosine_score_function(questions: np.ndarray, answers: np.ndarray) -> ScoreFunction:
    """Return a `ScoreFunction` with the cosine of dense question and answer embeddings.

    Rows are re-normalized here rather than trusted to be unit length. A zero row scores 0
    against everything, and a row containing NaN scores NaN.
    """
    question_units = _normalize_rows(questions)
    answer_units = _normalize_rows(answers)

    def score(rows: np.ndarray) -> np.ndarray:
        return question_units[rows] @ answer_units.T

    return score


def _normalize_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float64)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    safe_norms = np.where(norms == 0.0, 1.0, norms)
    return matrix / safe_norms
