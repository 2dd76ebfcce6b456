"""One loaded SavedModel version and the Predict logic run against its signatures.

Request checks follow TF Serving's predict_util.cc: a missing signature is
FAILED_PRECONDITION, and missing, extra or malformed inputs and unknown output filters
are INVALID_ARGUMENT. Dtype and shape are checked against the SignatureDef before the
function runs, so a bad request never reaches TensorFlow.
"""

import os
from typing import Dict, Mapping, Optional, Sequence

import grpc
import numpy as np
import tensorflow as tf
from tensorflow.core.framework import types_pb2
from tensorflow.core.protobuf import meta_graph_pb2
from tensorflow.core.protobuf import saved_model_pb2
from tensorflow_serving.apis import get_model_metadata_pb2

from components.serving.errors import ServingError
from components.serving.errors import invalid_argument
from components.serving.errors import status_code_from_number

DEFAULT_SIGNATURE = "serving_default"


def read_signature_defs(saved_model_dir: str) -> Dict[str, meta_graph_pb2.SignatureDef]:
    """Read the SignatureDef map of the serving meta graph from saved_model.pb."""
    saved_model = saved_model_pb2.SavedModel()
    with open(os.path.join(saved_model_dir, "saved_model.pb"), "rb") as proto_file:
        saved_model.ParseFromString(proto_file.read())

    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return dict(meta_graph.signature_def)
    raise ValueError(f"SavedModel at {saved_model_dir} has no meta graph tagged 'serve'.")


class Servable:
    """A loaded version of a model: its signature functions and SignatureDefs."""

    def __init__(self, name: str, version: int, path: str):
        self.name = name
        self.version = version
        self.path = path
        self.signature_defs = read_signature_defs(path)
        self._module = tf.saved_model.load(path)
        self._functions = dict(self._module.signatures)

    def signature_def_map(self) -> get_model_metadata_pb2.SignatureDefMap:
        signature_map = get_model_metadata_pb2.SignatureDefMap()
        for key, signature_def in self.signature_defs.items():
            signature_map.signature_def[key].CopyFrom(signature_def)
        return signature_map

    def resolve_signature(self, signature_name: str) -> str:
        """Return the signature key to run, raising FAILED_PRECONDITION if it does not exist."""
        key = signature_name or DEFAULT_SIGNATURE
        if key not in self.signature_defs or key not in self._functions:
            raise ServingError(
                grpc.StatusCode.FAILED_PRECONDITION,
                f'Serving signature key "{key}" not found. '
                f"Available signatures: {sorted(self._functions)}.",
            )
        return key

    def predict(
        self,
        signature_name: str,
        inputs: Mapping[str, np.ndarray],
        output_filter: Sequence[str] = (),
    ) -> Dict[str, np.ndarray]:
        """Run one signature on numpy inputs and return the requested outputs as numpy arrays."""
        key = self.resolve_signature(signature_name)
        signature_def = self.signature_defs[key]
        check_input_names(signature_def, inputs)
        output_names = _select_outputs(signature_def, output_filter)

        feeds = {
            alias: _to_tensor(alias, array, signature_def.inputs[alias])
            for alias, array in inputs.items()
        }
        try:
            outputs = self._functions[key](**feeds)
        except tf.errors.OpError as error:
            raise ServingError(status_code_from_number(error.error_code), error.message) from error

        return {alias: outputs[alias].numpy() for alias in output_names}


def check_input_names(signature_def: meta_graph_pb2.SignatureDef, inputs: Mapping) -> None:
    """Raise INVALID_ARGUMENT unless the input names are exactly the signature's inputs."""
    request_inputs = set(inputs)
    signature_inputs = set(signature_def.inputs)
    if request_inputs == signature_inputs:
        return

    sent_extra = sorted(request_inputs - signature_inputs)
    missing = sorted(signature_inputs - request_inputs)
    if len(request_inputs) != len(signature_inputs):
        raise invalid_argument(
            f"input size does not match signature: {len(request_inputs)}!="
            f"{len(signature_inputs)} len({{{','.join(sorted(request_inputs))}}}) != "
            f"len({{{','.join(sorted(signature_inputs))}}}). Sent extra: "
            f"{{{','.join(sent_extra)}}}. Missing but required: {{{','.join(missing)}}}."
        )
    raise invalid_argument(
        f"input tensor alias not found in signature: {sent_extra[0]}. Inputs expected "
        f"to be in the set {{{','.join(sorted(signature_inputs))}}}."
    )


def _select_outputs(
    signature_def: meta_graph_pb2.SignatureDef, output_filter: Sequence[str]
) -> list:
    if not output_filter:
        return sorted(signature_def.outputs)

    seen = set()
    for alias in output_filter:
        if alias not in signature_def.outputs:
            raise invalid_argument(
                f"output tensor alias not found in signature: {alias} Outputs expected "
                f"to be in the set {{{','.join(sorted(signature_def.outputs))}}}."
            )
        if alias in seen:
            raise invalid_argument(f"duplicate output tensor alias: {alias}")
        seen.add(alias)
    return list(output_filter)


def _to_tensor(alias: str, array: np.ndarray, tensor_info: meta_graph_pb2.TensorInfo):
    expected_dtype = tf.dtypes.as_dtype(tensor_info.dtype)
    actual_dtype = _dtype_of(array)
    if actual_dtype != expected_dtype:
        raise invalid_argument(
            f"Expects input '{alias}' to be {expected_dtype.name} but "
            f"{actual_dtype.name if actual_dtype else array.dtype} is provided."
        )

    expected_shape = _shape_of(tensor_info)
    if expected_shape is not None and not _shape_compatible(array.shape, expected_shape):
        raise invalid_argument(
            f"Input '{alias}' has shape {list(array.shape)} but the signature expects "
            f"{expected_shape} (-1 is any size)."
        )
    return tf.constant(array, dtype=expected_dtype)


def check_input_proto(alias: str, proto, tensor_info: meta_graph_pb2.TensorInfo) -> None:
    """Check a request TensorProto's dtype and declared shape against the signature input.

    Reads only the proto's dtype and shape fields, so a request that declares a huge
    shape is rejected before anything of that size is allocated.
    """
    if proto.dtype != tensor_info.dtype:
        expected = types_pb2.DataType.Name(tensor_info.dtype)
        actual = types_pb2.DataType.Name(proto.dtype) if proto.dtype in types_pb2.DataType.values() else proto.dtype
        raise invalid_argument(f"Expects input '{alias}' to be {expected} but {actual} is provided.")

    expected_shape = _shape_of(tensor_info)
    if proto.tensor_shape.unknown_rank or expected_shape is None:
        return
    declared = [dim.size for dim in proto.tensor_shape.dim]
    if not _shape_compatible(declared, expected_shape):
        raise invalid_argument(
            f"Input '{alias}' has shape {declared} but the signature expects "
            f"{expected_shape} (-1 is any size)."
        )


def _dtype_of(array: np.ndarray) -> Optional[tf.dtypes.DType]:
    if array.dtype.kind in ("O", "S", "U"):
        return tf.string
    try:
        return tf.dtypes.as_dtype(array.dtype)
    except TypeError:
        return None


def _shape_of(tensor_info: meta_graph_pb2.TensorInfo) -> Optional[list]:
    if tensor_info.tensor_shape.unknown_rank:
        return None
    return [dim.size for dim in tensor_info.tensor_shape.dim]


def _shape_compatible(actual: Sequence[int], expected: Sequence[int]) -> bool:
    if len(actual) != len(expected):
        return False
    return all(want == -1 or want == got for got, want in zip(actual, expected))


def describe_inputs(inputs: Mapping[str, np.ndarray]) -> str:
    """Summarize request inputs for logs: name, dtype and shape, never the values."""
    parts = []
    for alias in sorted(inputs):
        array = inputs[alias]
        kind = "string" if array.dtype.kind in ("O", "S", "U") else str(array.dtype)
        parts.append(f"{alias}:{kind}{list(array.shape)}")
    return ", ".join(parts)

