"""Blessing decisions: value thresholds, TF-IDF ratio, NaN and regression against the baseline."""

import math

import pytest

from components.evaluation.blessing import BlessingThresholds, decide_blessing


def _retrieval(recall_at_1, r10_at_1):
    return {"recall@1": recall_at_1, "recall@5": 0.75, "recall@10": 1.0, "mrr": 0.5,
            "r10@1": r10_at_1, "r10@2": 0.75, "r10@5": 1.0}


def _metrics(recall_at_1=0.5, r10_at_1=0.5, tfidf_r10_at_1=0.5, baseline=None,
             perplexity=12.0, question_nan=0):
    return {
        "eval_split": {"pairs": 4, "questions": 4, "candidate_answers": 4,
                       "questions_without_candidate": 0},
        "retrieval": {
            "model": _retrieval(recall_at_1, r10_at_1),
            "tfidf": _retrieval(0.25, tfidf_r10_at_1),
            "baseline_model": baseline,
        },
        "nan_counts": {"question_embeddings_with_nan": question_nan,
                       "answer_embeddings_with_nan": 0},
        "generation": {"model": {"perplexity": perplexity, "masked_token_accuracy": 0.25},
                       "unigram": {"perplexity": 40.0}},
    }


def test_first_run_above_minimum_is_blessed():
    decision = decide_blessing(_metrics(), BlessingThresholds(min_recall_at_1=0.25))

    assert decision.blessed
    assert decision.failures == []
    assert not decision.baseline_evaluated
    assert "recall@1 0.5000 >= 0.2500" in decision.message
    assert "no blessed baseline model" in decision.message


def test_recall_below_minimum_is_not_blessed():
    decision = decide_blessing(_metrics(recall_at_1=0.0), BlessingThresholds(min_recall_at_1=0.1))

    assert not decision.blessed
    assert decision.failures == ["recall@1 0.0000 < minimum 0.1000"]
    assert decision.message.startswith("Model NOT blessed")


def test_nan_metric_is_not_blessed():
    decision = decide_blessing(_metrics(perplexity=math.nan), BlessingThresholds())

    assert not decision.blessed
    assert "generation.model.perplexity" in decision.failures[0]


def test_null_metric_is_not_blessed():
    decision = decide_blessing(_metrics(perplexity=None), BlessingThresholds())

    assert not decision.blessed


def test_infinite_metric_is_not_blessed():
    decision = decide_blessing(_metrics(perplexity=math.inf), BlessingThresholds())

    assert not decision.blessed


def test_nan_embeddings_are_not_blessed():
    decision = decide_blessing(_metrics(question_nan=3), BlessingThresholds())

    assert not decision.blessed
    assert "'question_embeddings_with_nan': 3" in decision.failures[0]


def test_tfidf_ratio_off_by_default():
    decision = decide_blessing(_metrics(r10_at_1=0.25, tfidf_r10_at_1=1.0), BlessingThresholds())

    assert decision.blessed


def test_tfidf_ratio_below_minimum():
    thresholds = BlessingThresholds(min_r10_at_1_ratio_to_tfidf=0.5)

    decision = decide_blessing(_metrics(r10_at_1=0.25, tfidf_r10_at_1=0.75), thresholds)

    assert not decision.blessed
    assert decision.failures == [
        "r10@1 0.2500 < minimum 0.3750 (0.5 x TF-IDF r10@1 0.7500)"]


def test_tfidf_ratio_met():
    thresholds = BlessingThresholds(min_r10_at_1_ratio_to_tfidf=0.5)

    decision = decide_blessing(_metrics(r10_at_1=0.5, tfidf_r10_at_1=0.75), thresholds)

    assert decision.blessed


def test_recall_regression_is_not_blessed():
    metrics = _metrics(recall_at_1=0.5, baseline=_retrieval(0.75, 0.5))

    decision = decide_blessing(metrics, BlessingThresholds(max_recall_at_1_regression=0.125))

    assert not decision.blessed
    assert decision.baseline_evaluated
    assert decision.failures == [
        "recall@1 0.5000 regressed from baseline 0.7500 (drop 0.2500 > 0.1250)"]


def test_r10_regression_is_not_blessed():
    metrics = _metrics(r10_at_1=0.5, baseline=_retrieval(0.5, 0.75))

    decision = decide_blessing(metrics, BlessingThresholds(max_r10_at_1_regression=0.125))

    assert not decision.blessed
    assert decision.failures == [
        "r10@1 0.5000 regressed from baseline 0.7500 (drop 0.2500 > 0.1250)"]


def test_drop_equal_to_tolerance_is_blessed():
    metrics = _metrics(recall_at_1=0.5, baseline=_retrieval(0.75, 0.5))

    decision = decide_blessing(metrics, BlessingThresholds(max_recall_at_1_regression=0.25))

    assert decision.blessed
    assert "against the latest blessed model" in decision.message


def test_improvement_over_baseline_is_blessed():
    metrics = _metrics(recall_at_1=0.75, r10_at_1=0.75, baseline=_retrieval(0.5, 0.5))

    decision = decide_blessing(metrics, BlessingThresholds())

    assert decision.blessed


def test_nan_baseline_does_not_block():
    metrics = _metrics(baseline=_retrieval(math.nan, math.nan))

    decision = decide_blessing(metrics, BlessingThresholds())

    assert decision.blessed
    assert "recall@1 regression not checked" in decision.message


@pytest.mark.parametrize("name", ["min_recall_at_1", "max_recall_at_1_regression"])
def test_thresholds_reject_negative(name):
    with pytest.raises(ValueError, match=f"{name} must be a non-negative number, got -0.5"):
        BlessingThresholds(**{name: -0.5})


def test_thresholds_reject_nan():
    with pytest.raises(ValueError, match="min_recall_at_1 must be a non-negative number"):
        BlessingThresholds(min_recall_at_1=math.nan)
