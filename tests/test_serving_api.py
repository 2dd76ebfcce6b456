"""The model server's gRPC and REST APIs against a fixture model, on ephemeral 127.0.0.1 ports."""

import json
import os
import urllib.error
import urllib.request

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import grpc
import numpy as np
import pytest
from tensorflow_serving.apis import classification_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

import serving_models
from components.serving.client import ServingClient
from components.serving.tensors import make_tensor_proto

SIGNATURES = ("encode_question", "encode_answer", "decode")
MAX_MESSAGE_BYTES = 1 << 20


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("api")
    serving_models.save_fixture_model(str(base / "faq" / "1"))
    return base


@pytest.fixture(scope="module")
def server(model_dir):
    process = serving_models.start_server(
        str(model_dir / "faq"),
        log_path=str(model_dir / "server.log"),
        rest_api_port=None,
        grpc_channel_arguments=f"grpc.max_receive_message_length={MAX_MESSAGE_BYTES}",
    )
    yield process
    process.stop()


@pytest.fixture()
def client(server):
    with ServingClient(server.grpc_address, "faq") as serving_client:
        yield serving_client


def expected_outputs(model_dir, signature_name):
    inputs = serving_models.sample_inputs(signature_name)
    return serving_models.call_in_process(str(model_dir / "faq" / "1"), signature_name, inputs)


def assert_outputs_equal(actual, expected):
    assert sorted(actual) == sorted(expected)
    for name, want in expected.items():
        got = np.asarray(actual[name])
        if want.dtype.kind in ("O", "S"):
            assert got.tolist() == want.tolist(), name
        else:
            assert got.shape == want.shape, name
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)


def rest_call(url, payload=None):
    """Return (HTTP status, decoded JSON body) of a GET, or a POST when payload is given."""
    data = None if payload is None else json.dumps(payload).encode("utf-8")
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def rest_strings_to_bytes(value):
    if isinstance(value, list):
        return [rest_strings_to_bytes(item) for item in value]
    return value.encode("utf-8") if isinstance(value, str) else value


@pytest.mark.parametrize("signature_name", SIGNATURES)
def test_grpc_predict_matches_in_process(client, model_dir, signature_name):
    inputs = serving_models.sample_inputs(signature_name)

    actual = client.predict(signature_name, inputs)

    assert_outputs_equal(actual, expected_outputs(model_dir, signature_name))


@pytest.mark.parametrize("signature_name", SIGNATURES)
def test_rest_columnar_matches_in_process(server, model_dir, signature_name):
    inputs = serving_models.sample_inputs(signature_name)
    url = f"{server.rest_url}/v1/models/faq:predict"

    status, body = rest_call(url, {"signature_name": signature_name, "inputs": inputs})

    assert status == 200
    expected = expected_outputs(model_dir, signature_name)
    outputs = body["outputs"] if len(expected) > 1 else {next(iter(expected)): body["outputs"]}
    assert_outputs_equal({k: rest_strings_to_bytes(v) for k, v in outputs.items()}, expected)


@pytest.mark.parametrize("signature_name", SIGNATURES)
def test_rest_row_format_matches_in_process(server, model_dir, signature_name):
    inputs = serving_models.sample_inputs(signature_name)
    names = sorted(inputs)
    instances = [{name: inputs[name][row] for name in names} for row in range(3)]
    url = f"{server.rest_url}/v1/models/faq/versions/1:predict"

    status, body = rest_call(url, {"signature_name": signature_name, "instances": instances})

    assert status == 200
    expected = expected_outputs(model_dir, signature_name)
    predictions = body["predictions"]
    assert len(predictions) == 3
    if len(expected) == 1:
        outputs = {next(iter(expected)): predictions}
    else:
        outputs = {name: [row[name] for row in predictions] for name in expected}
    assert_outputs_equal({k: rest_strings_to_bytes(v) for k, v in outputs.items()}, expected)


def test_rest_bare_instances_single_input(server, model_dir):
    url = f"{server.rest_url}/v1/models/faq:predict"

    status, body = rest_call(
        url, {"signature_name": "encode_question", "instances": serving_models.SAMPLE_QUESTIONS}
    )

    assert status == 200
    expected = expected_outputs(model_dir, "encode_question")["embedding"]
    np.testing.assert_allclose(np.asarray(body["predictions"]), expected, rtol=1e-5, atol=1e-6)


def test_grpc_response_model_spec(client):
    request = client.make_request("encode_question", {"question": ["hello"]})

    response = client.predict_response(request)

    assert response.model_spec.name == "faq"
    assert response.model_spec.version.value == 1
    assert response.model_spec.signature_name == "encode_question"


def test_grpc_output_filter(client):
    outputs = client.predict(
        "decode", serving_models.sample_inputs("decode"), output_filter=["log_probability"]
    )

    assert sorted(outputs) == ["log_probability"]
    assert outputs["log_probability"].shape == (3,)


def test_grpc_metadata_lists_signatures(client, model_dir):
    signature_defs = client.signature_defs()

    exported = {key for key in signature_defs if not key.startswith("__")}
    assert exported == set(SIGNATURES)
    assert sorted(signature_defs["decode"].inputs) == ["answer", "question"]
    assert sorted(signature_defs["decode"].outputs) == [
        "log_probability", "predicted_ids", "predicted_tokens",
        "probabilities", "target_ids", "target_length",
    ]
    assert sorted(signature_defs["encode_question"].inputs) == ["question"]
    assert sorted(signature_defs["encode_answer"].outputs) == ["embedding"]


def test_grpc_metadata_response_shape(server):
    request = get_model_metadata_pb2.GetModelMetadataRequest()
    request.model_spec.name = "faq"
    request.metadata_field.append("signature_def")
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        response = stub.GetModelMetadata(request, timeout=30)

    assert response.model_spec.name == "faq"
    assert response.model_spec.version.value == 1
    assert list(response.metadata) == ["signature_def"]
    assert response.metadata["signature_def"].Is(get_model_metadata_pb2.SignatureDefMap.DESCRIPTOR)


def test_rest_metadata_lists_signatures(server):
    status, body = rest_call(f"{server.rest_url}/v1/models/faq/metadata")

    assert status == 200
    assert body["model_spec"] == {"name": "faq", "signature_name": "", "version": "1"}
    signature_defs = body["metadata"]["signature_def"]["signature_def"]
    assert {key for key in signature_defs if not key.startswith("__")} == set(SIGNATURES)
    assert signature_defs["encode_question"]["inputs"]["question"]["dtype"] == "DT_STRING"


def test_model_status_available(client, server):
    status, body = rest_call(f"{server.rest_url}/v1/models/faq")

    assert client.available_versions() == [1]
    assert status == 200
    assert body["model_version_status"] == [
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}
    ]


def _request(client, signature="encode_question", inputs=None, version=None, model_name=None):
    inputs = {"question": ["hello"]} if inputs is None else inputs
    request = client.make_request(signature, inputs, version)
    if model_name is not None:
        request.model_spec.name = model_name
    return request


GRPC_ERROR_CASES = [
    ("unknown_model", dict(model_name="nope"), grpc.StatusCode.NOT_FOUND),
    ("unknown_version", dict(version=99), grpc.StatusCode.NOT_FOUND),
    # TF Serving's predict_util.cc returns FAILED_PRECONDITION for an unknown signature key.
    ("unknown_signature", dict(signature="nope"), grpc.StatusCode.FAILED_PRECONDITION),
    ("missing_input", dict(signature="decode"), grpc.StatusCode.INVALID_ARGUMENT),
    (
        "extra_input",
        dict(inputs={"question": ["a"], "answer": ["b"]}),
        grpc.StatusCode.INVALID_ARGUMENT,
    ),
    ("renamed_input", dict(inputs={"query": ["a"]}), grpc.StatusCode.INVALID_ARGUMENT),
    ("wrong_dtype", dict(inputs={"question": np.array([1.0, 2.0], np.float32)}), grpc.StatusCode.INVALID_ARGUMENT),
    ("wrong_shape", dict(inputs={"question": [["a", "b"]]}), grpc.StatusCode.INVALID_ARGUMENT),
    ("scalar_input", dict(inputs={"question": "a"}), grpc.StatusCode.INVALID_ARGUMENT),
]


@pytest.mark.parametrize("case, overrides, code", GRPC_ERROR_CASES, ids=[c[0] for c in GRPC_ERROR_CASES])
def test_grpc_error_then_recovery(client, case, overrides, code):
    with pytest.raises(grpc.RpcError) as raised:
        client.predict_response(_request(client, **overrides))

    assert raised.value.code() == code, raised.value.details()
    assert client.encode_questions(["still serving"]).shape == (1, serving_models.EMBEDDING_DIM)


def test_grpc_unknown_output_filter(client):
    request = _request(client)
    request.output_filter.append("nope")

    with pytest.raises(grpc.RpcError) as raised:
        client.predict_response(request)

    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "output tensor alias not found in signature: nope" in raised.value.details()


def test_grpc_error_messages_name_inputs(client):
    with pytest.raises(grpc.RpcError) as raised:
        client.predict_response(_request(client, signature="decode"))

    assert "Missing but required: {answer}" in raised.value.details()


def test_oversized_request_resource_exhausted(client):
    big = ["x" * 1024] * (MAX_MESSAGE_BYTES // 1024 + 10)

    with pytest.raises(grpc.RpcError) as raised:
        client.predict_response(_request(client, inputs={"question": big}))

    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert client.encode_questions(["after oversize"]).shape == (1, serving_models.EMBEDDING_DIM)


def test_classify_unimplemented(server, client):
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = "faq"
    with grpc.insecure_channel(server.grpc_address) as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        with pytest.raises(grpc.RpcError) as raised:
            stub.Classify(request, timeout=30)

    assert raised.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert client.encode_questions(["after classify"]).shape == (1, serving_models.EMBEDDING_DIM)


REST_ERROR_CASES = [
    ("unknown_model", "/v1/models/nope:predict", {"signature_name": "encode_question", "instances": ["a"]}, 404),
    ("unknown_version", "/v1/models/faq/versions/99:predict", {"signature_name": "encode_question", "instances": ["a"]}, 404),
    ("unknown_signature", "/v1/models/faq:predict", {"signature_name": "nope", "instances": ["a"]}, 400),
    ("missing_input", "/v1/models/faq:predict", {"signature_name": "decode", "inputs": {"question": ["a"]}}, 400),
    ("extra_input", "/v1/models/faq:predict", {"signature_name": "encode_question", "inputs": {"question": ["a"], "x": ["b"]}}, 400),
    ("wrong_dtype", "/v1/models/faq:predict", {"signature_name": "encode_question", "instances": [1.5]}, 400),
    ("wrong_shape", "/v1/models/faq:predict", {"signature_name": "encode_question", "inputs": [["a", "b"]]}, 400),
    ("both_formats", "/v1/models/faq:predict", {"signature_name": "encode_question", "inputs": ["a"], "instances": ["a"]}, 400),
    ("bad_path", "/v2/whatever", {}, 404),
]


@pytest.mark.parametrize("case, path, payload, status", REST_ERROR_CASES, ids=[c[0] for c in REST_ERROR_CASES])
def test_rest_error_then_recovery(server, case, path, payload, status):
    actual_status, body = rest_call(server.rest_url + path, payload)

    assert actual_status == status, body
    assert isinstance(body["error"], str)
    ok_status, _ = rest_call(
        f"{server.rest_url}/v1/models/faq:predict",
        {"signature_name": "encode_question", "instances": ["still serving"]},
    )
    assert ok_status == 200


def test_client_tensor_proto_round_trip():
    from components.serving.tensors import make_ndarray

    array = np.arange(6, dtype=np.int64).reshape(2, 3)
    strings = np.array([["a", "b"], ["é", ""]])

    assert make_ndarray(make_tensor_proto(array)).tolist() == array.tolist()
    assert make_ndarray(make_tensor_proto(strings)).tolist() == [[b"a", b"b"], ["é".encode(), b""]]
