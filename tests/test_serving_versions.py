"""Version discovery, hot swap, incomplete folders and SIGTERM of the model server process."""

import os
import shutil
import threading
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import grpc
import numpy as np

import serving_models
from components.serving.client import ServingClient
from components.serving.versions import find_incomplete_part

QUESTION = "how do i reset my password"


def embedding_of(saved_model_dir):
    outputs = serving_models.call_in_process(str(saved_model_dir), "encode_question", {"question": [QUESTION]})
    return outputs["embedding"][0]


def wait_for_versions(client, expected, timeout_seconds=60):
    deadline = time.monotonic() + timeout_seconds
    versions = None
    while time.monotonic() < deadline:
        versions = client.available_versions()
        if versions == expected:
            return versions
        time.sleep(0.2)
    return versions


def test_hot_swap_without_failed_requests(tmp_path):
    staging = tmp_path / "staging"
    base = tmp_path / "faq"
    serving_models.save_fixture_model(str(base / "1"), shift=0)
    serving_models.save_fixture_model(str(staging / "2"), shift=5)
    expected = {1: embedding_of(base / "1"), 2: embedding_of(staging / "2")}
    assert not np.allclose(expected[1], expected[2])

    server = serving_models.start_server(str(base), log_path=str(tmp_path / "server.log"))
    stop = threading.Event()
    results = [[] for _ in range(4)]
    errors = []

    def send_requests(thread_index):
        with ServingClient(server.grpc_address, "faq") as client:
            while not stop.is_set():
                try:
                    request = client.make_request("encode_question", {"question": [QUESTION]})
                    response = client.predict_response(request)
                    embedding = serving_models_embedding(response)
                    results[thread_index].append((response.model_spec.version.value, embedding))
                except grpc.RpcError as error:
                    errors.append(f"{error.code().name}: {error.details()}")

    threads = [threading.Thread(target=send_requests, args=(index,)) for index in range(4)]
    try:
        for thread in threads:
            thread.start()
        while min(len(result) for result in results) < 5:
            time.sleep(0.05)

        shutil.copytree(staging / "2", base / "2")
        with ServingClient(server.grpc_address, "faq") as client:
            swapped_versions = wait_for_versions(client, [2])
        counts_at_swap = [len(result) for result in results]
        while min(len(result) - count for result, count in zip(results, counts_at_swap)) < 5:
            time.sleep(0.05)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
        exit_code = server.stop()

    assert errors == []
    assert swapped_versions == [2]
    assert exit_code == 0
    for thread_results in results:
        versions = [version for version, _ in thread_results]
        assert versions[0] == 1
        assert versions[-1] == 2
        assert versions == sorted(versions), "a thread saw version 1 after version 2"
        for version, embedding in thread_results:
            np.testing.assert_allclose(embedding, expected[version], rtol=1e-5, atol=1e-6)
    log = (tmp_path / "server.log").read_text()
    assert "Unloaded model faq version 1" in log


def serving_models_embedding(response):
    from components.serving.tensors import make_ndarray

    return make_ndarray(response.outputs["embedding"])[0]


def _copy_partial(source, target, truncate_data=False, drop_data=False):
    shutil.copytree(source, target)
    data_file = target / "variables" / "variables.data-00000-of-00001"
    if drop_data:
        data_file.unlink()
    if truncate_data:
        content = data_file.read_bytes()
        data_file.write_bytes(content[: len(content) // 2])


def test_incomplete_part_detection(tmp_path):
    complete = tmp_path / "complete"
    serving_models.save_fixture_model(str(complete))
    no_proto = tmp_path / "no_proto"
    shutil.copytree(complete, no_proto)
    (no_proto / "saved_model.pb").unlink()
    no_data = tmp_path / "no_data"
    _copy_partial(complete, no_data, drop_data=True)

    assert find_incomplete_part(str(complete)) is None
    assert find_incomplete_part(str(no_proto)) == "saved_model.pb is missing"
    assert find_incomplete_part(str(no_data)) == "variables/variables.data-* shards are missing"


def test_half_copied_version_never_loaded(tmp_path):
    base = tmp_path / "faq"
    source = tmp_path / "source"
    serving_models.save_fixture_model(str(base / "1"))
    serving_models.save_fixture_model(str(source), shift=3)
    _copy_partial(source, base / "7", drop_data=True)
    _copy_partial(source, base / "8", truncate_data=True)

    server = serving_models.start_server(str(base), log_path=str(tmp_path / "server.log"))
    try:
        with ServingClient(server.grpc_address, "faq") as client:
            # Several poll periods (1 s each) pass, so both broken folders are scanned repeatedly.
            time.sleep(4)
            versions_while_broken = client.available_versions()
            embedding_while_broken = client.encode_questions([QUESTION])

            shutil.copyfile(
                source / "variables" / "variables.data-00000-of-00001",
                base / "8" / "variables" / "variables.data-00000-of-00001",
            )
            versions_after_repair = wait_for_versions(client, [8])
    finally:
        exit_code = server.stop()

    log = (tmp_path / "server.log").read_text()
    assert versions_while_broken == [1]
    np.testing.assert_allclose(embedding_while_broken[0], embedding_of(base / "1"), rtol=1e-5, atol=1e-6)
    assert versions_after_repair == [8]
    assert "Loading model faq version 7" not in log
    assert "Failed to load model faq version 8" in log
    assert "Loaded model faq version 8" in log
    assert exit_code == 0


def test_sigterm_drains_and_exits_zero(tmp_path):
    base = tmp_path / "faq"
    serving_models.save_fixture_model(str(base / "1"))
    server = serving_models.start_server(str(base), log_path=str(tmp_path / "server.log"))
    completed = []

    def send_requests():
        with ServingClient(server.grpc_address, "faq") as client:
            for _ in range(20):
                try:
                    client.decode(serving_models.SAMPLE_QUESTIONS, serving_models.SAMPLE_ANSWERS)
                except grpc.RpcError as error:
                    # Requests sent after SIGTERM are rejected with UNAVAILABLE or CANCELLED.
                    completed.append(error.code())
                    return
                completed.append(grpc.StatusCode.OK)

    threads = [threading.Thread(target=send_requests) for _ in range(4)]
    for thread in threads:
        thread.start()
    while len(completed) < 4:
        time.sleep(0.01)
    exit_code = server.stop(timeout_seconds=45)
    for thread in threads:
        thread.join()

    assert exit_code == 0
    assert grpc.StatusCode.OK in completed
    assert set(completed) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED}
    log = (tmp_path / "server.log").read_text()
    assert "Received SIGTERM; draining in-flight requests" in log
    assert "Server stopped." in log
