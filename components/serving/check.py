"""The pipeline's serving check: serve a candidate model and call every signature over gRPC.

TFX's InfraValidator cannot build requests for these string signatures, so ServingCheck
replaces it. It writes an InfraBlessing exactly as InfraValidator does (the INFRA_BLESSED
or INFRA_NOT_BLESSED file and the `blessed` custom property 1 or 0, see
tfx/components/infra_validator/executor.py), which the standard Pusher reads.
"""

import dataclasses
import os
import shutil
import tempfile
from typing import Dict, List, Optional

import grpc
import numpy as np
from absl import logging
from tfx import v1 as tfx
from tfx.types import standard_artifacts
from tfx.utils import io_utils
from tfx.utils import path_utils

from components.serving.client import ServingClient
from components.serving.launcher import ServerProcess

EXPECTED_SIGNATURES = {
    "encode_question": ({"question"}, {"embedding"}),
    "encode_answer": ({"answer"}, {"embedding"}),
    "decode": (
        {"question", "answer"},
        {"probabilities", "predicted_ids", "predicted_tokens", "target_ids", "log_probability", "target_length"},
    ),
}

# English, Chinese and the empty string: the tokenizer paths most likely to break.
SAMPLE_QUESTIONS = ["How do I reset my password?", "如何重置密码？", ""]
SAMPLE_ANSWERS = ["Open Settings and choose Reset password.", "打开设置，选择重置密码。", ""]

BLESSED_KEY = "blessed"
BLESSED_FILENAME = "INFRA_BLESSED"
NOT_BLESSED_FILENAME = "INFRA_NOT_BLESSED"

# Tolerances for float32 outputs: unit L2 norm of embeddings and probabilities summing to 1.
NORM_TOLERANCE = 1e-3
PROBABILITY_SUM_TOLERANCE = 1e-3

# decode returns float32 probabilities [N, T, V], which exceed gRPC's default 4 MiB
# receive limit for a large vocabulary and long answers.
MAX_RESPONSE_BYTES = 256 * 1024 * 1024


@dataclasses.dataclass
class CheckResult:
    """Outcome of check_served_model: blessed, and every failed check when not."""

    blessed: bool
    failures: List[str]
    embedding_dim: Optional[int] = None

    def summary(self) -> str:
        if self.blessed:
            return f"all serving checks passed (embedding dim {self.embedding_dim})"
        return "; ".join(self.failures)


def check_served_model(
    saved_model_dir: str,
    model_name: str = "faq",
    ready_timeout_seconds: float = 120.0,
    log_path: Optional[str] = None,
) -> CheckResult:
    """Serve saved_model_dir as `<tmp>/<model_name>/1`, call every signature and check the outputs.

    The server is the one the launcher picks, on a free 127.0.0.1 port, and is always stopped.
    """
    staging_dir = tempfile.mkdtemp(prefix="serving-check-")
    failures: List[str] = []
    embedding_dim = None
    try:
        base_path = os.path.join(staging_dir, model_name)
        shutil.copytree(saved_model_dir, os.path.join(base_path, "1"))
        server = ServerProcess(
            base_path,
            model_name=model_name,
            rest_api_port=0,
            log_path=log_path or os.path.join(staging_dir, "server.log"),
        )
        with server:
            try:
                server.wait_until_ready(ready_timeout_seconds, version=1)
            except (RuntimeError, TimeoutError) as error:
                failures.append(f"model server did not load the model: {error}")
            else:
                embedding_dim = _check_signatures(server.grpc_address, model_name, failures)
        if failures:
            _log_server_tail(server.log_path)
    finally:
        shutil.rmtree(staging_dir, ignore_errors=True)

    return CheckResult(blessed=not failures, failures=failures, embedding_dim=embedding_dim)


def _check_signatures(address: str, model_name: str, failures: List[str]) -> Optional[int]:
    with ServingClient(address, model_name, max_message_bytes=MAX_RESPONSE_BYTES) as client:
        try:
            signature_defs = client.signature_defs()
        except grpc.RpcError as error:
            failures.append(f"GetModelMetadata failed: {error.code().name}: {error.details()}")
            return None

        exported = {key for key in signature_defs if not key.startswith("__")}
        if exported != set(EXPECTED_SIGNATURES):
            failures.append(f"signatures are {sorted(exported)}, expected {sorted(EXPECTED_SIGNATURES)}")

        outputs = {}
        for name, (input_names, _) in EXPECTED_SIGNATURES.items():
            if name not in exported:
                continue
            inputs = {"question": SAMPLE_QUESTIONS, "answer": SAMPLE_ANSWERS}
            try:
                outputs[name] = client.predict(name, {key: inputs[key] for key in input_names})
            except grpc.RpcError as error:
                failures.append(f"Predict {name} failed: {error.code().name}: {error.details()}")

    for name, output in outputs.items():
        expected_outputs = EXPECTED_SIGNATURES[name][1]
        if set(output) != expected_outputs:
            failures.append(f"{name} returned outputs {sorted(output)}, expected {sorted(expected_outputs)}")
            outputs[name] = None

    dims = [_check_embedding(name, outputs.get(name), failures) for name in ("encode_question", "encode_answer")]
    if None not in dims and dims[0] != dims[1]:
        failures.append(f"encode_question has dim {dims[0]} but encode_answer has dim {dims[1]}")
    _check_decode(outputs.get("decode"), failures)
    return dims[0] if dims[0] == dims[1] else None


def _check_embedding(name: str, output: Optional[Dict[str, np.ndarray]], failures: List[str]) -> Optional[int]:
    if output is None:
        return None
    embedding = output["embedding"]
    batch = len(SAMPLE_QUESTIONS)
    if embedding.dtype != np.float32 or embedding.ndim != 2 or embedding.shape[0] != batch:
        failures.append(f"{name} embedding is {embedding.dtype}{list(embedding.shape)}, expected float32[{batch}, D]")
        return None
    if not np.all(np.isfinite(embedding)):
        failures.append(f"{name} embedding has non-finite values")
        return None

    # Only rows 0 and 1 are checked, because the empty string in row 2 may embed to a zero vector.
    norms = np.linalg.norm(embedding[:2], axis=1)
    if np.any(np.abs(norms - 1.0) > NORM_TOLERANCE):
        failures.append(f"{name} embeddings of non-empty text have L2 norms {norms.tolist()}, expected 1")
    return int(embedding.shape[1])


def _check_decode(output: Optional[Dict[str, np.ndarray]], failures: List[str]) -> None:
    if output is None:
        return
    batch = len(SAMPLE_QUESTIONS)
    probabilities = output["probabilities"]
    if probabilities.dtype != np.float32 or probabilities.ndim != 3 or probabilities.shape[0] != batch:
        failures.append(f"decode probabilities are {probabilities.dtype}{list(probabilities.shape)}, expected float32[{batch}, T, V]")
        return

    steps = probabilities.shape[1]
    expected_shapes = {
        "predicted_ids": (batch, steps),
        "predicted_tokens": (batch, steps),
        "target_ids": (batch, steps),
        "log_probability": (batch,),
        "target_length": (batch,),
    }
    wrong_shapes = [
        f"decode {key} has shape {list(output[key].shape)}, expected {list(shape)}"
        for key, shape in expected_shapes.items()
        if output[key].shape != shape
    ]
    if wrong_shapes:
        failures.extend(wrong_shapes)
        return

    for key in ("probabilities", "log_probability"):
        if not np.all(np.isfinite(output[key])):
            failures.append(f"decode {key} has non-finite values")
    sums = probabilities.sum(axis=-1)
    if np.any(np.abs(sums - 1.0) > PROBABILITY_SUM_TOLERANCE):
        failures.append(f"decode probabilities do not sum to 1 over the vocabulary (range {sums.min()}..{sums.max()})")
    lengths = output["target_length"]
    if np.any(lengths < 1) or np.any(lengths > steps):
        failures.append(f"decode target_length {lengths.tolist()} is outside [1, {steps}]")


def _log_server_tail(log_path: Optional[str], lines: int = 30) -> None:
    if log_path and os.path.isfile(log_path):
        with open(log_path, encoding="utf-8", errors="replace") as log_file:
            tail = log_file.readlines()[-lines:]
        logging.error("Last %d lines of the model server log %s:\n%s", len(tail), log_path, "".join(tail))


def mark_blessing(blessing, result: CheckResult) -> None:
    """Mark an InfraBlessing artifact the way TFX's InfraValidator does."""
    filename = BLESSED_FILENAME if result.blessed else NOT_BLESSED_FILENAME
    io_utils.write_string_file(os.path.join(blessing.uri, filename), "")
    blessing.set_int_custom_property(BLESSED_KEY, 1 if result.blessed else 0)


@tfx.dsl.components.component
def ServingCheck(
    model: tfx.dsl.components.InputArtifact[standard_artifacts.Model],
    blessing: tfx.dsl.components.OutputArtifact[standard_artifacts.InfraBlessing],
) -> None:
    """Bless the model if a model server loads it and every signature returns valid outputs."""
    saved_model_dir = path_utils.serving_model_path(model.uri, path_utils.is_old_model_artifact(model))
    logging.info("Serving check of %s.", saved_model_dir)

    result = check_served_model(saved_model_dir)
    mark_blessing(blessing, result)
    if result.blessed:
        logging.info("Serving check blessed %s: %s.", saved_model_dir, result.summary())
    else:
        logging.warning("Serving check did not bless %s: %s.", saved_model_dir, result.summary())
