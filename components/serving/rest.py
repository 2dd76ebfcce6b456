"""TF Serving's REST API on the standard library's ThreadingHTTPServer.

Routes: GET /v1/models/<name>[/versions/<v>] (status), GET .../metadata, and
POST .../<name>[/versions/<v>]:predict with the row (`instances`) or columnar (`inputs`)
request format. Errors are `{"error": message}` with the HTTP status of the gRPC code.

Each connection has a socket timeout, and shutdown drains connections with a deadline
(RestServer.drain), so a slow or idle client cannot hold a thread or stop the server from exiting.
"""

import base64
import json
import re
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler
from http.server import ThreadingHTTPServer
from typing import Dict, List, Optional

import grpc
import numpy as np
from absl import logging
from google.protobuf import json_format
from tensorflow.core.framework import types_pb2

from components.serving.errors import ServingError
from components.serving.errors import invalid_argument
from components.serving.errors import not_found
from components.serving.servable import describe_inputs
from components.serving.versions import ModelRegistry

_ROUTE = re.compile(
    r"^/v1/models/(?P<name>[^/:]+)"
    r"(?:/versions/(?P<version>\d+))?"
    r"(?:/(?P<metadata>metadata)|:(?P<method>[a-z]+))?$"
)

_NUMPY_BY_DTYPE = {
    types_pb2.DT_FLOAT: np.float32,
    types_pb2.DT_DOUBLE: np.float64,
    types_pb2.DT_INT32: np.int32,
    types_pb2.DT_INT64: np.int64,
    types_pb2.DT_BOOL: np.bool_,
}


# Largest request body the REST API reads. A larger Content-Length gets HTTP 413.
MAX_BODY_BYTES = 32 << 20

# Default of --rest_api_timeout_in_ms (30000 ms).
DEFAULT_TIMEOUT_SECONDS = 30.0

_CONTENT_LENGTH = re.compile(r"[0-9]+")
_BODY_CHUNK_BYTES = 1 << 16


def build_rest_server(
    registry: ModelRegistry, host: str, port: int, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
) -> "RestServer":
    """Bind the REST server. The caller runs serve_forever, then shutdown, drain and server_close.

    timeout_seconds bounds each wait for data from a client and the whole read of a request body.
    """

    class Handler(RestHandler):
        pass

    Handler.registry = registry
    Handler.timeout = timeout_seconds
    return RestServer((host, port), Handler)


class RestServer(ThreadingHTTPServer):
    """ThreadingHTTPServer that tracks its connections, so shutdown can drain them with a deadline."""

    # Handler threads are daemons and server_close does not join them, so a request still
    # running after the drain deadline cannot keep the process alive.
    daemon_threads = True
    block_on_close = False

    def __init__(self, address, handler_class):
        super().__init__(address, handler_class)
        self._condition = threading.Condition()
        # Open connections, each mapped to True while a request is read or handled.
        self._connections: Dict[socket.socket, bool] = {}
        self._draining = False

    @property
    def draining(self) -> bool:
        return self._draining

    def track(self, connection: socket.socket) -> None:
        with self._condition:
            self._connections[connection] = False
            if self._draining:
                _shutdown_socket(connection, socket.SHUT_RD)

    def set_busy(self, connection: socket.socket, busy: bool) -> None:
        with self._condition:
            if connection in self._connections:
                self._connections[connection] = busy
            self._condition.notify_all()

    def untrack(self, connection: socket.socket) -> None:
        with self._condition:
            self._connections.pop(connection, None)
            self._condition.notify_all()

    def drain(self, deadline_seconds: float) -> None:
        """Close idle connections, wait up to deadline_seconds for requests in flight, then close all.

        Call after shutdown(), so no new connection is accepted. A connection that finishes
        a request during the drain gets `Connection: close` and is closed after the response.
        """
        deadline = time.monotonic() + deadline_seconds
        with self._condition:
            self._draining = True
            idle = [connection for connection, busy in self._connections.items() if not busy]
            # SHUT_RD wakes a handler blocked reading the next request and lets it see end
            # of stream. The write side stays open for a response already being written.
            for connection in idle:
                _shutdown_socket(connection, socket.SHUT_RD)
            while self._connections and time.monotonic() < deadline:
                self._condition.wait(deadline - time.monotonic())
            remaining = list(self._connections)

        for connection in remaining:
            _shutdown_socket(connection, socket.SHUT_RDWR)
        if remaining:
            logging.warning(
                "Closed %d REST connection(s) whose requests did not finish within the %.0f s drain.",
                len(remaining), deadline_seconds,
            )
        logging.info("Closed %d idle REST connection(s) for shutdown.", len(idle))

    def handle_error(self, request, client_address):
        error = sys.exc_info()[1]
        if isinstance(error, OSError):
            # A client that disconnects or times out mid-response is routine for a server.
            logging.warning("REST connection from %s failed: %r", client_address[0], error)
        else:
            logging.exception("REST connection from %s failed with an internal error.", client_address[0])


def _shutdown_socket(connection: socket.socket, how: int) -> None:
    try:
        connection.shutdown(how)
    except OSError:
        pass  # The client already closed the connection.


class RestHandler(BaseHTTPRequestHandler):
    """Request handler of the REST API. build_rest_server sets `registry` on a subclass."""

    registry: ModelRegistry = None
    protocol_version = "HTTP/1.1"
    # Socket timeout in seconds, set by build_rest_server. StreamRequestHandler.setup applies it.
    timeout = DEFAULT_TIMEOUT_SECONDS

    def setup(self):
        super().setup()
        self.server.track(self.connection)

    def finish(self):
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def parse_request(self) -> bool:
        # Called once the request line is read, so the connection is no longer idle.
        self.server.set_busy(self.connection, True)
        return super().parse_request()

    def handle_one_request(self):
        try:
            super().handle_one_request()
        finally:
            self.server.set_busy(self.connection, False)
        if self.server.draining:
            self.close_connection = True

    def do_GET(self):
        self._dispatch("GET")

    def do_POST(self):
        self._dispatch("POST")

    def log_message(self, format, *args):  # noqa: A002 - signature fixed by BaseHTTPRequestHandler.
        logging.vlog(1, "REST %s %s", self.address_string(), format % args)

    def _dispatch(self, http_method: str) -> None:
        body = self._read_body()
        if body is None:
            return
        match = _ROUTE.match(self.path.split("?", 1)[0])
        try:
            if match is None:
                raise _malformed_path(self.path)
            name = match.group("name")
            version = int(match.group("version")) if match.group("version") else None

            if http_method == "GET" and match.group("method") is None:
                if match.group("metadata"):
                    payload = self._metadata(name, version)
                else:
                    payload = self._status(name, version)
            elif http_method == "POST" and match.group("method") == "predict":
                payload = self._predict(name, version, body)
            elif http_method == "POST" and match.group("method") in ("classify", "regress"):
                raise ServingError(
                    grpc.StatusCode.UNIMPLEMENTED,
                    f"{match.group('method')} is not implemented by this server; the model has "
                    "predict signatures only, so POST to :predict.",
                )
            else:
                raise _malformed_path(self.path)
        except ServingError as error:
            logging.warning(
                "REST %s %s failed with %s: %s", http_method, self.path, error.code.name, error.message
            )
            self._send_json(error.http_status, {"error": error.message})
            return
        except Exception:  # noqa: BLE001 - logged and returned to the caller as HTTP 500.
            logging.exception("REST %s %s failed with an internal error.", http_method, self.path)
            self._send_json(500, {"error": "Internal server error; see the server log."})
            return
        self._send_json(200, payload)

    def _read_body(self) -> Optional[bytes]:
        """Read the body that Content-Length announces, or send an error, close and return None.

        After an error the end of the body is unknown, so the connection cannot be reused.
        """
        if "Transfer-Encoding" in self.headers:
            return self._reject_body(
                501, "Transfer-Encoding is not supported; send the body with a Content-Length header."
            )
        values = [value.strip() for value in self.headers.get_all("Content-Length") or []]
        if not values:
            if self.command == "POST":
                return self._reject_body(411, "POST requests need a Content-Length header.")
            return b""
        if len(set(values)) != 1 or not _CONTENT_LENGTH.fullmatch(values[0]):
            return self._reject_body(
                400, f"Invalid Content-Length {values}; expected one non-negative integer number of bytes."
            )
        length = int(values[0])
        if length > MAX_BODY_BYTES:
            return self._reject_body(
                413, f"Request body of {length} bytes is larger than the maximum of {MAX_BODY_BYTES} bytes."
            )

        chunks = []
        received = 0
        deadline = time.monotonic() + self.timeout
        try:
            while received < length:
                time_left = deadline - time.monotonic()
                if time_left <= 0:
                    raise TimeoutError
                self.connection.settimeout(time_left)
                chunk = self.rfile.read1(min(length - received, _BODY_CHUNK_BYTES))
                if not chunk:
                    return self._reject_body(
                        400, f"Request body ended after {received} of the {length} bytes in Content-Length."
                    )
                chunks.append(chunk)
                received += len(chunk)
        except TimeoutError:
            return self._reject_body(
                408,
                f"Timed out after {self.timeout:g} s reading the request body: received {received} "
                f"of the {length} bytes in Content-Length.",
            )
        finally:
            self.connection.settimeout(self.timeout)
        return b"".join(chunks)

    def _reject_body(self, status: int, message: str) -> None:
        logging.warning("REST %s %s from %s rejected with HTTP %d: %s",
                        self.command, self.path, self.client_address[0], status, message)
        self.close_connection = True
        try:
            self._send_json(status, {"error": message})
        except OSError as error:
            logging.warning("Could not send HTTP %d to %s: %r", status, self.client_address[0], error)
        return None

    def _send_json(self, status: int, payload) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection or self.server.draining:
            self.close_connection = True
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    def _status(self, name: str, version) -> Dict:
        versions = self.registry.loaded_versions(name)
        if version is not None:
            self.registry.get(name, version)
            versions = [version]
        return {
            "model_version_status": [
                {
                    "version": str(loaded),
                    "state": "AVAILABLE",
                    "status": {"error_code": "OK", "error_message": ""},
                }
                for loaded in versions
            ]
        }

    def _metadata(self, name: str, version) -> Dict:
        servable = self.registry.get(name, version)
        signature_map = json_format.MessageToDict(
            servable.signature_def_map(),
            preserving_proto_field_name=True,
            including_default_value_fields=True,
        )
        return {
            "model_spec": {"name": name, "signature_name": "", "version": str(servable.version)},
            "metadata": {"signature_def": signature_map},
        }

    def _predict(self, name: str, version, body: bytes) -> Dict:
        servable = self.registry.get(name, version)
        request = _parse_json_object(body)
        signature = servable.resolve_signature(request.get("signature_name", ""))
        signature_def = servable.signature_defs[signature]

        row_format = "instances" in request
        if row_format == ("inputs" in request):
            raise invalid_argument(
                "Request body must contain exactly one of 'instances' (row format) or "
                "'inputs' (columnar format)."
            )
        if row_format:
            columns = _columns_from_instances(request["instances"], signature_def)
        else:
            columns = _columns_from_inputs(request["inputs"], signature_def)

        inputs = {
            alias: _to_array(alias, value, signature_def.inputs[alias].dtype)
            for alias, value in columns.items()
            if alias in signature_def.inputs
        }
        # Unknown names go through as empty placeholders, so the servable reports them as extra inputs.
        for alias in columns:
            inputs.setdefault(alias, np.empty(0, dtype=object))
        logging.vlog(1, "REST predict %s signature=%s inputs=[%s]", name, signature, describe_inputs(inputs))
        outputs = servable.predict(signature, inputs)

        if row_format:
            return {"predictions": _to_rows(outputs)}
        return {"outputs": _to_columns(outputs)}


def _malformed_path(path: str) -> ServingError:
    return not_found(
        f"Malformed request: {path}. Use GET /v1/models/<name>[/versions/<version>][/metadata] "
        "or POST /v1/models/<name>[/versions/<version>]:predict."
    )


def _parse_json_object(body: bytes) -> Dict:
    try:
        request = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise invalid_argument(f"Request body is not valid UTF-8 JSON: {error}") from error
    if not isinstance(request, dict):
        raise invalid_argument(f"Request body must be a JSON object, got {type(request).__name__}.")
    return request


def _single_input_name(signature_def) -> str:
    if len(signature_def.inputs) != 1:
        raise invalid_argument(
            f"The signature has inputs {sorted(signature_def.inputs)}, so each value must be "
            "an object keyed by input name."
        )
    return next(iter(signature_def.inputs))


def _columns_from_instances(instances, signature_def) -> Dict[str, List]:
    """Turn row-format instances into one list per input name."""
    if not isinstance(instances, list) or not instances:
        raise invalid_argument("'instances' must be a non-empty JSON list.")

    # TF Serving reads an object whose only key is "b64" as a binary value, not as a named input.
    if not all(isinstance(row, dict) and not _is_b64(row) for row in instances):
        return {_single_input_name(signature_def): instances}

    names = set(instances[0])
    for index, row in enumerate(instances):
        if set(row) != names:
            raise invalid_argument(
                f"instances[{index}] has keys {sorted(row)} but instances[0] has {sorted(names)}; "
                "every instance must name the same inputs."
            )
    return {name: [row[name] for row in instances] for name in names}


def _columns_from_inputs(inputs, signature_def) -> Dict:
    if isinstance(inputs, dict) and not _is_b64(inputs):
        return dict(inputs)
    return {_single_input_name(signature_def): inputs}


def _is_b64(value) -> bool:
    return isinstance(value, dict) and set(value) == {"b64"}


def _nested_shape(alias: str, value) -> List[int]:
    """Return the shape of a nested JSON list, raising INVALID_ARGUMENT if it is ragged."""
    if not isinstance(value, list):
        return []
    if not value:
        return [0]
    shapes = [_nested_shape(alias, item) for item in value]
    if any(shape != shapes[0] for shape in shapes):
        raise invalid_argument(f"Input '{alias}' is a ragged list; every row must have the same shape.")
    return [len(value)] + shapes[0]


def _flatten(value) -> List:
    if isinstance(value, list):
        return [leaf for item in value for leaf in _flatten(item)]
    return [value]


def _to_array(alias: str, value, dtype: int) -> np.ndarray:
    """Convert a JSON value to a numpy array of the signature input's dtype."""
    shape = _nested_shape(alias, value)
    leaves = _flatten(value)

    if dtype == types_pb2.DT_STRING:
        array = np.empty(len(leaves), dtype=object)
        array[:] = [_to_bytes(alias, leaf) for leaf in leaves]
        return array.reshape(shape)

    numpy_dtype = _NUMPY_BY_DTYPE.get(dtype)
    if numpy_dtype is None:
        raise invalid_argument(
            f"Input '{alias}' has dtype {types_pb2.DataType.Name(dtype)}, which the REST API "
            "of this server does not convert; use gRPC."
        )
    bad = [leaf for leaf in leaves if isinstance(leaf, (str, dict)) or leaf is None]
    if bad:
        raise invalid_argument(
            f"Input '{alias}' expects {types_pb2.DataType.Name(dtype)} numbers but got {bad[0]!r}."
        )
    return np.asarray(leaves, dtype=numpy_dtype).reshape(shape)


def _to_bytes(alias: str, leaf) -> bytes:
    if isinstance(leaf, str):
        try:
            return leaf.encode("utf-8")
        except UnicodeEncodeError as error:
            # JSON escapes such as "\ud800" decode to lone surrogates, which UTF-8 cannot encode.
            raise invalid_argument(
                f"Input '{alias}' has a string that is not valid Unicode ({error}); send bytes "
                'that are not UTF-8 as {"b64": "<base64>"}.'
            ) from error
    if _is_b64(leaf):
        try:
            return base64.b64decode(leaf["b64"], validate=True)
        except (ValueError, TypeError) as error:
            raise invalid_argument(f"Input '{alias}' has invalid base64: {error}") from error
    raise invalid_argument(
        f"Input '{alias}' expects DT_STRING values (JSON strings or {{\"b64\": ...}}) but got {leaf!r}."
    )


def _to_json_value(array: np.ndarray):
    """Convert an output array to nested JSON lists, with bytes as UTF-8 text or {"b64": ...}."""
    if array.dtype.kind in ("O", "S"):
        return _map_nested(array.tolist(), _bytes_to_json)
    return array.tolist()


def _map_nested(value, function):
    if isinstance(value, list):
        return [_map_nested(item, function) for item in value]
    return function(value)


def _bytes_to_json(value):
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return {"b64": base64.b64encode(value).decode("ascii")}


def _to_rows(outputs: Dict[str, np.ndarray]) -> List:
    """Row format: one value per instance, or one object per instance for several outputs."""
    batch_sizes = {alias: array.shape[0] if array.ndim else None for alias, array in outputs.items()}
    if len(set(batch_sizes.values())) != 1 or None in batch_sizes.values():
        raise invalid_argument(
            f"Outputs have different batch sizes {batch_sizes}, so they cannot be returned in the "
            "row format; send 'inputs' (columnar format) instead."
        )
    columns = {alias: _to_json_value(array) for alias, array in outputs.items()}
    if len(columns) == 1:
        return next(iter(columns.values()))
    batch_size = next(iter(batch_sizes.values()))
    return [{alias: column[index] for alias, column in columns.items()} for index in range(batch_size)]


def _to_columns(outputs: Dict[str, np.ndarray]):
    columns = {alias: _to_json_value(array) for alias, array in outputs.items()}
    if len(columns) == 1:
        return next(iter(columns.values()))
    return columns
