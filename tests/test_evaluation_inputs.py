"""Reading raw examples, grouping pairs into a retrieval set, and the HTML report."""

import json
import math
import os

import numpy as np
import pytest
import tensorflow as tf
from tfx.types import standard_artifacts

from components.evaluation import evaluator, inputs, report


def _write_split(root, split, examples):
    split_dir = os.path.join(root, f"Split-{split}")
    os.makedirs(split_dir, exist_ok=True)
    with tf.io.TFRecordWriter(os.path.join(split_dir, "data.gz"), options="GZIP") as writer:
        for example in examples:
            writer.write(example.SerializeToString())


def _example(**features):
    feature_map = {}
    for name, value in features.items():
        if isinstance(value, str):
            feature_map[name] = tf.train.Feature(
                bytes_list=tf.train.BytesList(value=[value.encode("utf-8")]))
        else:
            feature_map[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=value))
    return tf.train.Example(features=tf.train.Features(feature=feature_map))


def _examples_artifact(root):
    artifact = standard_artifacts.Examples()
    artifact.uri = str(root)
    artifact.split_names = json.dumps(["train", "eval"])
    return artifact


def test_read_split_decodes_pairs(tmp_path):
    _write_split(str(tmp_path), "eval", [
        _example(question="密码?", answer="a1", question_id=[7], answer_id=[70]),
        _example(question="q2", answer="a2", question_id=[8], answer_id=[80]),
    ])

    pairs = inputs.read_split(_examples_artifact(tmp_path), "eval")

    assert pairs.questions == ["密码?", "q2"]
    assert pairs.answers == ["a1", "a2"]
    assert pairs.question_ids.tolist() == [7, 8]
    assert pairs.answer_ids.tolist() == [70, 80]


def test_read_split_rejects_missing_feature(tmp_path):
    _write_split(str(tmp_path), "eval", [_example(question="q", answer="a", question_id=[1])])

    with pytest.raises(ValueError, match="Feature 'answer_id' is missing in .*data.gz record 0"):
        inputs.read_split(_examples_artifact(tmp_path), "eval")


def test_read_split_rejects_several_values(tmp_path):
    _write_split(str(tmp_path), "eval", [
        _example(question="q", answer="a", question_id=[1, 2], answer_id=[3])])

    with pytest.raises(ValueError, match="'question_id' .* must have exactly one value, got 2"):
        inputs.read_split(_examples_artifact(tmp_path), "eval")


def test_read_split_rejects_missing_files(tmp_path):
    os.makedirs(tmp_path / "Split-eval")

    with pytest.raises(ValueError, match="No \\*.gz TFRecord files found in split 'eval'"):
        inputs.read_split(_examples_artifact(tmp_path), "eval")


def test_retrieval_set_groups_by_id():
    pairs = inputs.PairSplit(
        questions=["q9", "q5", "q9", "q5 again"],
        answers=["a3", "a1", "a2", "a1"],
        question_ids=np.array([9, 5, 9, 5]),
        answer_ids=np.array([3, 1, 2, 1]))

    retrieval_set = inputs.build_retrieval_set(pairs)

    assert retrieval_set.question_ids.tolist() == [5, 9]
    assert retrieval_set.questions == ["q5", "q9"]
    assert retrieval_set.answer_ids.tolist() == [1, 2, 3]
    assert [c.tolist() for c in retrieval_set.correct_per_question] == [[0], [1, 2]]


def _report_metrics(perplexity):
    summary = {"recall@1": 0.5, "mrr": 0.75, "r10@1": 0.5}
    return {
        "model_uri": "/models/1",
        "baseline_model_uri": "",
        "blessing": {"blessed": False, "message": "Model NOT blessed: recall@1 < 0.6."},
        "eval_split": {"pairs": 2, "questions": 2, "candidate_answers": 2,
                       "questions_without_candidate": 0},
        "one_in_ten": {"seed": 0, "pairs": 0, "questions_skipped": 2},
        "retrieval": {"model": summary, "tfidf": summary, "baseline_model": None},
        "recall_curve": {"k": [1, 2], "model": [0.5, 1.0], "tfidf": [0.5, 1.0]},
        "generation": {"model": {"perplexity": perplexity, "masked_token_accuracy": 0.25},
                       "unigram": {"perplexity": 30.0}, "eval_target_tokens": 8,
                       "vocabulary_size": 16},
    }


def test_report_without_history(tmp_path):
    path = report.write_report(str(tmp_path), _report_metrics(4.0), {})

    page = open(path, encoding="utf-8").read()
    assert path == report.report_path(str(tmp_path))
    assert path == os.path.join(str(tmp_path), "report.html")
    assert page.count("data:image/png;base64,") == 1
    assert "Training loss per epoch: no data." in page
    assert "Model NOT blessed: recall@1 &lt; 0.6." in page


def test_report_marks_non_finite_and_missing(tmp_path):
    path = report.write_report(str(tmp_path), _report_metrics(None), {})

    page = open(path, encoding="utf-8").read()
    assert "<th>perplexity</th><td>non-finite</td><td>30.0000</td>" in page
    assert "<th>masked_token_accuracy</th><td>0.2500</td><td>n/a</td>" in page


def test_metrics_file_stores_non_finite_as_null(tmp_path):
    path = evaluator.write_metrics(str(tmp_path), {"a": math.nan, "b": [math.inf, 1.5]})

    with open(path, encoding="utf-8") as metrics_file:
        assert json.load(metrics_file) == {"a": None, "b": [None, 1.5]}
