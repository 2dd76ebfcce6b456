"""Blessing decision: value thresholds, a TF-IDF ratio, NaN checks and regression against a baseline.

The decision reads the metrics dictionary that `scoring.compute_metrics` builds (the content
of `metrics.json`). The keys used here are `retrieval.model`, `retrieval.tfidf`,
`retrieval.baseline_model` (None on the first run), `nan_counts` and, for the finiteness
check, every number outside `retrieval.baseline_model`.
"""

import dataclasses
import math
from typing import Any, Dict, Iterator, List, Optional, Tuple


@dataclasses.dataclass(frozen=True)
class BlessingThresholds:
    """Blessing thresholds. Recall values are fractions in [0, 1]."""

    # Minimum Recall@1 over the full eval answer pool.
    min_recall_at_1: float = 0.1

    # Minimum model R10@1 as a fraction of the TF-IDF R10@1 on the same 1-in-10 sets.
    # 0 disables the check.
    min_r10_at_1_ratio_to_tfidf: float = 0.0

    # Largest allowed absolute drop of Recall@1 and of R10@1 against the latest blessed model.
    max_recall_at_1_regression: float = 0.02
    max_r10_at_1_regression: float = 0.02

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, (int, float)) or math.isnan(value) or value < 0:
                raise ValueError(
                    f"Blessing threshold {field.name} must be a non-negative number, got {value!r}.")


@dataclasses.dataclass(frozen=True)
class BlessingDecision:
    """Outcome of the blessing checks. `failures` is empty exactly when `blessed` is True."""

    blessed: bool
    failures: List[str]
    passed: List[str]
    baseline_evaluated: bool

    @property
    def message(self) -> str:
        """One line that states the decision and the numbers behind every check."""
        verdict = "blessed" if self.blessed else "NOT blessed"
        baseline = ("against the latest blessed model" if self.baseline_evaluated
                    else "with no blessed baseline model (regression checks skipped)")
        checks = "; ".join(self.failures + self.passed)
        return f"Model {verdict} {baseline}: {checks}."


def decide_blessing(metrics: Dict[str, Any], thresholds: BlessingThresholds) -> BlessingDecision:
    """Apply every check to `metrics` and return the decision with the numbers of each check."""
    failures: List[str] = []
    passed: List[str] = []
    model = metrics["retrieval"]["model"]
    tfidf = metrics["retrieval"]["tfidf"]
    baseline = metrics["retrieval"].get("baseline_model")

    non_finite_paths = sorted(
        path for path, value in _iterate_numbers(metrics, "")
        if not path.startswith("retrieval.baseline_model") and not math.isfinite(value))
    nan_counts = metrics["nan_counts"]
    nan_rows = {name: count for name, count in nan_counts.items() if count > 0}
    if non_finite_paths or nan_rows:
        failures.append(f"NaN or infinite metrics {non_finite_paths}, "
                        f"NaN model outputs {nan_rows}")
    else:
        passed.append("all metrics finite and no NaN model outputs")

    _check_minimum(failures, passed, "recall@1", model["recall@1"], thresholds.min_recall_at_1)

    if thresholds.min_r10_at_1_ratio_to_tfidf > 0:
        ratio = thresholds.min_r10_at_1_ratio_to_tfidf
        _check_minimum(failures, passed, "r10@1", model["r10@1"], ratio * tfidf["r10@1"],
                       f" ({ratio:g} x TF-IDF r10@1 {tfidf['r10@1']:.4f})")

    if baseline is not None:
        for name, tolerance in (("recall@1", thresholds.max_recall_at_1_regression),
                                ("r10@1", thresholds.max_r10_at_1_regression)):
            _check_regression(failures, passed, name, model[name], baseline[name], tolerance)

    return BlessingDecision(
        blessed=not failures,
        failures=failures,
        passed=passed,
        baseline_evaluated=baseline is not None,
    )


def _check_minimum(failures: List[str], passed: List[str], name: str, value: float,
                   minimum: float, minimum_source: str = "") -> None:
    if value >= minimum:
        passed.append(f"{name} {value:.4f} >= {minimum:.4f}{minimum_source}")
    else:
        failures.append(f"{name} {value:.4f} < minimum {minimum:.4f}{minimum_source}")


def _check_regression(failures: List[str], passed: List[str], name: str, value: float,
                      baseline_value: Optional[float], tolerance: float) -> None:
    # A NaN baseline value cannot be compared. The baseline model was blessed on its own eval
    # data, so this only happens when the eval data changed, and it must not block every later
    # model.
    if baseline_value is None or math.isnan(baseline_value):
        passed.append(f"{name} regression not checked because the baseline value is NaN")
        return

    drop = baseline_value - value
    if drop <= tolerance:
        passed.append(f"{name} {value:.4f} vs baseline {baseline_value:.4f} "
                      f"(drop {drop:.4f} <= {tolerance:.4f})")
    else:
        failures.append(f"{name} {value:.4f} regressed from baseline {baseline_value:.4f} "
                        f"(drop {drop:.4f} > {tolerance:.4f})")


def _iterate_numbers(value: Any, path: str) -> Iterator[Tuple[str, float]]:
    """Yield (dotted path, float) for every int or float nested in dicts and lists.

    None stands for NaN, because `metrics.json` stores NaN and infinity as null.
    """
    if value is None:
        yield path, math.nan
    elif isinstance(value, bool):
        return
    elif isinstance(value, (int, float)):
        yield path, float(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _iterate_numbers(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            yield from _iterate_numbers(item, f"{path}[{index}]")
