"""The `faq-pipeline` command: run the pipeline, ingest data, serve and query models, Kubeflow tools."""

import os

# Before TensorFlow is imported anywhere: Keras 2 (tf_keras) and less C++ start-up noise.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")

import argparse  # noqa: E402
import logging as python_logging  # noqa: E402
import sys  # noqa: E402
import warnings  # noqa: E402
from typing import List, Optional  # noqa: E402

# google-api-core warns once per imported Google client that Python 3.10 support is ending;
# TFX 1.16 imports a dozen of them. The pinned stack is Python 3.10 by design.
warnings.filterwarnings("ignore", message=r".*non-supported Python version.*", category=FutureWarning)

from absl import logging  # noqa: E402

from components.serving import commands as serving_commands  # noqa: E402
from pipeline import configs  # noqa: E402
from pipeline import kubeflow_commands  # noqa: E402



MAX_INFO_LINES = 12  # INFO records longer than this are TFX's protobuf dumps of each node.
# Beam logs one INFO line per type hint it cannot check, about a hundred per run.
QUIET_INFO_MODULES = {"native_type_compatibility"}


class _LongInfoFilter(python_logging.Filter):
    """Drop long or known-noisy INFO (and DEBUG) records; warnings and errors always pass.

    TFX logs every node's full IR and artifact protos at INFO, thousands of lines per run, which
    bury the per-component progress and the blessing verdicts.
    """

    def filter(self, record: python_logging.LogRecord) -> bool:
        if record.levelno > python_logging.INFO:
            return True
        if record.module in QUIET_INFO_MODULES:
            return False
        return record.getMessage().count("\n") < MAX_INFO_LINES


def _run(args: argparse.Namespace) -> int:
    config = configs.config_from_arguments(args)  # Before the slow TFX import, so bad flags fail fast.
    config.check_local_files()
    from pipeline import beam_runner  # pylint: disable=import-outside-toplevel

    result = beam_runner.run_local(config, args.beam_args)
    print(beam_runner.format_result(result))
    return 0 if result.push is not None and result.push.pushed else 1


def _ingest(args: argparse.Namespace) -> int:
    from components import ingestion  # pylint: disable=import-outside-toplevel

    report = ingestion.ingest(args.corpus, args.data, args.eval_fraction, args.output, args.max_examples,
                              args.max_field_chars)
    print(report.summary())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="faq-pipeline", description=__doc__)
    parser.add_argument("--full_logs", action="store_true",
                        help=f"Also log INFO messages of more than {MAX_INFO_LINES} lines (TFX's protobuf dumps).")
    subparsers = parser.add_subparsers(dest="command", required=True)

    run = subparsers.add_parser(
        "run", help="Ingest the data and run the whole pipeline locally (BeamDagRunner), pushing a servable model.",
        description="Every flag overrides one field of the pipeline configuration. Arguments after `--` are "
                    "passed to Beam unchanged.")
    configs.add_config_arguments(run)
    run.set_defaults(func=_run)

    defaults = configs.PipelineConfig()
    ingest = subparsers.add_parser(
        "ingest", help="Only write the train/eval TFRecords that ImportExampleGen reads (e.g. to a bucket).")
    ingest.add_argument("--corpus", default=defaults.corpus, help="chatterbot:<language> when --data is empty.")
    ingest.add_argument("--data", default="", help="CSV or JSON Lines file with `question` and `answer` fields.")
    ingest.add_argument("--eval_fraction", type=float, default=defaults.eval_fraction)
    ingest.add_argument("--max_examples", type=int, default=0, help="Keep the first N pairs (0 = all).")
    ingest.add_argument("--max_field_chars", type=int, default=defaults.max_field_chars)
    ingest.add_argument("--output", required=True, help="Folder under which a <fingerprint>/ folder is written.")
    ingest.set_defaults(func=_ingest)

    serving_commands.register_commands(subparsers)
    kubeflow_commands.register_commands(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    beam_args: List[str] = []
    if "--" in argv:
        split = argv.index("--")
        argv, beam_args = argv[:split], argv[split + 1:]

    args = build_parser().parse_args(argv)
    args.beam_args = beam_args
    logging.use_absl_handler()
    logging.set_verbosity(logging.INFO)
    if not args.full_logs:
        logging.get_absl_handler().addFilter(_LongInfoFilter())
    try:
        return args.func(args)
    except (ValueError, FileNotFoundError) as error:
        print(f"faq-pipeline: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
