"""Baselines the model is compared with: TF-IDF cosine ranking and an add-one unigram model."""

import math
import re
from typing import Iterable, List, Optional, Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

from components.evaluation import metrics

# Han ideographs: CJK Unified Ideographs with Extension A, the Compatibility Ideographs and
# Extensions B-F plus the Compatibility Supplement. Chinese has no spaces between words,
# so each of these characters is one token.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0002fa1f"
_TOKEN_PATTERN = re.compile(f"[{_HAN}]|[^\\W{_HAN}]+")


def tokenize_for_tfidf(text: str) -> List[str]:
    """Split lowercased text into one token per Han character and word tokens otherwise.

    A word token is a maximal run of Unicode word characters (letters, digits, underscore)
    that are not Han characters. Punctuation and whitespace are dropped.
    """
    return _TOKEN_PATTERN.findall(text.lower())


def fit_tfidf(train_texts: Iterable[str]) -> TfidfVectorizer:
    """Fit a TF-IDF vectorizer (L2-normalized rows) on the train split's questions and answers."""
    vectorizer = TfidfVectorizer(analyzer=tokenize_for_tfidf)
    vectorizer.fit(list(train_texts))
    return vectorizer


def tfidf_score_function(
    vectorizer: TfidfVectorizer,
    questions: Sequence[str],
    answers: Sequence[str],
) -> metrics.ScoreFunction:
    """Return a `ScoreFunction` with the TF-IDF cosine of eval questions and candidate answers.

    Rows of the vectorizer output have unit L2 norm, so the dot product is the cosine. A text
    with no token known to the vectorizer is a zero row and scores 0 against everything.
    """
    question_matrix = vectorizer.transform(list(questions))
    answer_matrix_transposed = vectorizer.transform(list(answers)).T.tocsc()

    def score(rows: np.ndarray) -> np.ndarray:
        return (question_matrix[rows] @ answer_matrix_transposed).toarray()

    return score


def unigram_counts(target_ids: np.ndarray, vocabulary_size: int,
                   row_weights: Optional[np.ndarray] = None) -> np.ndarray:
    """Count target token ids over non-padding positions (id 0 is padding).

    `target_ids` is an int array [N, T] in the model's `decode` output format, so the counted
    tokens are the answer tokens plus END, exactly the tokens the model is scored on. Row i
    counts `row_weights[i]` times (default 1), for answers shared by several train pairs.
    """
    _check_token_ids(target_ids, vocabulary_size)
    if row_weights is None:
        row_weights = np.ones(target_ids.shape[0], dtype=np.int64)
    if row_weights.shape != (target_ids.shape[0],):
        raise ValueError(f"row_weights must have shape ({target_ids.shape[0]},), one weight per "
                         f"target_ids row, got {row_weights.shape}.")

    position_weights = np.broadcast_to(row_weights[:, None], target_ids.shape)
    mask = target_ids != 0
    counts = np.bincount(target_ids[mask], weights=position_weights[mask],
                         minlength=vocabulary_size)
    return np.rint(counts).astype(np.int64)


def unigram_perplexity(
    train_counts: np.ndarray,
    eval_target_ids: np.ndarray,
) -> float:
    """Return the perplexity of an add-one smoothed unigram model on eval target tokens.

    `eval_target_ids` may have any shape. Zeros are padding and are ignored.

    p(token) = (count(token) + 1) / (total count + V), where V = len(train_counts) is the
    model's full output vocabulary, reserved ids included, so both models spread probability
    over the same V ids.
    """
    vocabulary_size = train_counts.shape[0]
    _check_token_ids(eval_target_ids, vocabulary_size)
    tokens = eval_target_ids[eval_target_ids != 0]
    if tokens.size == 0:
        raise ValueError("Unigram perplexity needs at least one eval target token, got none.")

    log_probabilities = np.log(train_counts + 1.0) - math.log(train_counts.sum() + vocabulary_size)
    negative_log_likelihood = -log_probabilities[tokens].sum()
    return float(math.exp(negative_log_likelihood / tokens.size))


def _check_token_ids(target_ids: np.ndarray, vocabulary_size: int) -> None:
    if target_ids.size == 0:
        return
    low = int(target_ids.min())
    high = int(target_ids.max())
    if low < 0 or high >= vocabulary_size:
        raise ValueError(
            f"Target ids must lie in [0, {vocabulary_size}), the decoder vocabulary, but range "
            f"from {low} to {high}. Check that `target_ids` and `probabilities` come from the "
            "same model.")
