"""Malformed and binary inputs, REST connection limits and shutdown of the model server process.

Every server listens on ephemeral 127.0.0.1 ports.
"""

import base64
import json
import os
import socket
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import grpc
import numpy as np
import pytest
from tensorflow.core.framework import tensor_pb2
from tensorflow.core.framework import tensor_shape_pb2
from tensorflow.core.framework import types_pb2
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

import serving_models
from components.serving.launcher import ServerProcess
from components.serving.rest import MAX_BODY_BYTES
from components.serving.tensors import MAX_BROADCAST_ELEMENTS
from components.serving.tensors import make_ndarray

# Short REST timeout of the module's server, so timeout tests finish quickly.
REST_TIMEOUT_MS = 1500

INVALID_UTF8 = [b"\xff\xfe", b"caf\xe9", b"\xed\xa0\x80"]
REPLACED_UTF8 = ["\ufffd\ufffd".encode(), "caf\ufffd".encode(), "\ufffd\ufffd\ufffd".encode()]

# The server process may grow this much while it rejects a request (NumPy and gRPC buffers).
MAX_RSS_GROWTH_BYTES = 300 << 20


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("inputs")
    serving_models.save_fixture_model(str(base / "faq" / "1"), echo_signature=True)
    return base


@pytest.fixture(scope="module")
def server(model_dir):
    process = serving_models.start_server(
        str(model_dir / "faq"),
        log_path=str(model_dir / "server.log"),
        rest_api_port=None,
        use_official_binary=False,
        rest_api_timeout_in_ms=REST_TIMEOUT_MS,
    )
    yield process
    process.stop()


@pytest.fixture(scope="module")
def stub(server):
    with grpc.insecure_channel(server.grpc_address) as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def tensor(dtype, shape, **values):
    dims = [tensor_shape_pb2.TensorShapeProto.Dim(size=size) for size in shape]
    return tensor_pb2.TensorProto(
        dtype=dtype, tensor_shape=tensor_shape_pb2.TensorShapeProto(dim=dims), **values
    )


def predict(stub, signature, inputs):
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "faq"
    request.model_spec.signature_name = signature
    for alias, proto in inputs.items():
        request.inputs[alias].CopyFrom(proto)
    response = stub.Predict(request, timeout=60)
    return {alias: make_ndarray(proto) for alias, proto in response.outputs.items()}


def predict_error(stub, signature, inputs):
    with pytest.raises(grpc.RpcError) as raised:
        predict(stub, signature, inputs)
    return raised.value


def peak_rss_bytes(pid):
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise AssertionError(f"VmHWM not found in /proc/{pid}/status")


def in_process(model_dir, signature, inputs):
    return serving_models.call_in_process(str(model_dir / "faq" / "1"), signature, inputs)


def raw_http(port, data, shutdown_write=False, timeout_seconds=10.0):
    """Send raw bytes to the REST port, read until the server closes, return (seconds, status, head, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_seconds) as sock:
        sock.sendall(data)
        if shutdown_write:
            sock.shutdown(socket.SHUT_WR)
        started = time.monotonic()
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    elapsed = time.monotonic() - started

    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head else None
    return elapsed, status, head.decode("latin-1"), json.loads(body) if body else None


def rest_predict(server, payload):
    request = json.dumps(payload).encode("utf-8")
    data = (
        b"POST /v1/models/faq:predict HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
        + f"Content-Length: {len(request)}\r\n\r\n".encode()
        + request
    )
    _, status, _, body = raw_http(server.rest_api_port, data)
    return status, body


@pytest.mark.parametrize(
    "dtype, shape, values",
    [
        (types_pb2.DT_FLOAT, [500_000_000], dict(float_val=[1.0])),
        (types_pb2.DT_STRING, [500_000_000], dict(string_val=[b"a"])),
        (types_pb2.DT_STRING, [10**12], dict(string_val=[b"a"])),
        (types_pb2.DT_STRING, [10**6, 10**6], dict(string_val=[b"a", b"b"])),
    ],
    ids=["float_to_string_input", "string_broadcast", "string_broadcast_1e12", "string_2d"],
)
def test_huge_declared_shape_rejected_cheaply(server, stub, dtype, shape, values):
    rss_before = peak_rss_bytes(server.process.pid)
    started = time.monotonic()

    error = predict_error(stub, "encode_question", {"question": tensor(dtype, shape, **values)})

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT, error.details()
    assert "'question'" in error.details()
    assert time.monotonic() - started < 5
    assert peak_rss_bytes(server.process.pid) - rss_before < MAX_RSS_GROWTH_BYTES


def test_huge_shape_message_names_counts(stub):
    error = predict_error(
        stub, "encode_question", {"question": tensor(types_pb2.DT_STRING, [10**12], string_val=[b"a"])}
    )

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Input 'question'" in error.details()
    assert f"[{10**12}]" in error.details()
    assert "1 value in string_val" in error.details()
    assert str(MAX_BROADCAST_ELEMENTS) in error.details()


@pytest.mark.parametrize(
    "shape, values, expected_text",
    [
        ([3], [b"a", b"b"], "but 2 values in string_val"),
        ([2], [], "but 0 values in string_val"),
        ([2], [b"a", b"b", b"c"], "but 3 values in string_val"),
        ([-1], [b"a"], "negative size"),
    ],
    ids=["too_few", "none", "too_many", "negative_dim"],
)
def test_value_count_mismatch_rejected(stub, shape, values, expected_text):
    proto = tensor(types_pb2.DT_STRING, shape, string_val=values)

    error = predict_error(stub, "encode_question", {"question": proto})

    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "Input 'question'" in error.details()
    assert expected_text in error.details()
    assert str(shape) in error.details()


def test_single_value_fills_shape(stub, model_dir):
    proto = tensor(types_pb2.DT_STRING, [4], string_val=[b"reset password"])

    outputs = predict(stub, "encode_question", {"question": proto})

    expected = in_process(model_dir, "encode_question", {"question": [b"reset password"] * 4})
    np.testing.assert_allclose(outputs["embedding"], expected["embedding"], rtol=1e-5, atol=1e-6)


def test_grpc_invalid_utf8_reaches_model(stub, model_dir):
    strings = tensor(types_pb2.DT_STRING, [3], string_val=INVALID_UTF8)

    echoed = predict(stub, "echo", {"text": strings})
    embedding = predict(stub, "encode_question", {"question": strings})["embedding"]

    assert echoed["text"].tolist() == INVALID_UTF8
    expected = in_process(model_dir, "encode_question", {"question": INVALID_UTF8})["embedding"]
    replaced = in_process(model_dir, "encode_question", {"question": REPLACED_UTF8})["embedding"]
    np.testing.assert_allclose(embedding, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(embedding, replaced)


def b64(data):
    return {"b64": base64.b64encode(data).decode("ascii")}


@pytest.mark.parametrize(
    "payload",
    [
        {"signature_name": "echo", "instances": [b64(value) for value in INVALID_UTF8]},
        {"signature_name": "echo", "instances": [{"text": b64(value)} for value in INVALID_UTF8]},
        {"signature_name": "echo", "inputs": [b64(value) for value in INVALID_UTF8]},
        {"signature_name": "echo", "inputs": {"text": [b64(value) for value in INVALID_UTF8]}},
    ],
    ids=["instances", "named_instances", "inputs", "named_inputs"],
)
def test_rest_b64_round_trip(server, payload):
    status, body = rest_predict(server, payload)

    assert status == 200, body
    values = body["predictions"] if "instances" in payload else body["outputs"]
    assert values == [b64(value) for value in INVALID_UTF8]


def test_rest_b64_matches_in_process(server, model_dir):
    payload = {"signature_name": "encode_question", "instances": [b64(value) for value in INVALID_UTF8]}

    status, body = rest_predict(server, payload)

    assert status == 200, body
    expected = in_process(model_dir, "encode_question", {"question": INVALID_UTF8})["embedding"]
    np.testing.assert_allclose(np.asarray(body["predictions"]), expected, rtol=1e-5, atol=1e-6)


def test_rest_text_output_stays_text(server):
    status, body = rest_predict(server, {"signature_name": "echo", "instances": ["café", "运费"]})

    assert status == 200, body
    assert body["predictions"] == ["café", "运费"]


def test_rest_lone_surrogate_rejected(server):
    status, body = rest_predict(server, {"signature_name": "echo", "instances": ["\ud800"]})

    assert status == 400
    assert "not valid Unicode" in body["error"]


PREDICT_HEAD = b"POST /v1/models/faq:predict HTTP/1.1\r\nHost: test\r\n"
SMALL_BODY = b'{"signature_name":"encode_question","instances":["hi"]}'

CONTENT_LENGTH_CASES = [
    ("not_a_number", b"Content-Length: abc\r\n\r\n" + SMALL_BODY, False, 400, "Invalid Content-Length"),
    ("negative", b"Content-Length: -1\r\n\r\n" + SMALL_BODY, False, 400, "Invalid Content-Length"),
    ("conflicting", b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n" + SMALL_BODY, False, 400, "Invalid Content-Length"),
    ("missing", b"\r\n" + SMALL_BODY, False, 411, "Content-Length"),
    ("too_large", f"Content-Length: {MAX_BODY_BYTES + 1}\r\n\r\n".encode() + SMALL_BODY, False, 413, "larger than the maximum"),
    ("chunked", b"Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", False, 501, "Transfer-Encoding"),
    ("body_ends_early", b"Content-Length: 1000\r\n\r\n" + SMALL_BODY, True, 400, "ended after"),
    ("body_never_sent", b"Content-Length: 1000\r\n\r\n" + SMALL_BODY, False, 408, "Timed out"),
]


@pytest.mark.parametrize(
    "case, request_tail, shutdown_write, status, message",
    CONTENT_LENGTH_CASES,
    ids=[case[0] for case in CONTENT_LENGTH_CASES],
)
def test_rest_bad_content_length(server, case, request_tail, shutdown_write, status, message):
    elapsed, actual_status, head, body = raw_http(
        server.rest_api_port, PREDICT_HEAD + request_tail, shutdown_write=shutdown_write
    )

    assert actual_status == status, head
    assert message in body["error"]
    assert "Connection: close" in head
    assert elapsed < REST_TIMEOUT_MS / 1000 + 3


def test_rest_idle_keep_alive_closed_after_timeout(server):
    request = b"GET /v1/models/faq HTTP/1.1\r\nHost: test\r\n\r\n"

    elapsed, status, _, body = raw_http(server.rest_api_port, request)

    assert status == 200
    assert body["model_version_status"][0]["state"] == "AVAILABLE"
    assert REST_TIMEOUT_MS / 1000 - 0.5 < elapsed < REST_TIMEOUT_MS / 1000 + 3


def test_sigterm_with_open_rest_connections(tmp_path):
    base = tmp_path / "faq"
    serving_models.save_fixture_model(str(base / "1"))
    # The timeout bounds the half-sent body. Without the drain deadline, the idle keep-alive
    # connection would hold the server until its client closes it 60 s later.
    server = serving_models.start_server(
        str(base), log_path=str(tmp_path / "server.log"), rest_api_port=None,
        use_official_binary=False, rest_api_timeout_in_ms=3000,
    )
    keep_alive = socket.create_connection(("127.0.0.1", server.rest_api_port), timeout=60)
    half_sent = socket.create_connection(("127.0.0.1", server.rest_api_port), timeout=60)
    try:
        keep_alive.sendall(b"GET /v1/models/faq HTTP/1.1\r\nHost: test\r\n\r\n")
        assert keep_alive.recv(12) == b"HTTP/1.1 200"
        half_sent.sendall(PREDICT_HEAD + b"Content-Length: 100\r\n\r\n{")
        time.sleep(0.5)

        started = time.monotonic()
        exit_code = server.stop(timeout_seconds=20)
        stop_seconds = time.monotonic() - started
    finally:
        keep_alive.close()
        half_sent.close()

    assert exit_code == 0
    assert stop_seconds < 10
    log = (tmp_path / "server.log").read_text()
    assert "Closed 1 idle REST connection(s) for shutdown." in log
    assert "Server stopped." in log


def test_missing_base_path_warns_rate_limited(tmp_path):
    missing = tmp_path / "no_such_folder"
    log_path = tmp_path / "server.log"
    server = ServerProcess(
        str(missing), log_path=str(log_path), poll_wait_seconds=0.2, use_official_binary=False
    ).start()
    warning = f"Model base path {missing} does not exist"
    try:
        deadline = time.monotonic() + 60
        while warning not in log_path.read_text() and time.monotonic() < deadline:
            assert server.process.poll() is None, log_path.read_text()
            time.sleep(0.2)
        # About ten more polls run, and none of them repeats the warning within a minute.
        time.sleep(2)
        log = log_path.read_text()
    finally:
        exit_code = server.stop()

    assert log.count(warning) == 1, log
    assert "--model_base_path" in log
    assert exit_code == 0
