"""Latency and throughput of `encode_question` through the model server versus in-process.

Usage:
  TF_USE_LEGACY_KERAS=1 python benchmarks/serving_benchmark.py [--model_base_path serving_model/faq]

Without --model_base_path (or if it has no version) the benchmark builds the small fixture
model of tests/serving_models.py. Each server measurement is paired with the same
signature called in this process in the same run, and the ratio is server / in-process.
Results are written as a Markdown section to --output.
"""

import argparse
import concurrent.futures
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)
sys.path.insert(0, os.path.join(_ROOT, "tests"))

import numpy as np
import tensorflow as tf

from components.serving.client import ServingClient
from components.serving.launcher import ServerProcess
from components.serving.versions import list_version_dirs

SIGNATURE = "encode_question"


def build_questions(count: int) -> list:
    topics = ["reset my password", "shipping time", "refund to my card", "change the email", "订单状态"]
    return [f"How do I {topics[index % len(topics)]}? (request {index})" for index in range(count)]


def percentile_ms(seconds: list, q: float) -> float:
    return float(np.percentile(np.asarray(seconds) * 1000.0, q))


def time_calls(call, batches: list) -> list:
    durations = []
    for batch in batches:
        started = time.perf_counter()
        call(batch)
        durations.append(time.perf_counter() - started)
    return durations


def throughput(call, batches: list, concurrency: int) -> float:
    """Return requests per second with `concurrency` threads sharing the batches."""
    started = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(max_workers=concurrency) as pool:
        list(pool.map(call, batches))
    return len(batches) / (time.perf_counter() - started)


def machine_description() -> str:
    cpu_model = platform.processor() or "unknown"
    if os.path.isfile("/proc/cpuinfo"):
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    cpu_model = line.split(":", 1)[1].strip()
                    break
    nproc = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    load = ", ".join(f"{value:.2f}" for value in os.getloadavg())
    return (
        f"nproc={nproc}, CPU: {cpu_model}, Python {platform.python_version()}, TF {tf.__version__}, "
        f"load average at start (1, 5, 15 min): {load}"
    )


def resolve_model(model_base_path: str, staging_dir: str):
    """Return (base path, latest version dir, description), building the fixture model if needed."""
    if model_base_path:
        versions = list_version_dirs(model_base_path)
        if versions:
            latest = max(versions)
            return model_base_path, versions[latest], f"pushed model {model_base_path} version {latest}"
        print(f"No integer version folder under {model_base_path}; using the fixture model.", file=sys.stderr)

    import serving_models

    base = os.path.join(staging_dir, "faq")
    version_dir = serving_models.save_fixture_model(os.path.join(base, "1"))
    return base, version_dir, "fixture model (tests/serving_models.py, hashed bag of words, D=256)"


def run(args) -> str:
    staging_dir = tempfile.mkdtemp(prefix="serving-benchmark-")
    base_path, version_dir, model_description = resolve_model(args.model_base_path, staging_dir)
    function = tf.saved_model.load(version_dir).signatures[SIGNATURE]
    questions = build_questions(args.requests * 32)

    def in_process(batch):
        return function(question=tf.constant(batch))["embedding"].numpy()

    rows = []
    with ServerProcess(base_path, log_path=os.path.join(staging_dir, "server.log")) as server:
        server.wait_until_ready()
        with ServingClient(server.grpc_address) as client:
            def served(batch):
                return client.encode_questions(batch)

            for batch_size in (1, 32):
                batches = [questions[i * batch_size:(i + 1) * batch_size] for i in range(args.requests)]
                time_calls(served, batches[: args.warmup])
                time_calls(in_process, batches[: args.warmup])
                server_times = time_calls(served, batches)
                local_times = time_calls(in_process, batches)
                for label, q in (("p50", 50), ("p99", 99)):
                    server_ms = percentile_ms(server_times, q)
                    local_ms = percentile_ms(local_times, q)
                    rows.append((f"latency batch {batch_size} {label} (ms)", server_ms, local_ms))

            single = [[question] for question in questions[: args.requests * 4]]
            for concurrency in (1, 4, 16):
                server_rate = throughput(served, single, concurrency)
                local_rate = throughput(in_process, single, concurrency)
                rows.append((f"throughput batch 1, {concurrency} client threads (req/s)", server_rate, local_rate))

    command = "TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/serving_benchmark.py " + " ".join(sys.argv[1:])
    lines = [
        "## Serving: encode_question through the model server vs in-process",
        "",
        f"- Command: `{command.strip()}`",
        f"- Model: {model_description}",
        f"- Server: {'tensorflow_model_server' if server.binary else 'built-in Python server (components/serving/server.py)'}, gRPC on 127.0.0.1; client threads on the same machine share one channel",
        f"- Machine: {machine_description()}",
        f"- Date: {datetime.date.today().isoformat()}",
        f"- Requests per latency row: {args.requests} (after {args.warmup} warm-up); per throughput row: {args.requests * 4}",
        "",
        "| Measurement | Server (gRPC) | In-process | Server / in-process |",
        "|---|---:|---:|---:|",
    ]
    for name, server_value, local_value in rows:
        lines.append(f"| {name} | {server_value:.2f} | {local_value:.2f} | {server_value / local_value:.2f} |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model_base_path", default="", help="Pushed model folder with integer versions.")
    parser.add_argument("--requests", type=int, default=300, help="Requests per latency measurement (default 300).")
    parser.add_argument("--warmup", type=int, default=20, help="Warm-up requests before timing (default 20).")
    parser.add_argument("--output", default="/tmp/serving_benchmarks.md", help="Markdown file to write.")
    args = parser.parse_args()

    report = run(args)
    with open(args.output, "w", encoding="utf-8") as output:
        output.write(report)
    print(report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
