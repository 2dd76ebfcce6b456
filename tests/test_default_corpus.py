"""The default job (`make run`'s configuration) on the whole default corpus: blessed and pushed.

This is the only test that trains with the default hyperparameters and the default blessing
thresholds, so it fails when a change makes the default model fall below them.
"""

import json
import os

import pytest

from pipeline import beam_runner
from pipeline.configs import PipelineConfig


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("default")
    config = PipelineConfig(pipeline_root=str(root / "pipeline_root"), serving_model_dir=str(root / "serving_model"))
    return beam_runner.run_local(config)


def test_default_model_is_blessed_and_pushed(default_run):
    assert default_run.push.pushed
    assert default_run.signature_names == ["decode", "encode_answer", "encode_question"]


def test_default_metrics_are_recorded(default_run):
    with open(os.path.join(default_run.evaluation_uri, "metrics.json"), encoding="utf-8") as file:
        metrics = json.load(file)
    model = metrics["retrieval"]["model"]
    tfidf = metrics["retrieval"]["tfidf"]
    assert model["recall@1"] >= PipelineConfig().min_recall_at_1
    for name in ("recall@1", "recall@5", "recall@10", "mrr", "r10@1", "r10@2", "r10@5"):
        assert 0.0 <= model[name] <= 1.0, name
        assert 0.0 <= tfidf[name] <= 1.0, name
    assert os.path.isfile(default_run.report_path)
