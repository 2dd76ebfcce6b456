"""Wall time, per-component time and peak memory of one `faq-pipeline run` on a fresh pipeline root.

Usage:
  make benchmark ARGS="[--runs 1] [-- <faq-pipeline run flags>]"
  TF_USE_LEGACY_KERAS=1 .venv/bin/python benchmarks/pipeline_benchmark.py [-- --epochs 5]

The run is a subprocess of this script. psutil samples memory every 0.2 s over the whole
process tree (the CLI and its Beam worker processes). "Peak RSS" is the largest sum of resident
set sizes seen, so a peak shorter than the sampling interval can be missed.
Per-component seconds come from the run's ML Metadata executions. Prints a Markdown section.
"""

import argparse
import datetime
import os
import platform
import subprocess
import sys
import tempfile
import time

import psutil

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, _ROOT)

from pipeline import run_summary  # noqa: E402  (after the path set-up)

SAMPLE_SECONDS = 0.2


def _tree_rss(process: psutil.Process) -> int:
    """Return the summed RSS in bytes of a process and its descendants that are still alive."""
    total = 0
    for member in [process] + process.children(recursive=True):
        try:
            total += member.memory_info().rss
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue  # The process ended between listing and reading, so its memory is already free.
    return total


def run_once(run_args, workdir: str):
    """Run the pipeline once in `workdir`; return (seconds, peak RSS bytes, component runs, exit code)."""
    command = [os.path.join(os.path.dirname(sys.executable), "faq-pipeline"), "run",
               "--pipeline_root", os.path.join(workdir, "pipeline_root"),
               "--serving_model_dir", os.path.join(workdir, "serving_model")] + list(run_args)
    started = time.monotonic()
    started_ms = int(time.time() * 1000)
    with open(os.path.join(workdir, "run.log"), "w") as log:
        process = psutil.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                               env={**os.environ, "TF_USE_LEGACY_KERAS": "1"})
        peak = 0
        while process.poll() is None:
            try:
                peak = max(peak, _tree_rss(process))
            except psutil.NoSuchProcess:
                break
            time.sleep(SAMPLE_SECONDS)
    seconds = time.monotonic() - started

    store = run_summary.open_store(os.path.join(workdir, "pipeline_root", "metadata.sqlite"))
    return seconds, peak, run_summary.component_runs(store, started_ms), process.returncode


def machine_description() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as file:
            cpu = next(line.split(":", 1)[1].strip() for line in file if line.startswith("model name"))
    except (OSError, StopIteration):
        pass  # Not Linux, so platform.processor() is the best description available.
    memory_gib = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} cores ({cpu}), {memory_gib:.0f} GiB RAM, {platform.platform()}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=1, help="Fresh-root runs to time (default 1).")
    argv = sys.argv[1:]
    run_args = []
    if "--" in argv:
        split = argv.index("--")
        argv, run_args = argv[:split], argv[split + 1:]
    args = parser.parse_args(argv)

    print(f"## `faq-pipeline run {' '.join(run_args)}`".rstrip() + "\n")
    print(f"- Date: {datetime.date.today().isoformat()}")
    print(f"- Machine: {machine_description()}")
    print(f"- Command: `python benchmarks/pipeline_benchmark.py --runs {args.runs} -- {' '.join(run_args)}`\n")
    for index in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="faq-benchmark-") as workdir:
            seconds, peak, components, code = run_once(run_args, workdir)
        print(f"Run {index + 1}: {seconds:.1f} s wall, peak RSS {peak / 2**30:.2f} GiB (process tree), exit {code}\n")
        print("| Component | State | Seconds |")
        print("| --- | --- | ---: |")
        for component in components:
            print(f"| {component.component} | {component.state} | {component.seconds:.1f} |")
        print()
        if code != 0:
            print(f"The run failed with exit code {code}; its log was in the deleted {workdir}/run.log.")
            return code
    return 0


if __name__ == "__main__":
    sys.exit(main())
