"""Reading the corpora and user files, skip accounting, and the train/eval split on disk."""

import csv
import hashlib
import json
import os

import pytest
import tensorflow as tf

from components import corpus
from components import ingestion


def _write(path, content: bytes) -> str:
    with open(path, "wb") as file:
        file.write(content)
    return str(path)


def test_text_id_is_hash_of_normalized_text():
    expected = int.from_bytes(hashlib.sha256(b"hello world").digest()[:8], "big") & 0x7FFF_FFFF_FFFF_FFFF
    assert corpus.text_id("hello world") == expected
    assert corpus.text_id("  Hello\n WORLD ") == expected
    assert corpus.text_id("ＨＥＬＬＯ world") == expected  # NFKC folds full-width letters.
    assert corpus.text_id("hello world!") != expected


def test_chatterbot_english_conversations():
    result = corpus.read_pairs("chatterbot:english")
    by_question = {}
    for pair in result.pairs:
        by_question.setdefault(pair.question, []).append(pair.answer)
    # greetings.yml: "Hi, How is it going?" has six one-line answers, each its own pair.
    assert by_question["Hi, How is it going?"] == ["Good", "Fine", "Okay", "Great", "Could be better.", "Not so great."]
    assert result.rows_read == len(result.pairs) + sum(result.skipped.values())
    assert len(result.pairs) > 1000


def test_chatterbot_chinese_and_unknown_language():
    result = corpus.read_pairs("chatterbot:chinese")
    questions = {pair.question for pair in result.pairs}
    assert "你好" in questions
    with pytest.raises(ValueError, match="klingon.*chinese.*english"):
        corpus.read_pairs("chatterbot:klingon")


def test_csv_multiline_answer(tmp_path):
    path = _write(tmp_path / "faq.csv", 'question,answer\n"How?","Step one.\nStep two."\nWhy?,Because\n'.encode())
    result = corpus.read_pairs(data=path)
    assert [(pair.question, pair.answer) for pair in result.pairs] == [("How?", "Step one.\nStep two."),
                                                                       ("Why?", "Because")]
    assert result.rows_read == 2
    assert sum(result.skipped.values()) == 0


def test_csv_bad_rows_are_counted(tmp_path):
    content = ('question,answer\n'
               'ok,fine\n'
               ',empty question\n'
               'missing answer\n'
               'ok,fine\n').encode() + b'bad \xff bytes,answer\n'
    result = corpus.read_pairs(data=_write(tmp_path / "bad.csv", content))
    assert [pair.question for pair in result.pairs] == ["ok"]
    assert result.rows_read == 5
    assert dict(result.skipped) == {"empty_field": 1, "missing_field": 1, "duplicate_pair": 1, "invalid_utf8": 1}


def test_csv_without_required_header(tmp_path):
    with pytest.raises(ValueError, match="must name `question` and `answer`"):
        corpus.read_pairs(data=_write(tmp_path / "x.csv", b"q,a\nhi,there\n"))


def test_jsonl_bad_rows_are_counted(tmp_path):
    lines = [
        json.dumps({"question": "你好吗？", "answer": "我很好。"}, ensure_ascii=False).encode(),
        b'{"question": "no answer"}',
        b'{"question": 42, "answer": "number"}',
        b'["not", "an", "object"]',
        b'{"question": "broken json"',
        b'{"question": "bad utf8 \xc3\x28", "answer": "x"}',
        b'',
        json.dumps({"question": "long", "answer": "x" * 11}).encode(),
    ]
    result = corpus.read_pairs(data=_write(tmp_path / "faq.jsonl", b"\n".join(lines)), max_field_chars=10)
    assert [(pair.question, pair.answer) for pair in result.pairs] == [("你好吗？", "我很好。")]
    assert dict(result.skipped) == {"missing_field": 1, "wrong_type": 2, "invalid_json": 1, "invalid_utf8": 1,
                                    "too_long": 1}
    assert result.rows_read == 7  # The blank line is not a row.


def test_no_valid_rows_and_bad_paths(tmp_path):
    with pytest.raises(ValueError, match="No valid question/answer pairs"):
        corpus.read_pairs(data=_write(tmp_path / "empty.jsonl", b'{"question": ""}\n'))
    with pytest.raises(FileNotFoundError, match="not found"):
        corpus.read_pairs(data=str(tmp_path / "missing.csv"))
    with pytest.raises(ValueError, match="unsupported extension"):
        corpus.read_pairs(data=_write(tmp_path / "faq.txt", b"x"))
    with pytest.raises(ValueError, match="chatterbot:<language>"):
        corpus.read_pairs(corpus="squad")


def _read_split(data_root, split):
    path = os.path.join(data_root, split, ingestion.FILE_NAME)
    examples = []
    for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
        example = tf.train.Example.FromString(record.numpy())
        examples.append(example.features.feature)
    return examples


def test_ingest_splits_by_question(tmp_path):
    rows = [{"question": f"question {i % 40}", "answer": f"answer {i}"} for i in range(200)]
    data = _write(tmp_path / "faq.jsonl", "\n".join(json.dumps(row) for row in rows).encode())
    report = ingestion.ingest("", data, 0.25, str(tmp_path / "out"))

    train = _read_split(report.data_root, "train")
    evaluation = _read_split(report.data_root, "eval")
    assert len(train) + len(evaluation) == 200
    assert report.written == {"train": len(train), "eval": len(evaluation)}
    train_questions = {feature["question_id"].int64_list.value[0] for feature in train}
    eval_questions = {feature["question_id"].int64_list.value[0] for feature in evaluation}
    assert not train_questions & eval_questions
    assert len(train_questions) + len(eval_questions) == 40

    first = train[0]
    assert first["question_id"].int64_list.value[0] == corpus.text_id(first["question"].bytes_list.value[0].decode())
    assert first["answer_id"].int64_list.value[0] == corpus.text_id(first["answer"].bytes_list.value[0].decode())


def test_ingest_reuses_unchanged_output(tmp_path):
    data = _write(tmp_path / "faq.csv", "question,answer\n".encode() + b"".join(
        f"q{i},a{i}\n".encode() for i in range(50)))
    first = ingestion.ingest("", data, 0.3, str(tmp_path / "out"))
    modified = os.path.getmtime(os.path.join(first.data_root, "train", ingestion.FILE_NAME))
    second = ingestion.ingest("", data, 0.3, str(tmp_path / "out"))
    assert not first.reused
    assert second.reused
    assert second.data_root == first.data_root
    assert os.path.getmtime(os.path.join(second.data_root, "train", ingestion.FILE_NAME)) == modified

    other_fraction = ingestion.ingest("", data, 0.5, str(tmp_path / "out"))
    assert other_fraction.data_root != first.data_root


def test_ingest_empty_split_is_an_error(tmp_path):
    data = _write(tmp_path / "one.csv", b"question,answer\nonly,one\n")
    with pytest.raises(ValueError, match="split is empty"):
        ingestion.ingest("", data, 0.2, str(tmp_path / "out"))


def test_ingest_summary_counts(tmp_path):
    data = _write(tmp_path / "faq.csv", b"question,answer\nq1,a1\nq2,a2\nq3,\nq1,a1\n" + b"".join(
        f"q{i},a{i}\n".encode() for i in range(4, 40)))
    report = ingestion.ingest("", data, 0.3, str(tmp_path / "out"), max_examples=30)
    assert report.rows_read == 40
    assert dict(report.skipped) == {"empty_field": 1, "duplicate_pair": 1, "over_max_examples": 8}
    assert sum(report.written.values()) == 30
    assert "40 rows read" in report.summary()
    assert "over_max_examples=8" in report.summary()


def _assert_every_row_counted(result):
    assert result.rows_read == len(result.pairs) + sum(result.skipped.values())


def test_csv_field_over_csv_module_limit(tmp_path):
    # Python's csv module raises on fields over 131072 characters unless the limit is raised.
    content = b"question,answer\nq1,a1\nlong," + b"x" * 200_000 + b"\nq2,a2\n"
    limit_before = csv.field_size_limit()
    result = corpus.read_pairs(data=_write(tmp_path / "huge.csv", content))
    assert [pair.question for pair in result.pairs] == ["q1", "q2"]
    assert dict(result.skipped) == {"too_long": 1}
    _assert_every_row_counted(result)
    assert csv.field_size_limit() == limit_before


def test_csv_nul_byte_row_is_skipped(tmp_path, caplog):
    content = b'question,answer\nq1,a1\nnul \x00 q,a\nq2,"multi\nline \x00 answer"\nq3,a3\n'
    result = corpus.read_pairs(data=_write(tmp_path / "nul.csv", content))
    assert [pair.question for pair in result.pairs] == ["q1", "q3"]
    assert dict(result.skipped) == {"invalid_csv": 2}
    _assert_every_row_counted(result)
    assert "nul.csv:3 (invalid_csv)" in caplog.text
    assert "nul.csv:4-5 (invalid_csv)" in caplog.text


def test_csv_nul_bytes_in_header(tmp_path):
    content = "question,answer\nq,a\n".encode("utf-16-le")
    with pytest.raises(ValueError, match=r"utf16.csv:1: .*NUL bytes.*UTF-16"):
        corpus.read_pairs(data=_write(tmp_path / "utf16.csv", content))


def test_jsonl_lone_surrogate_escape_is_skipped(tmp_path, caplog):
    lines = [
        b'{"question": "q1", "answer": "a1"}',
        b'{"question": "lone \\ud800", "answer": "x"}',
        b'{"question": "q2", "answer": "low \\udc80"}',
        b'{"question": "pair \\ud83d\\ude00", "answer": "a3"}',
    ]
    result = corpus.read_pairs(data=_write(tmp_path / "faq.jsonl", b"\n".join(lines)))
    assert [pair.question for pair in result.pairs] == ["q1", "pair \U0001F600"]
    assert dict(result.skipped) == {"invalid_utf8": 2}
    _assert_every_row_counted(result)
    assert "faq.jsonl:2 (invalid_utf8)" in caplog.text
    assert "\\ud800" in caplog.text


def test_csv_unterminated_quote_is_an_error(tmp_path):
    content = b'question,answer\nq1,a1\n"open quote,answer\nq2,a2\nq3,a3\n'
    with pytest.raises(ValueError, match=r"open.csv:3: a quoted field starts on this line .* \(line 5\)"):
        corpus.read_pairs(data=_write(tmp_path / "open.csv", content))


def test_csv_text_after_closing_quote(tmp_path, caplog):
    # The stray quote on line 3 is closed on line 5, so lines 3-5 are one invalid row.
    content = b'question,answer\nq1,a1\n"stray quote,answer\nq2,a2\nq3,"quoted" text\nq4,a4\n'
    result = corpus.read_pairs(data=_write(tmp_path / "stray.csv", content))
    assert [pair.question for pair in result.pairs] == ["q1", "q4"]
    assert dict(result.skipped) == {"invalid_csv": 1}
    _assert_every_row_counted(result)
    assert "stray.csv:3-5 (invalid_csv)" in caplog.text


def test_csv_extra_columns_are_skipped(tmp_path, caplog):
    content = b"question,answer\nq1,a1\nq2,a2,extra1,extra2\nq3,a3,\n"
    result = corpus.read_pairs(data=_write(tmp_path / "extra.csv", content))
    # An empty field after a trailing comma contains no text, so the row is kept.
    assert [(pair.question, pair.answer) for pair in result.pairs] == [("q1", "a1"), ("q3", "a3")]
    assert dict(result.skipped) == {"extra_columns": 1}
    _assert_every_row_counted(result)
    assert "extra.csv:3 (extra_columns)" in caplog.text
    assert "Put double quotes around fields that contain commas" in caplog.text


def test_csv_extra_header_columns_ignored(tmp_path):
    content = b"question,answer,category\nq1,a1,billing\nq2,a2\n"
    result = corpus.read_pairs(data=_write(tmp_path / "category.csv", content))
    assert [(pair.question, pair.answer) for pair in result.pairs] == [("q1", "a1"), ("q2", "a2")]
    _assert_every_row_counted(result)


def test_csv_with_utf8_bom(tmp_path):
    content = b'\xef\xbb\xbfquestion,answer\n"q1","a1"\n'
    result = corpus.read_pairs(data=_write(tmp_path / "bom.csv", content))
    assert [(pair.question, pair.answer) for pair in result.pairs] == [("q1", "a1")]
    _assert_every_row_counted(result)


def test_csv_header_errors(tmp_path):
    with pytest.raises(ValueError, match=r"contains ';' but no comma.*comma-separated"):
        corpus.read_pairs(data=_write(tmp_path / "semicolon.csv", b"question;answer\nq;a\n"))
    with pytest.raises(ValueError, match=r"dup.csv:1: the CSV header names 'question' in columns \[1, 3\]"):
        corpus.read_pairs(data=_write(tmp_path / "dup.csv", b"question,answer,question\nq,a,\n"))
    with pytest.raises(ValueError, match=r"empty.csv is empty: the first line must be the header"):
        corpus.read_pairs(data=_write(tmp_path / "empty.csv", b""))
    with pytest.raises(ValueError, match=r"No question/answer rows in .*header.csv"):
        corpus.read_pairs(data=_write(tmp_path / "header.csv", b"question,answer\n"))


def test_json_array_file(tmp_path, caplog):
    rows = [{"question": "q1", "answer": "a1"}, {"question": "q2"}, ["q3", "a3"], {"question": "q4", "answer": "a4"}]
    path = _write(tmp_path / "faq.json", b"\xef\xbb\xbf" + json.dumps(rows, indent=2).encode())
    result = corpus.read_pairs(data=path)
    assert [(pair.question, pair.answer) for pair in result.pairs] == [("q1", "a1"), ("q4", "a4")]
    assert dict(result.skipped) == {"missing_field": 1, "wrong_type": 1}
    _assert_every_row_counted(result)
    assert "faq.json: array item 1 (missing_field)" in caplog.text


def test_json_file_with_json_lines(tmp_path):
    path = _write(tmp_path / "lines.json", b'{"question": "q1", "answer": "a1"}\n{"question": "q2", "answer": "a2"}\n')
    result = corpus.read_pairs(data=path)
    assert [pair.question for pair in result.pairs] == ["q1", "q2"]
    _assert_every_row_counted(result)


def test_json_array_errors(tmp_path):
    with pytest.raises(ValueError, match=r"broken.json:4:1: invalid JSON .*one JSON array of objects"):
        corpus.read_pairs(data=_write(tmp_path / "broken.json", b'[\n{"question": "q", "answer": "a"}\n\n'))
    with pytest.raises(ValueError, match=r"latin1.json:2: byte 0xe9 is not valid UTF-8"):
        corpus.read_pairs(data=_write(tmp_path / "latin1.json", b'[\n{"question": "caf\xe9", "answer": "a"}]'))
    with pytest.raises(ValueError, match="one JSON object per line"):
        corpus.read_pairs(data=_write(tmp_path / "pretty.json", b'{\n  "question": "q",\n  "answer": "a"\n}\n'))


def test_ingest_rejects_invalid_limits(tmp_path):
    data = _write(tmp_path / "faq.csv", b"question,answer\n" + b"".join(f"q{i},a{i}\n".encode() for i in range(20)))
    with pytest.raises(ValueError, match=r"max_examples=-5 is invalid"):
        ingestion.ingest("", data, 0.3, str(tmp_path / "out"), max_examples=-5)
    with pytest.raises(ValueError, match=r"max_field_chars=0 is invalid"):
        ingestion.ingest("", data, 0.3, str(tmp_path / "out"), max_field_chars=0)
    with pytest.raises(ValueError, match=r"max_field_chars=-1 is invalid"):
        corpus.read_pairs(data=data, max_field_chars=-1)
    assert not os.path.exists(tmp_path / "out")
