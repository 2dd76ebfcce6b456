"""Start a model server process: `tensorflow_model_server` if on PATH, else this package's server.

Both accept the same flags, and callers talk to either one through the same gRPC client,
so tests and the serving check run unchanged against the official binary.
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from typing import List, Optional

import grpc
from absl import logging
from tensorflow_serving.apis import get_model_status_pb2
from tensorflow_serving.apis import model_service_pb2_grpc

OFFICIAL_BINARY = "tensorflow_model_server"

# The project root, so `python -m components.serving.server` resolves from any working directory.
_PROJECT_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def find_official_binary() -> Optional[str]:
    return shutil.which(OFFICIAL_BINARY)


def free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port that was free on host a moment ago (another process may still take it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return probe.getsockname()[1]


def build_command(
    model_base_path: str,
    model_name: str = "faq",
    port: int = 8500,
    rest_api_port: int = 8501,
    host: str = "127.0.0.1",
    poll_wait_seconds: float = 1.0,
    grpc_channel_arguments: str = "",
    binary: Optional[str] = None,
    rest_api_timeout_in_ms: Optional[int] = None,
) -> List[str]:
    """Return the server command line. binary=None selects the Python server of this package."""
    flags = [
        f"--port={port}",
        f"--rest_api_port={rest_api_port}",
        f"--model_name={model_name}",
        f"--model_base_path={os.path.abspath(model_base_path)}",
        f"--file_system_poll_wait_seconds={_format_seconds(poll_wait_seconds, binary)}",
    ]
    if grpc_channel_arguments:
        flags.append(f"--grpc_channel_arguments={grpc_channel_arguments}")
    if rest_api_timeout_in_ms is not None:
        flags.append(f"--rest_api_timeout_in_ms={rest_api_timeout_in_ms}")

    if binary is None:
        return [sys.executable, "-m", "components.serving.server", f"--host={host}"] + flags
    # NOTE: tensorflow_model_server has no bind-address flag (its flag list in
    # tensorflow_serving/model_servers/main.cc), so it listens on all interfaces and
    # `host` is only used to connect. This path is untested here: the binary is not installed.
    return [binary] + flags


def _format_seconds(seconds: float, binary: Optional[str]) -> str:
    # The official binary parses this flag as an integer.
    if binary is not None:
        return str(int(round(seconds)))
    return repr(float(seconds))


class ServerProcess:
    """A model server subprocess with readiness wait and graceful stop, usable as a context manager."""

    def __init__(
        self,
        model_base_path: str,
        model_name: str = "faq",
        port: Optional[int] = None,
        rest_api_port: Optional[int] = 0,
        host: str = "127.0.0.1",
        poll_wait_seconds: float = 1.0,
        grpc_channel_arguments: str = "",
        log_path: Optional[str] = None,
        use_official_binary: Optional[bool] = None,
        rest_api_timeout_in_ms: Optional[int] = None,
    ):
        """Configure the server. port=None picks a free port, rest_api_port=None picks one, 0 disables REST.

        use_official_binary=None uses tensorflow_model_server when it is on PATH.
        """
        binary = find_official_binary()
        if use_official_binary is False:
            binary = None
        elif use_official_binary and binary is None:
            raise FileNotFoundError(f"{OFFICIAL_BINARY} is not on PATH; install it or pass use_official_binary=None.")

        self.host = host
        self.model_name = model_name
        self.port = port or free_port(host)
        self.rest_api_port = free_port(host) if rest_api_port is None else rest_api_port
        self.log_path = log_path
        self.binary = binary
        self.command = build_command(
            model_base_path, model_name, self.port, self.rest_api_port, host,
            poll_wait_seconds, grpc_channel_arguments, binary, rest_api_timeout_in_ms,
        )
        self.process: Optional[subprocess.Popen] = None
        self._log_file = None

    @property
    def grpc_address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://{self.host}:{self.rest_api_port}"

    def start(self) -> "ServerProcess":
        env = dict(os.environ)
        env.setdefault("TF_USE_LEGACY_KERAS", "1")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [_PROJECT_ROOT, env.get("PYTHONPATH")]))

        output = subprocess.DEVNULL
        if self.log_path:
            self._log_file = open(self.log_path, "ab")
            output = self._log_file
        logging.info("Starting model server: %s", " ".join(self.command))
        self.process = subprocess.Popen(
            self.command, cwd=_PROJECT_ROOT, env=env, stdout=output, stderr=subprocess.STDOUT
        )
        return self

    def wait_until_ready(self, timeout_seconds: float = 120.0, version: Optional[int] = None) -> int:
        """Wait until GetModelStatus reports an AVAILABLE version (the given one if set) and return it.

        Raises RuntimeError if the process exits and TimeoutError after timeout_seconds.
        """
        deadline = time.monotonic() + timeout_seconds
        last_error = "no response yet"
        with grpc.insecure_channel(self.grpc_address) as channel:
            stub = model_service_pb2_grpc.ModelServiceStub(channel)
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"Model server exited with code {self.process.returncode} before it was "
                        f"ready; see its log {self.log_path or '(not captured)'}."
                    )
                available = _available_versions(stub, self.model_name)
                if isinstance(available, str):
                    last_error = available
                elif available and (version is None or version in available):
                    return version if version is not None else max(available)
                time.sleep(0.1)
        raise TimeoutError(
            f"Model server at {self.grpc_address} had no AVAILABLE version of "
            f"{self.model_name} after {timeout_seconds} s (last status: {last_error})."
        )

    def stop(self, timeout_seconds: float = 30.0) -> Optional[int]:
        """Send SIGTERM, wait for exit (SIGKILL after timeout_seconds) and return the exit code."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_seconds)
            except subprocess.TimeoutExpired:
                logging.error("Model server pid %d ignored SIGTERM for %s s; killing it.", self.process.pid, timeout_seconds)
                self.process.kill()
                self.process.wait()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        logging.info("Model server pid %d exited with code %s.", self.process.pid, self.process.returncode)
        return self.process.returncode

    def __enter__(self) -> "ServerProcess":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()


def _available_versions(stub, model_name: str):
    """Return the AVAILABLE versions, or the error text while GetModelStatus fails."""
    request = get_model_status_pb2.GetModelStatusRequest()
    request.model_spec.name = model_name
    try:
        response = stub.GetModelStatus(request, timeout=2.0)
    except grpc.RpcError as error:
        return f"{error.code().name}: {error.details()}"
    return [
        status.version
        for status in response.model_version_status
        if status.state == get_model_status_pb2.ModelVersionStatus.AVAILABLE
    ]
