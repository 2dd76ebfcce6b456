"""Real LocalDagRunner runs of FaqEvaluator with the latest-blessed-model Resolver and the Pusher.

The runs share one pipeline root and one MLMD database, in this order:
  1. Constant embeddings: not blessed, no baseline, not pushed.
  2. Oracle embeddings: blessed with no baseline (run 1 was not blessed), pushed.
  3. A copy of the oracle model: blessed against run 2's model as baseline, pushed.
  4. NaN embeddings: not blessed, regressed against run 3's model, not pushed.
"""

import json
import math
import os
import shutil

import pytest
import tensorflow as tf
from ml_metadata.metadata_store import metadata_store
from tfx import v1 as tfx

from components.evaluation import BlessingThresholds, FaqEvaluator, report_path
from components.evaluation import create_latest_blessed_model_resolver
from evaluation_models import save_test_model

TOPICS = ["apple", "banana", "cherry", "grape", "lemon", "mango", "melon", "olive", "peach",
          "pear", "plum", "quince"]
PIPELINE_NAME = "evaluation_test"
TRAINING_HISTORY = {
    "matching": {"loss": [2.0, 1.0, 0.5], "val_loss": [2.5, 1.5, 1.0]},
    "generation": {"loss": [4.0, 3.0], "perplexity": [50.0, 20.0]},
}


def _example(question, answer, question_id, answer_id):
    feature = tf.train.Feature
    return tf.train.Example(features=tf.train.Features(feature={
        "question": feature(bytes_list=tf.train.BytesList(value=[question.encode("utf-8")])),
        "answer": feature(bytes_list=tf.train.BytesList(value=[answer.encode("utf-8")])),
        "question_id": feature(int64_list=tf.train.Int64List(value=[question_id])),
        "answer_id": feature(int64_list=tf.train.Int64List(value=[answer_id])),
    }))


def _eval_pairs():
    """12 questions and 13 answers. Question 0 has two correct answers."""
    pairs = [(f"question on {topic}", f"{topic} is explained here", 100 + i, 200 + i)
             for i, topic in enumerate(TOPICS)]
    pairs.append((f"question on {TOPICS[0]}", f"more {TOPICS[0]} is explained here", 100, 299))
    return pairs


def _train_pairs():
    return [(f"tell me about {topic}", f"all about {topic} in detail", 300 + i, 400 + i)
            for i, topic in enumerate(TOPICS)]


def _write_examples(root):
    for split, pairs in (("train", _train_pairs()), ("eval", _eval_pairs())):
        split_dir = os.path.join(root, f"Split-{split}")
        os.makedirs(split_dir)
        with tf.io.TFRecordWriter(os.path.join(split_dir, "data_tfrecord-00000-of-00001.gz"),
                                  options="GZIP") as writer:
            for pair in pairs:
                writer.write(_example(*pair).SerializeToString())
    return root


def _oracle_groups():
    groups = {}
    for question, answer, question_id, _ in _eval_pairs():
        groups[question] = question_id - 100
        groups[answer] = question_id - 100
    return groups


def _save_model(root, kind):
    save_test_model(os.path.join(root, "Format-Serving"), kind, groups=_oracle_groups(),
                    target_probability=0.5)
    return root


def _run(tmp_path, model_uri):
    pipeline_root = str(tmp_path / "pipeline_root")
    examples = tfx.dsl.Importer(
        source_uri=str(tmp_path / "examples"),
        artifact_type=tfx.types.standard_artifacts.Examples,
        properties={"split_names": json.dumps(["train", "eval"])},
    ).with_id("import_examples")
    model = tfx.dsl.Importer(
        source_uri=model_uri, artifact_type=tfx.types.standard_artifacts.Model,
    ).with_id("import_model")
    model_run = tfx.dsl.Importer(
        source_uri=str(tmp_path / "model_run"), artifact_type=tfx.types.standard_artifacts.ModelRun,
    ).with_id("import_model_run")
    resolver = create_latest_blessed_model_resolver()
    evaluator = FaqEvaluator(
        examples=examples.outputs["result"],
        model=model.outputs["result"],
        model_run=model_run.outputs["result"],
        baseline_model=resolver.outputs["model"],
        thresholds=BlessingThresholds(min_recall_at_1=0.5),
        embedding_batch_size=5,
        decode_batch_size=4)
    pusher = tfx.components.Pusher(
        model=model.outputs["result"],
        model_blessing=evaluator.outputs["blessing"],
        push_destination=tfx.proto.PushDestination(
            filesystem=tfx.proto.PushDestination.Filesystem(
                base_directory=str(tmp_path / "serving_model" / "faq"))))

    pipeline = tfx.dsl.Pipeline(
        pipeline_name=PIPELINE_NAME,
        pipeline_root=pipeline_root,
        metadata_connection_config=_metadata_config(tmp_path),
        components=[examples, model, model_run, resolver, evaluator, pusher])
    tfx.orchestration.LocalDagRunner().run(pipeline)


def _metadata_config(tmp_path):
    return tfx.orchestration.metadata.sqlite_metadata_connection_config(
        str(tmp_path / "metadata.sqlite"))


def _artifacts(store, type_name):
    return sorted(store.get_artifacts_by_type(type_name), key=lambda artifact: artifact.id)


def _read_metrics(evaluation):
    with open(os.path.join(evaluation.uri, "metrics.json"), encoding="utf-8") as metrics_file:
        return json.load(metrics_file)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run the four pipeline runs once and return the MLMD artifacts of interest."""
    tmp_path = tmp_path_factory.mktemp("evaluation_pipeline")
    _write_examples(str(tmp_path / "examples"))
    os.makedirs(tmp_path / "model_run")
    with open(tmp_path / "model_run" / "training_history.json", "w", encoding="utf-8") as history:
        json.dump(TRAINING_HISTORY, history)

    models = tmp_path / "models"
    model_uris = [
        _save_model(str(models / "constant"), "constant"),
        _save_model(str(models / "oracle"), "oracle"),
        str(models / "oracle_copy"),
        _save_model(str(models / "nan"), "nan"),
    ]
    shutil.copytree(model_uris[1], model_uris[2])
    for model_uri in model_uris:
        _run(tmp_path, model_uri)

    store = metadata_store.MetadataStore(_metadata_config(tmp_path))
    models_by_uri = {artifact.uri: artifact for artifact in _artifacts(store, "Model")}
    return {
        "model_ids": [models_by_uri[uri].id for uri in model_uris],
        "model_uris": model_uris,
        "blessings": _artifacts(store, "ModelBlessing"),
        "evaluations": _artifacts(store, "ModelEvaluation"),
        "pushed": _artifacts(store, "PushedModel"),
        "serving_dir": str(tmp_path / "serving_model" / "faq"),
    }


def _int_property(artifact, name):
    return artifact.custom_properties[name].int_value


def _string_property(artifact, name):
    return artifact.custom_properties[name].string_value


def test_pipeline_writes_one_blessing_per_run(runs):
    assert len(runs["blessings"]) == 4
    assert len(runs["evaluations"]) == 4


def test_pipeline_blessed_flags(runs):
    blessed = [_int_property(blessing, "blessed") for blessing in runs["blessings"]]

    assert blessed == [0, 1, 1, 0]


def test_pipeline_blessing_files(runs):
    names = [sorted(os.listdir(blessing.uri)) for blessing in runs["blessings"]]

    assert names == [["NOT_BLESSED"], ["BLESSED"], ["BLESSED"], ["NOT_BLESSED"]]


def test_pipeline_current_model_properties(runs):
    for blessing, model_id, model_uri in zip(runs["blessings"], runs["model_ids"],
                                             runs["model_uris"]):
        assert _int_property(blessing, "current_model_id") == model_id
        assert _string_property(blessing, "current_model") == model_uri


def test_pipeline_baseline_properties(runs):
    blessings = runs["blessings"]
    model_ids = runs["model_ids"]

    assert "baseline_model_id" not in blessings[0].custom_properties
    assert "baseline_model_id" not in blessings[1].custom_properties
    assert _int_property(blessings[2], "baseline_model_id") == model_ids[1]
    assert _string_property(blessings[2], "baseline_model") == runs["model_uris"][1]
    assert _int_property(blessings[3], "baseline_model_id") == model_ids[2]


def test_pipeline_blessing_messages(runs):
    messages = [_string_property(blessing, "blessing_message") for blessing in runs["blessings"]]

    assert "recall@1 0.0000 < minimum 0.5000" in messages[0]
    assert messages[1].startswith("Model blessed with no blessed baseline model")
    assert messages[2].startswith("Model blessed against the latest blessed model")
    assert "NaN model outputs" in messages[3]
    assert "recall@1 0.0000 regressed from baseline 1.0000" in messages[3]


def test_pipeline_pushes_only_blessed(runs):
    pushed = [_int_property(artifact, "pushed") for artifact in runs["pushed"]]

    assert pushed == [0, 1, 1, 0]
    # The Pusher names versions by the second they were pushed, so two pushes within one second
    # share a folder: compare folders with the recorded destinations, not a count.
    destinations = {_string_property(artifact, "pushed_destination") for artifact in runs["pushed"]
                    if _int_property(artifact, "pushed") == 1}
    assert {os.path.join(runs["serving_dir"], name) for name in os.listdir(runs["serving_dir"])} == destinations


def test_pipeline_constant_model_metrics(runs):
    metrics = _read_metrics(runs["evaluations"][0])
    model = metrics["retrieval"]["model"]

    # All 13 candidates tie, so every correct answer ranks below all wrong ones: rank 13,
    # except rank 12 for question 0, which has two correct answers.
    assert model["recall@1"] == 0.0
    assert model["recall@10"] == 0.0
    assert model["mrr"] == pytest.approx((11 / 13 + 1 / 12) / 12)
    assert model["r10@1"] == 0.0
    assert model["r10@5"] == 0.0
    assert metrics["retrieval"]["baseline_model"] is None


def test_pipeline_oracle_model_metrics(runs):
    metrics = _read_metrics(runs["evaluations"][1])
    model = metrics["retrieval"]["model"]

    assert model["recall@1"] == 1.0
    assert model["mrr"] == 1.0
    assert model["r10@1"] == 1.0
    assert metrics["eval_split"] == {"pairs": 13, "questions": 12, "candidate_answers": 13,
                                     "questions_without_candidate": 0}
    assert metrics["one_in_ten"] == {"seed": 0, "pairs": 13, "questions_skipped": 0}


def test_pipeline_tfidf_metrics(runs):
    tfidf = _read_metrics(runs["evaluations"][1])["retrieval"]["tfidf"]

    # Each eval question shares exactly one train-vocabulary token, its topic, with its answers.
    assert tfidf["recall@1"] == 1.0
    assert tfidf["r10@1"] == 1.0


def test_pipeline_generation_metrics(runs):
    generation = _read_metrics(runs["evaluations"][1])["generation"]

    # The test decoder puts probability 0.5 on every target token.
    assert generation["model"]["perplexity"] == pytest.approx(2.0, rel=1e-6)
    assert generation["model"]["masked_token_accuracy"] == 1.0
    assert generation["vocabulary_size"] == 64
    # 12 answers of 4 words and one of 5, each plus END.
    assert generation["eval_target_tokens"] == 12 * 5 + 6
    # 12 train answers of 5 words, each plus END.
    assert generation["train_target_tokens"] == 12 * 6
    assert math.isfinite(generation["unigram"]["perplexity"])
    assert generation["unigram"]["perplexity"] > 2.0


def test_pipeline_records_baseline_metrics(runs):
    metrics = _read_metrics(runs["evaluations"][2])

    assert metrics["retrieval"]["baseline_model"]["recall@1"] == 1.0
    assert metrics["baseline_model_uri"] == runs["model_uris"][1]


def test_pipeline_nan_model_metrics(runs):
    metrics = _read_metrics(runs["evaluations"][3])

    assert metrics["nan_counts"] == {"question_embeddings_with_nan": 12,
                                     "answer_embeddings_with_nan": 13}
    assert metrics["retrieval"]["model"]["recall@1"] == 0.0
    assert metrics["blessing"]["blessed"] is False


def test_pipeline_report_embeds_plots(runs):
    path = report_path(runs["evaluations"][1].uri)
    with open(path, encoding="utf-8") as report_file:
        page = report_file.read()

    # Recall@k, loss and perplexity have data, but the history has no masked token accuracy.
    assert page.count("data:image/png;base64,") == 3
    assert "Generation masked token accuracy per epoch: no data." in page
    assert "Model blessed" in page
