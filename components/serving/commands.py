"""The `faq-pipeline serve` and `faq-pipeline query` commands.

pipeline/cli.py calls register_commands(subparsers); `python -m components.serving.commands`
runs the same commands without the pipeline CLI.
"""

import argparse
import os
import sys
from typing import Optional, Sequence

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import grpc
import numpy as np
from absl import logging

from components.serving import answer_bank
from components.serving import launcher
from components.serving.client import ServingClient
from components.serving.server_flags import add_server_flags


def register_commands(subparsers) -> None:
    """Add the `serve` and `query` subcommands, each with func(args) -> exit code as default."""
    serve_parser = subparsers.add_parser(
        "serve",
        help="Serve pushed models over TF Serving's gRPC and REST APIs.",
        description="Run tensorflow_model_server if it is on PATH, else the built-in server, "
        "with the same flags.",
    )
    add_server_flags(serve_parser)
    serve_parser.set_defaults(func=run_serve)

    query_parser = subparsers.add_parser(
        "query",
        help="Rank answer-bank answers for a question with the served model.",
    )
    add_query_flags(query_parser)
    query_parser.set_defaults(func=run_query)


def add_query_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("question", help="The question text.")
    parser.add_argument("--server", default="127.0.0.1:8500", help="gRPC address host:port.")
    parser.add_argument("--model_name", default="faq", help="Model name (default faq).")
    parser.add_argument("--top_k", type=int, default=5, help="Number of answers to print (default 5).")
    parser.add_argument(
        "--model_base_path",
        default="serving_model/faq",
        help="Pushed model folder; the default answer bank is "
        "<model_base_path>/<served version>/assets.extra/answer_bank.jsonl.",
    )
    parser.add_argument("--answer_bank", default=None, help="Answer bank JSONL file to rank instead.")
    parser.add_argument(
        "--cache_dir",
        default=answer_bank.DEFAULT_CACHE_DIR,
        help="Directory of cached answer embeddings (default ~/.cache/faq-pipeline).",
    )
    parser.add_argument(
        "--decode",
        default=None,
        metavar="ANSWER",
        help="Also print the decoder's per-token predictions and the probability of this answer.",
    )


def run_serve(args: argparse.Namespace) -> int:
    """Exec tensorflow_model_server when it is on PATH, else run the built-in server in this process."""
    binary = launcher.find_official_binary()
    if binary is not None:
        command = launcher.build_command(
            args.model_base_path, args.model_name, args.port, args.rest_api_port, args.host,
            args.file_system_poll_wait_seconds, args.grpc_channel_arguments, binary,
            args.rest_api_timeout_in_ms,
        )
        logging.info("Executing %s", " ".join(command))
        os.execv(binary, command)

    from components.serving import server

    return server.serve(args)


def run_query(args: argparse.Namespace) -> int:
    """Print the top answers for args.question, and the decoder view of --decode if given."""
    if args.top_k < 1:
        print(f"--top_k must be at least 1, got {args.top_k}.", file=sys.stderr)
        return 2

    try:
        with ServingClient(args.server, args.model_name) as client:
            _print_ranking(client, args)
    except grpc.RpcError as error:
        print(f"Query to {args.server} failed: {error.code().name}: {error.details()}", file=sys.stderr)
        return 1
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"Query failed: {error}", file=sys.stderr)
        return 1
    return 0


def _print_ranking(client: ServingClient, args: argparse.Namespace) -> None:
    version = client.served_version()
    bank_path = args.answer_bank or answer_bank.default_answer_bank_path(args.model_base_path, version)
    entries = answer_bank.load_answer_bank(bank_path)
    checksum = answer_bank.file_checksum(bank_path)
    answer_embeddings = answer_bank.load_or_encode_answers(
        client, version, entries, checksum, args.cache_dir
    )
    question_embedding = client.encode_questions([args.question], version)[0]
    ranked = answer_bank.rank_answers(question_embedding, answer_embeddings, entries, args.top_k)

    print(f"Model {args.model_name} version {version} at {args.server}; {len(entries)} answers in {bank_path}")
    for rank, item in enumerate(ranked, start=1):
        print(f"{rank}. score={item.score:.4f} answer_id={item.answer_id} {item.answer}")

    if args.decode is not None:
        _print_decoding(client, version, args.question, args.decode)


def _print_decoding(client: ServingClient, version: int, question: str, answer: str) -> None:
    outputs = client.decode([question], [answer], version)
    length = int(outputs["target_length"][0])
    log_probability = float(outputs["log_probability"][0])

    print(f"Decoder, teacher-forced on the answer {answer!r} ({length} target tokens):")
    for position in range(length):
        token = outputs["predicted_tokens"][0, position]
        token_text = token.decode("utf-8", "replace") if isinstance(token, bytes) else str(token)
        print(
            f"  position {position}: predicted {token_text!r} (id {int(outputs['predicted_ids'][0, position])}),"
            f" target id {int(outputs['target_ids'][0, position])}"
        )
    print(f"log_probability={log_probability:.4f} probability={np.exp(log_probability):.6g}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m components.serving.commands")
    subparsers = parser.add_subparsers(dest="command", required=True)
    register_commands(subparsers)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    from components.serving.server import run_with_absl_logging

    run_with_absl_logging(main, sys.argv[1:])
