"""FAQ model evaluation: retrieval and generation metrics, TF-IDF and unigram baselines, blessing."""

from components.evaluation.blessing import BlessingThresholds
from components.evaluation.evaluator import FaqEvaluator, create_latest_blessed_model_resolver
from components.evaluation.report import report_path

__all__ = [
    "BlessingThresholds",
    "FaqEvaluator",
    "create_latest_blessed_model_resolver",
    "report_path",
]
