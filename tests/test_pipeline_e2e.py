"""End to end: the real pipeline with BeamDagRunner on a slice of the default corpus, run three times.

Run 1 trains and pushes. Run 2 is unchanged: everything up to the Trainer comes from the cache,
and the evaluator runs again because the latest blessed model (run 1's) is now its baseline, as
in TFX's own examples. Run 3 changes a Trainer hyperparameter, so only the Trainer and what
follows it run again.
"""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from components.serving import commands as serving_commands
from components.serving.client import ServingClient
from components.serving.launcher import ServerProcess
from pipeline import beam_runner
from pipeline.configs import PipelineConfig

SIGNATURES = ["decode", "encode_answer", "encode_question"]
UPSTREAM = {"ImportExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "Transform"}
DOWNSTREAM = {"latest_blessed_model_resolver", "FaqEvaluator", "ServingCheck", "Pusher"}
QUESTIONS = ["How are you?", "你好吗？", ""]
ANSWERS = ["I am fine, thank you.", "我很好。", ""]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("e2e")
    config = PipelineConfig(
        max_examples=600, epochs=1, batch_size=32, encoder_units=32, decoder_units=32, embedding_dim=16,
        max_question_length=12, max_answer_length=16,
        min_recall_at_1=0.0,  # One epoch on a slice: this test is about the pipeline, not model quality.
        pipeline_root=str(root / "pipeline_root"), serving_model_dir=str(root / "serving_model"))
    first = beam_runner.run_local(config)
    second = beam_runner.run_local(config)
    third = beam_runner.run_local(dataclasses.replace(config, epochs=2))
    return config, first, second, third


def _states(result):
    return {run.component: run.state for run in result.components}


def _metrics(result):
    with open(os.path.join(result.evaluation_uri, "metrics.json"), encoding="utf-8") as file:
        return json.load(file)


def test_first_run_pushes_servable_model(runs):
    config, first, _, _ = runs
    assert set(_states(first).values()) == {"COMPLETE"}
    assert set(_states(first)) == UPSTREAM | DOWNSTREAM | {"Trainer"}
    assert first.push.pushed
    assert os.path.dirname(first.push.destination) == os.path.join(config.serving_model_dir, config.model_name)
    assert os.path.basename(first.push.destination).isdigit()
    assert first.signature_names == SIGNATURES
    assert first.ingestion.written["train"] + first.ingestion.written["eval"] == 600


def test_pushed_signatures_outputs(runs):
    config, first, _, _ = runs
    loaded = tf.saved_model.load(first.push.destination)
    assert sorted(loaded.signatures.keys()) == SIGNATURES

    question_embedding = loaded.signatures["encode_question"](question=tf.constant(QUESTIONS))["embedding"].numpy()
    answer_embedding = loaded.signatures["encode_answer"](answer=tf.constant(ANSWERS))["embedding"].numpy()
    for embedding in (question_embedding, answer_embedding):
        assert embedding.shape == (3, config.encoder_units)
        assert np.isfinite(embedding).all()
        # Unit length for English and Chinese; the empty string has no tokens and gets the zero vector.
        np.testing.assert_allclose(np.linalg.norm(embedding, axis=1), [1.0, 1.0, 0.0], rtol=1e-5)

    decoded = loaded.signatures["decode"](question=tf.constant(QUESTIONS), answer=tf.constant(ANSWERS))
    length = config.max_answer_length
    vocab_size = decoded["probabilities"].shape[-1]
    assert decoded["probabilities"].shape == (3, length, vocab_size)
    assert decoded["predicted_ids"].shape == (3, length)
    assert decoded["predicted_tokens"].shape == (3, length)
    assert decoded["target_ids"].shape == (3, length)
    assert np.isfinite(decoded["probabilities"].numpy()).all()
    np.testing.assert_allclose(decoded["probabilities"].numpy().sum(axis=-1), 1.0, rtol=1e-4)
    assert np.isfinite(decoded["log_probability"].numpy()).all()
    # The empty answer decodes to END alone: one target token.
    assert decoded["target_ids"].numpy()[2, 0] == 2
    assert decoded["target_length"].numpy()[2] == 1


def test_pushed_model_has_answer_bank(runs):
    _, first, _, _ = runs
    path = os.path.join(first.push.destination, "assets.extra", "answer_bank.jsonl")
    with open(path, encoding="utf-8") as file:
        lines = file.read().splitlines()
    assert 0 < len(lines) <= first.ingestion.written["train"]


def test_first_run_writes_report(runs):
    _, first, _, _ = runs
    assert os.path.isfile(first.report_path)
    assert _metrics(first)["baseline_model_uri"] == ""  # No blessed model existed before run 1.


def test_unchanged_rerun_is_cached(runs):
    _, first, second, _ = runs
    states = _states(second)
    cached = UPSTREAM | {"Trainer", "ServingCheck"}
    assert {name: states[name] for name in cached} == {name: "CACHED" for name in cached}
    assert states["FaqEvaluator"] == "COMPLETE"
    assert second.ingestion.reused
    # The cached Trainer output is the model run 1 blessed: it is both candidate and baseline.
    metrics = _metrics(second)
    assert metrics["baseline_model_uri"] == metrics["model_uri"]
    assert second.push.pushed


def test_trainer_change_reruns_only_downstream(runs):
    _, first, _, third = runs
    states = _states(third)
    assert {name: states[name] for name in UPSTREAM} == {name: "CACHED" for name in UPSTREAM}
    assert states["Trainer"] == "COMPLETE"
    assert states["FaqEvaluator"] == "COMPLETE"
    assert states["ServingCheck"] == "COMPLETE"
    assert states["Pusher"] == "COMPLETE"
    metrics = _metrics(third)
    assert metrics["baseline_model_uri"] == _metrics(first)["model_uri"]
    assert metrics["model_uri"] != metrics["baseline_model_uri"]


def test_served_pushed_model_matches_in_process(runs, tmp_path, capsys):
    config, first, _, _ = runs
    base_path = os.path.dirname(first.push.destination)
    latest = max(int(name) for name in os.listdir(base_path) if name.isdigit())
    loaded = tf.saved_model.load(os.path.join(base_path, str(latest)))
    expected = loaded.signatures["encode_question"](question=tf.constant(QUESTIONS))["embedding"].numpy()

    with ServerProcess(base_path, log_path=str(tmp_path / "server.log")) as server:
        server.wait_until_ready(timeout_seconds=120)
        with ServingClient(server.grpc_address, config.model_name) as client:
            served_version = client.served_version()
            embedding = client.encode_questions(QUESTIONS, latest)
        exit_code = serving_commands.main(["query", "How are you?", "--top_k=3", f"--server={server.grpc_address}",
                                           f"--model_base_path={base_path}", f"--cache_dir={tmp_path}"])
    output = capsys.readouterr().out.splitlines()

    assert served_version == latest
    np.testing.assert_allclose(embedding, expected, rtol=1e-5, atol=1e-6)
    assert exit_code == 0
    assert output[1].startswith("1. score=")
    assert len(output) == 4
