"""A TF Serving-compatible model server: gRPC PredictionService and ModelService, plus REST.

Run as `python -m components.serving.server --model_base_path=... --port=...`; the flags
follow `tensorflow_model_server`. This server is the fallback when that binary is not
on PATH (see launcher.py). It serves one model with the latest-version policy.
"""

import argparse
import os
import signal
import sys
import threading
import time
from concurrent import futures
from typing import Optional, Sequence

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import grpc
import numpy as np
import tensorflow as tf
from absl import flags
from absl import logging
from google.protobuf import any_pb2
from tensorflow_serving.apis import get_model_metadata_pb2
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc
from tensorflow_serving.apis import predict_pb2
from tensorflow_serving.apis import prediction_service_pb2_grpc

from components.serving import rest
from components.serving import tensors
from components.serving.errors import ServingError
from components.serving.errors import invalid_argument
from components.serving.servable import check_input_names
from components.serving.servable import check_input_proto
from components.serving.servable import describe_inputs
from components.serving.versions import ModelRegistry
from components.serving.versions import VersionManager
from components.serving.server_flags import add_server_flags
from components.serving.server_flags import parse_channel_arguments

SIGNATURE_DEF_FIELD = "signature_def"

# Seconds that SIGTERM waits for in-flight gRPC and REST requests before cancelling them.
# gRPC and REST drain at the same time, so the whole drain takes at most this long.
SHUTDOWN_GRACE_SECONDS = 30.0

_SIGNAL_POLL_SECONDS = 0.2


def requested_version(model_spec) -> Optional[int]:
    """Return model_spec.version, or None when unset. Raises INVALID_ARGUMENT for a version label."""
    if model_spec.version_label:
        raise invalid_argument(
            f"Unrecognized servable version label: {model_spec.version_label}. "
            "This server supports numeric versions only."
        )
    if model_spec.HasField("version"):
        return model_spec.version.value
    return None


def _abort(context, method: str, model_spec, error: ServingError, details: str = "") -> None:
    logging.warning(
        "%s failed with %s for model=%r version=%s signature=%r %s: %s",
        method, error.code.name, model_spec.name,
        model_spec.version.value if model_spec.HasField("version") else "latest",
        model_spec.signature_name, details, error.message,
    )
    context.abort(error.code, error.message)


def _abort_internal(context, method: str, model_spec) -> None:
    logging.exception("%s failed with an internal error for model=%r.", method, model_spec.name)
    context.abort(grpc.StatusCode.INTERNAL, f"{method} failed with an internal server error; see the server log.")


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    """PredictionService with Predict and GetModelMetadata. The other methods return UNIMPLEMENTED."""

    def __init__(self, registry: ModelRegistry):
        self._registry = registry

    def Predict(self, request, context):
        spec = request.model_spec
        inputs = {}
        try:
            servable = self._registry.get(spec.name, requested_version(spec))
            signature = servable.resolve_signature(spec.signature_name)
            signature_def = servable.signature_defs[signature]
            check_input_names(signature_def, request.inputs)
            for alias, proto in request.inputs.items():
                inputs[alias] = _parse_tensor(alias, proto, signature_def.inputs[alias])
            outputs = servable.predict(signature, inputs, list(request.output_filter))
        except ServingError as error:
            _abort(context, "Predict", spec, error, f"inputs=[{describe_inputs(inputs)}]")
        except Exception:  # noqa: BLE001 - logged and returned to the caller as INTERNAL.
            _abort_internal(context, "Predict", spec)

        response = predict_pb2.PredictResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = servable.version
        response.model_spec.signature_name = signature
        for alias, array in outputs.items():
            response.outputs[alias].CopyFrom(tf.make_tensor_proto(array))
        return response

    def GetModelMetadata(self, request, context):
        spec = request.model_spec
        try:
            servable = self._registry.get(spec.name, requested_version(spec))
            _check_metadata_fields(request.metadata_field)
        except ServingError as error:
            _abort(context, "GetModelMetadata", spec, error)

        packed = any_pb2.Any()
        packed.Pack(servable.signature_def_map())
        response = get_model_metadata_pb2.GetModelMetadataResponse()
        response.model_spec.name = spec.name
        response.model_spec.version.value = servable.version
        response.metadata[SIGNATURE_DEF_FIELD].CopyFrom(packed)
        return response

    def Classify(self, request, context):
        self._unimplemented(context, "Classify", request.model_spec)

    def Regress(self, request, context):
        self._unimplemented(context, "Regress", request.model_spec)

    def MultiInference(self, request, context):
        spec = request.tasks[0].model_spec if request.tasks else predict_pb2.PredictRequest().model_spec
        self._unimplemented(context, "MultiInference", spec)

    def _unimplemented(self, context, method: str, spec) -> None:
        error = ServingError(
            grpc.StatusCode.UNIMPLEMENTED,
            f"{method} is not implemented by this server; the model has predict signatures only, "
            "so call Predict.",
        )
        _abort(context, method, spec, error)


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    """ModelService.GetModelStatus: AVAILABLE for each loaded version."""

    def __init__(self, registry: ModelRegistry):
        self._registry = registry

    def GetModelStatus(self, request, context):
        spec = request.model_spec
        try:
            version = requested_version(spec)
            versions = self._registry.loaded_versions(spec.name)
            if version is not None:
                self._registry.get(spec.name, version)
                versions = [version]
        except ServingError as error:
            _abort(context, "GetModelStatus", spec, error)

        response = get_model_status_pb2.GetModelStatusResponse()
        for loaded in versions:
            status = response.model_version_status.add()
            status.version = loaded
            status.state = get_model_status_pb2.ModelVersionStatus.AVAILABLE
        return response

    def HandleReloadConfigRequest(self, request, context):
        error = ServingError(
            grpc.StatusCode.UNIMPLEMENTED,
            "HandleReloadConfigRequest is not implemented; this server serves the single "
            "model given by --model_name and --model_base_path.",
        )
        _abort(context, "HandleReloadConfigRequest", predict_pb2.PredictRequest().model_spec, error)


def _parse_tensor(alias: str, proto, tensor_info) -> np.ndarray:
    """Convert a request TensorProto to numpy after checking it without allocating its shape.

    String values stay the bytes that were sent, so invalid UTF-8 reaches the model unchanged.
    """
    check_input_proto(alias, proto, tensor_info)
    try:
        return tensors.make_ndarray(proto, name=f"Input '{alias}'")
    except ValueError as error:
        raise invalid_argument(f"tensor parsing error: {error}") from error


def _check_metadata_fields(fields: Sequence[str]) -> None:
    if not fields:
        raise invalid_argument("GetModelMetadataRequest must specify at least one metadata_field")
    for field in fields:
        if field != SIGNATURE_DEF_FIELD:
            raise invalid_argument(
                f"Metadata field {field} is not supported; the supported field is {SIGNATURE_DEF_FIELD}."
            )


def build_grpc_server(registry: ModelRegistry, host: str, port: int, max_threads: int, options):
    """Create and start the gRPC server, and return (server, bound port)."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_threads), options=options)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(registry), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(registry), server)

    bound_port = server.add_insecure_port(f"{host}:{port}")
    if bound_port == 0:
        raise RuntimeError(f"Failed to bind the gRPC port {host}:{port}; choose a free --port.")
    server.start()
    return server, bound_port


def build_arg_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m components.serving.server",
        description="Serve a SavedModel over TF Serving's gRPC and REST APIs.",
    )
    add_server_flags(parser)
    return parser


def serve(args: argparse.Namespace) -> int:
    """Run the server until SIGTERM or SIGINT, then drain in-flight requests and return 0."""
    options = parse_channel_arguments(args.grpc_channel_arguments)
    manager = VersionManager(args.model_name, args.model_base_path, args.file_system_poll_wait_seconds)
    registry = ModelRegistry([manager])

    received_signals = []
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda number, frame: received_signals.append(number))

    registry.start()
    grpc_server, grpc_port = build_grpc_server(registry, args.host, args.port, args.grpc_max_threads, options)
    logging.info("Started gRPC server at %s:%d for model %s.", args.host, grpc_port, args.model_name)

    rest_server = None
    if args.rest_api_port:
        rest_server = rest.build_rest_server(
            registry, args.host, args.rest_api_port, args.rest_api_timeout_in_ms / 1000.0
        )
        threading.Thread(target=rest_server.serve_forever, name="rest", daemon=True).start()
        logging.info("Started REST server at %s:%d.", args.host, rest_server.server_address[1])

    # Poll instead of blocking on an Event: the kernel may deliver the signal to a gRPC or
    # TensorFlow thread, and CPython runs handlers only when the main thread runs bytecode.
    while not received_signals:
        time.sleep(_SIGNAL_POLL_SECONDS)
    logging.info(
        "Received %s; draining in-flight requests (up to %.0f s).",
        signal.Signals(received_signals[0]).name, SHUTDOWN_GRACE_SECONDS,
    )
    grpc_stopped = grpc_server.stop(SHUTDOWN_GRACE_SECONDS)
    if rest_server is not None:
        rest_server.shutdown()
        rest_server.drain(SHUTDOWN_GRACE_SECONDS)
        rest_server.server_close()
    grpc_stopped.wait()
    registry.stop()
    logging.info("Server stopped.")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_arg_parser().parse_args(argv)
    return serve(args)


def run_with_absl_logging(entry, argv: Sequence[str]) -> None:
    """Run entry(argv) with absl's log format on stderr at INFO, then exit with its code."""
    # Mark absl flags parsed: argparse owns the command line, and absl would otherwise
    # warn that logging started before flag parsing.
    flags.FLAGS.mark_as_parsed()
    logging.use_absl_handler()
    logging.set_verbosity(logging.INFO)
    sys.exit(entry(argv))


if __name__ == "__main__":
    run_with_absl_logging(main, sys.argv[1:])
