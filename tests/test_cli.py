"""The `faq-pipeline` command line: flag validation, log filtering and the run summary."""

import logging

import pytest

from components import ingestion
from pipeline import beam_runner
from pipeline import cli
from pipeline import run_summary


@pytest.mark.parametrize("flags, message", [
    (["--eval_fraction", "1.5"], "eval_fraction=1.5 is invalid"),
    (["--batch_size", "1"], "batch_size=1 is invalid"),
    (["--epochs", "0"], "epochs=0 is invalid"),
    (["--beam_runner", "Foo"], "beam_runner='Foo' is invalid"),
])
def test_run_rejects_invalid_flags(capsys, flags, message):
    assert cli.main(["run"] + flags) == 2
    error = capsys.readouterr().err
    assert message in error
    assert error.count(message) == 1


def _record(level, text, module="executor"):
    record = logging.LogRecord("absl", level, f"/x/{module}.py", 1, text, None, None)
    return record


def test_long_info_filter():
    log_filter = cli._LongInfoFilter()  # pylint: disable=protected-access
    long_text = "\n".join(["line"] * 20)
    assert not log_filter.filter(_record(logging.INFO, long_text))
    assert log_filter.filter(_record(logging.WARNING, long_text))
    assert log_filter.filter(_record(logging.INFO, "Trainer: matching epoch 1/20"))
    assert not log_filter.filter(_record(logging.INFO, "Using Any", module="native_type_compatibility"))


def _result(pushed, blessed):
    report = ingestion.IngestionReport("/data/abc", 10, {"train": 8, "eval": 2}, {}, reused=False)
    message = "Model NOT blessed: recall@1 0.0200 < minimum 0.1000." if not blessed else "Model blessed."
    return beam_runner.LocalRunResult(
        ingestion=report,
        components=[run_summary.ComponentRun("Trainer", "COMPLETE", 12.5)],
        push=run_summary.PushResult(pushed, "/serving/faq/17" if pushed else ""),
        signature_names=["decode", "encode_answer", "encode_question"] if pushed else [],
        evaluation=run_summary.Blessing(blessed, message),
        serving_check=run_summary.Blessing(True, ""),
        evaluation_uri="/root/FaqEvaluator/evaluation/8",
        report_path="/root/FaqEvaluator/evaluation/8/report.html",
        metadata_path="/root/metadata.sqlite",
        seconds=100.0)


def test_summary_of_pushed_run():
    text = beam_runner.format_result(_result(pushed=True, blessed=True))
    assert "Pushed model: /serving/faq/17" in text
    assert "Signatures: decode, encode_answer, encode_question" in text
    assert "Evaluation report: /root/FaqEvaluator/evaluation/8/report.html" in text
    assert "Trainer" in text


def test_summary_of_unblessed_run_says_why():
    text = beam_runner.format_result(_result(pushed=False, blessed=False))
    assert "Evaluation: Model NOT blessed: recall@1 0.0200 < minimum 0.1000." in text
    assert "Serving check: passed" in text
    assert "was NOT pushed" in text
    assert "Pushed model" not in text
