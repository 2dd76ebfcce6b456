"""`faq-pipeline serve` and `query` through components.serving.commands, against a fixture model."""

import os
import sys

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import numpy as np
import pytest

import serving_models
from components.serving import answer_bank
from components.serving import commands
from components.serving.launcher import ServerProcess


@pytest.fixture(scope="module")
def base_path(tmp_path_factory):
    base = tmp_path_factory.mktemp("query") / "faq"
    serving_models.save_fixture_model(str(base / "3"))
    return base


@pytest.fixture(scope="module")
def server(base_path):
    process = ServerProcess(str(base_path), log_path=str(base_path.parent / "server.log"))
    # Start through the `serve` command, so the CLI path is what the tests exercise.
    process.command = [
        sys.executable, "-m", "components.serving.commands", "serve",
        f"--port={process.port}", "--rest_api_port=0",
        f"--model_base_path={base_path}", "--model_name=faq",
    ]
    process.start()
    try:
        process.wait_until_ready(timeout_seconds=120)
        yield process
    finally:
        assert process.stop() == 0


def run_query(capsys, server, base_path, cache_dir, *extra):
    argv = [
        "query", *extra,
        f"--server={server.grpc_address}",
        f"--model_base_path={base_path}",
        f"--cache_dir={cache_dir}",
    ]
    exit_code = commands.main(argv)
    captured = capsys.readouterr()
    return exit_code, captured.out.splitlines(), captured.err


@pytest.mark.parametrize(
    "question, answer_id",
    [("How do I reset my password?", 11), ("How many days does shipping take?", 12), ("refunds card", 13)],
)
def test_query_ranks_right_answer_first(capsys, server, base_path, tmp_path, question, answer_id):
    exit_code, lines, _ = run_query(capsys, server, base_path, tmp_path, question, "--top_k=2")

    assert exit_code == 0
    assert lines[0].startswith("Model faq version 3 at ")
    assert len(lines) == 3
    assert f"answer_id={answer_id} " in lines[1]
    assert lines[1].startswith("1. score=")


def test_query_caches_answer_embeddings(capsys, server, base_path, tmp_path):
    bank_path = answer_bank.default_answer_bank_path(str(base_path), 3)
    checksum = answer_bank.file_checksum(bank_path)
    cache_file = answer_bank.cache_path(str(tmp_path), "faq", 3, checksum)

    run_query(capsys, server, base_path, tmp_path, "reset password")
    cached = np.load(cache_file)
    modified = os.stat(cache_file).st_mtime_ns
    exit_code, lines, _ = run_query(capsys, server, base_path, tmp_path, "reset password")

    assert exit_code == 0
    assert cached.shape == (len(serving_models.DEFAULT_ANSWER_BANK), serving_models.EMBEDDING_DIM)
    assert os.stat(cache_file).st_mtime_ns == modified
    assert "answer_id=11 " in lines[1]


def test_query_decode_prints_probability(capsys, server, base_path, tmp_path):
    question, answer = "reset password", "open the settings page"
    expected = serving_models.call_in_process(
        str(base_path / "3"), "decode", {"question": [question], "answer": [answer]}
    )

    exit_code, lines, _ = run_query(capsys, server, base_path, tmp_path, question, f"--decode={answer}")

    length = int(expected["target_length"][0])
    probability = float(np.exp(expected["log_probability"][0]))
    assert exit_code == 0
    assert f"Decoder, teacher-forced on the answer {answer!r} ({length} target tokens):" in lines
    assert sum(line.startswith("  position ") for line in lines) == length
    assert lines[-1].endswith(f"probability={probability:.6g}")


def test_query_missing_answer_bank_fails(capsys, server, base_path, tmp_path):
    exit_code, _, err = run_query(
        capsys, server, base_path, tmp_path, "reset", f"--answer_bank={tmp_path / 'missing.jsonl'}"
    )

    assert exit_code == 1
    assert "missing.jsonl not found" in err


def test_query_unknown_model_fails(capsys, server, base_path, tmp_path):
    exit_code, _, err = run_query(capsys, server, base_path, tmp_path, "reset", "--model_name=nope")

    assert exit_code == 1
    assert "NOT_FOUND" in err


def test_rank_answers_zero_vector_and_ties():
    entries = [answer_bank.BankEntry(1, "a"), answer_bank.BankEntry(2, "b"), answer_bank.BankEntry(3, "c")]
    answers = np.array([[1.0, 0.0], [0.0, 0.0], [1.0, 0.0]], dtype=np.float32)

    ranked = answer_bank.rank_answers(np.array([2.0, 0.0]), answers, entries, top_k=3)

    assert [item.answer_id for item in ranked] == [1, 3, 2]
    assert [item.score for item in ranked] == [1.0, 1.0, 0.0]


def test_load_answer_bank_names_bad_line(tmp_path):
    bank = tmp_path / "bank.jsonl"
    bank.write_text('{"answer_id": 1, "answer": "ok"}\n{"answer_id": "x", "answer": "bad"}\n', encoding="utf-8")

    with pytest.raises(ValueError, match=r"bank.jsonl:2 must be"):
        answer_bank.load_answer_bank(str(bank))
