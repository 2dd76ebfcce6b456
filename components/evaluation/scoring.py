"""Metric assembly for the FaqEvaluator: ranks and generation scores of the model and baselines."""

import collections
from typing import Any, Dict

import numpy as np
from absl import logging

from components.evaluation import baseline, metrics
from components.evaluation.inputs import (PairSplit, RetrievalSet, build_retrieval_set,
                                          decode_batches, embed_texts)
from components.preprocessing import PAD_ID

RECALL_KS = (1, 5, 10)
ONE_IN_TEN_KS = (1, 2, 5)


def evaluate_retrieval(loaded, retrieval_set: RetrievalSet, one_in_ten_rows: np.ndarray,
                       one_in_ten_sets: np.ndarray, batch_size: int) -> Dict[str, Any]:
    """Embed questions and candidates with the model and rank them. Return ranks and NaN counts."""
    question_embeddings = embed_texts(loaded, "encode_question", "question",
                                      retrieval_set.questions, batch_size)
    answer_embeddings = embed_texts(loaded, "encode_answer", "answer",
                                    retrieval_set.answers, batch_size)
    full_ranks, one_in_ten_ranks = metrics.rank_questions(
        metrics.cosine_score_function(question_embeddings, answer_embeddings),
        len(retrieval_set.questions), retrieval_set.correct_per_question,
        one_in_ten_rows, one_in_ten_sets)
    return {
        "full_ranks": full_ranks,
        "one_in_ten_ranks": one_in_ten_ranks,
        "question_embeddings_with_nan": int(np.isnan(question_embeddings).any(axis=1).sum()),
        "answer_embeddings_with_nan": int(np.isnan(answer_embeddings).any(axis=1).sum()),
    }


def evaluate_tfidf(train: PairSplit, retrieval_set: RetrievalSet, one_in_ten_rows: np.ndarray,
                   one_in_ten_sets: np.ndarray) -> Dict[str, np.ndarray]:
    """Rank the same questions and candidates by TF-IDF cosine, fit on distinct train texts."""
    train_texts = sorted(set(train.questions)) + sorted(set(train.answers))
    vectorizer = baseline.fit_tfidf(train_texts)
    full_ranks, one_in_ten_ranks = metrics.rank_questions(
        baseline.tfidf_score_function(vectorizer, retrieval_set.questions, retrieval_set.answers),
        len(retrieval_set.questions), retrieval_set.correct_per_question,
        one_in_ten_rows, one_in_ten_sets)
    return {"full_ranks": full_ranks, "one_in_ten_ranks": one_in_ten_ranks}


def evaluate_generation(loaded, train: PairSplit, eval_pairs: PairSplit,
                        batch_size: int) -> Dict[str, Any]:
    """Compute perplexity and masked token accuracy of `decode`, and the unigram perplexity.

    Both models are scored on the same tokens: the `target_ids` that `decode` returns for the
    eval pairs. The unigram counts come from `decode`'s `target_ids` for each distinct train
    answer, weighted by the number of train pairs that contain that answer.
    """
    total_log_probability = 0.0
    total_target_length = 0
    correct_tokens = 0
    eval_tokens = []
    vocabulary_size = None
    for outputs in decode_batches(loaded, eval_pairs.questions, eval_pairs.answers, batch_size):
        vocabulary_size = outputs["vocabulary_size"]
        mask = outputs["target_ids"] != PAD_ID
        total_log_probability += float(outputs["log_probability"].astype(np.float64).sum())
        total_target_length += int(outputs["target_length"].sum())
        correct_tokens += int(np.count_nonzero((outputs["predicted_ids"] ==
                                                outputs["target_ids"]) & mask))
        eval_tokens.append(outputs["target_ids"][mask])

    if total_target_length == 0:
        raise ValueError("decode returned no target tokens for the eval pairs, so perplexity "
                         "is undefined. Check that the eval answers are not empty.")

    train_counts = _train_unigram_counts(loaded, train, vocabulary_size, batch_size)
    eval_token_array = np.concatenate(eval_tokens)
    return {
        "model": {
            "perplexity": float(np.exp(-total_log_probability / total_target_length)),
            "masked_token_accuracy": correct_tokens / total_target_length,
        },
        "unigram": {"perplexity": baseline.unigram_perplexity(train_counts, eval_token_array)},
        "eval_target_tokens": total_target_length,
        "train_target_tokens": int(train_counts.sum()),
        "vocabulary_size": vocabulary_size,
    }


def _train_unigram_counts(loaded, train: PairSplit, vocabulary_size: int,
                          batch_size: int) -> np.ndarray:
    pair_count = collections.Counter(train.answer_ids.tolist())
    first_pair = {}
    for index, answer_id in enumerate(train.answer_ids.tolist()):
        first_pair.setdefault(answer_id, index)
    answer_ids = sorted(first_pair)
    questions = [train.questions[first_pair[a]] for a in answer_ids]
    answers = [train.answers[first_pair[a]] for a in answer_ids]
    weights = np.asarray([pair_count[a] for a in answer_ids], dtype=np.int64)

    counts = np.zeros(vocabulary_size, dtype=np.int64)
    start = 0
    for outputs in decode_batches(loaded, questions, answers, batch_size):
        batch_weights = weights[start:start + outputs["target_ids"].shape[0]]
        start += outputs["target_ids"].shape[0]
        counts += baseline.unigram_counts(outputs["target_ids"], vocabulary_size, batch_weights)
    return counts


def compute_metrics(candidate, baseline_model, train: PairSplit, eval_pairs: PairSplit,
                    seed: int, embedding_batch_size: int, decode_batch_size: int,
                    recall_curve_max_k: int) -> Dict[str, Any]:
    """Build the `metrics.json` dictionary: retrieval, generation and NaN counts.

    `baseline_model` is a loaded SavedModel or None. It is scored on the same questions,
    candidates and 1-in-10 sets, for the regression check.
    """
    retrieval_set = build_retrieval_set(eval_pairs)
    one_in_ten_rows, one_in_ten_sets, skipped = metrics.sample_one_in_ten(
        retrieval_set.correct_per_question, len(retrieval_set.answers), seed)
    if skipped:
        logging.warning("1-in-10 protocol skipped %d of %d eval questions with fewer than %d "
                        "wrong candidates, for example question_id %d.", len(skipped),
                        len(retrieval_set.questions), metrics.ONE_IN_TEN_DISTRACTORS,
                        retrieval_set.question_ids[skipped[0]])

    model_ranks = evaluate_retrieval(candidate, retrieval_set, one_in_ten_rows, one_in_ten_sets,
                                     embedding_batch_size)
    tfidf_ranks = evaluate_tfidf(train, retrieval_set, one_in_ten_rows, one_in_ten_sets)
    baseline_summary = None
    if baseline_model is not None:
        baseline_ranks = evaluate_retrieval(baseline_model, retrieval_set, one_in_ten_rows,
                                            one_in_ten_sets, embedding_batch_size)
        baseline_summary = _summarize(baseline_ranks)

    curve_ks = list(range(1, min(recall_curve_max_k, len(retrieval_set.answers)) + 1))
    return {
        "eval_split": {
            "pairs": len(eval_pairs.questions),
            "questions": len(retrieval_set.questions),
            "candidate_answers": len(retrieval_set.answers),
            "questions_without_candidate": sum(c.size == 0
                                               for c in retrieval_set.correct_per_question),
        },
        "one_in_ten": {
            "seed": seed,
            "pairs": int(one_in_ten_rows.shape[0]),
            "questions_skipped": len(skipped),
        },
        "retrieval": {
            "model": _summarize(model_ranks),
            "tfidf": _summarize(tfidf_ranks),
            "baseline_model": baseline_summary,
        },
        "recall_curve": {
            "k": curve_ks,
            "model": metrics.recall_curve(model_ranks["full_ranks"], len(curve_ks)),
            "tfidf": metrics.recall_curve(tfidf_ranks["full_ranks"], len(curve_ks)),
        },
        "nan_counts": {
            "question_embeddings_with_nan": model_ranks["question_embeddings_with_nan"],
            "answer_embeddings_with_nan": model_ranks["answer_embeddings_with_nan"],
        },
        "generation": evaluate_generation(candidate, train, eval_pairs, decode_batch_size),
    }


def _summarize(ranks: Dict[str, Any]) -> Dict[str, float]:
    return metrics.summarize_ranks(ranks["full_ranks"], ranks["one_in_ten_ranks"],
                                   RECALL_KS, ONE_IN_TEN_KS)
