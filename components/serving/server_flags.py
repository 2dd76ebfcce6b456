"""Command-line flags of the model server, named as in tensorflow_model_server.

Shared by server.py and the `faq-pipeline serve` command.
"""

import argparse
from typing import List, Tuple


def add_server_flags(parser: argparse.ArgumentParser) -> None:
    """Add the tensorflow_model_server flags that this project uses, plus --host."""
    parser.add_argument("--port", type=int, default=8500, help="gRPC port (default 8500).")
    parser.add_argument(
        "--rest_api_port", type=int, default=8501, help="REST port (default 8501); 0 disables REST."
    )
    parser.add_argument(
        "--rest_api_timeout_in_ms",
        type=_positive_int,
        default=30000,
        help="REST timeout in milliseconds (default 30000) for each wait for client data and "
        "for reading a whole request body.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="Address to bind (default 127.0.0.1).")
    parser.add_argument("--model_name", default="faq", help="Model name in requests (default faq).")
    parser.add_argument(
        "--model_base_path",
        default="serving_model/faq",
        help="Folder whose integer sub-folders are the model versions (default serving_model/faq).",
    )
    parser.add_argument(
        "--file_system_poll_wait_seconds",
        type=float,
        default=1.0,
        help="Seconds between scans for new versions (default 1); 0 scans once at start-up.",
    )
    parser.add_argument(
        "--grpc_channel_arguments",
        default="",
        help="Comma-separated gRPC server options, for example "
        "grpc.max_receive_message_length=8388608 (bytes; gRPC's default is 4 MiB).",
    )
    parser.add_argument(
        "--grpc_max_threads", type=int, default=16, help="gRPC worker threads (default 16)."
    )


def _positive_int(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a positive integer")
    return value


def parse_channel_arguments(text: str) -> List[Tuple[str, object]]:
    """Parse TF Serving's --grpc_channel_arguments 'key=value,key=value' into grpc options."""
    options = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, separator, value = item.partition("=")
        if not separator or not key:
            raise ValueError(
                f"Invalid --grpc_channel_arguments entry {item!r}; expected key=value, "
                "for example grpc.max_receive_message_length=8388608."
            )
        options.append((key, int(value) if value.lstrip("-").isdigit() else value))
    return options
