"""`faq-pipeline kubeflow compile|schedule`: build the KFP pipeline YAML and schedule it.

`register_commands(subparsers)` adds the `kubeflow` subcommand to the main CLI; `main(argv)`
runs the same parser alone, as `python -m pipeline.kubeflow_commands ...`.
"""

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

import argparse
import sys
from typing import List, Optional

from absl import logging

from pipeline import configs, kubeflow_runner, kubeflow_schedule

DEFAULT_PACKAGE_PATH = os.path.join("kubeflow", "build", "faq-pipeline.yaml")
DEFAULT_IMAGE = "faq-pipeline:latest"
# Schema path inside the pipeline image, where kubeflow/Dockerfile copies schemas/.
IMAGE_SCHEMA_PATH = "/pipeline/schemas/schema.pbtxt"

CRON_HELP = (
    "KFP cron expressions have 6 fields, seconds first: 'second minute hour day-of-month month "
    "day-of-week', so '0 0 3 * * *' runs daily at 03:00:00 in the KFP scheduler's time zone. "
    "A 5-field crontab line is rejected: prepend the seconds, e.g. '0 3 * * *' becomes '0 0 3 * * *'.")


def register_commands(subparsers) -> argparse.ArgumentParser:
    """Add the `kubeflow` subcommand with `compile` and `schedule` to `subparsers`."""
    parser = subparsers.add_parser(
        "kubeflow", help="Compile the pipeline for Kubeflow Pipelines 2 and schedule it.",
        description="Compile the pipeline to KFP IR YAML with KubeflowV2DagRunner, upload it and "
                    "schedule a recurring run.")
    commands = parser.add_subparsers(dest="kubeflow_command", required=True, metavar="COMMAND")
    _add_compile_parser(commands)
    _add_schedule_parser(commands)
    return parser


def _add_compile_parser(commands) -> None:
    defaults = configs.PipelineConfig(pipeline_root="", serving_model_dir="", schema_path=IMAGE_SCHEMA_PATH)
    parser = commands.add_parser(
        "compile", help="Write the pipeline as KFP IR YAML.",
        description="Write the pipeline as the IR YAML that Kubeflow Pipelines 2 uploads. Beam "
                    "pipeline options for the components follow `--`, e.g. "
                    "`-- --project=P --region=R` for DataflowRunner.")
    parser.add_argument("--image", default=DEFAULT_IMAGE,
                        help="Pipeline image built from kubeflow/Dockerfile, as the cluster pulls it, "
                             "e.g. REGISTRY/faq-pipeline:TAG (default: %(default)s).")
    parser.add_argument("--output", default=DEFAULT_PACKAGE_PATH,
                        help="Output file; must end in .yaml or .yml (default: %(default)s).")
    parser.add_argument("--data_root", default="",
                        help="Default of the `data_root` runtime parameter: directory with train/ and "
                             "eval/ *.tfrecord.gz, readable by the pipeline pods, e.g. gs://BUCKET/data. "
                             "Empty: no default, so every run must set it.")
    configs.add_config_arguments(parser, defaults)
    parser.add_argument("beam_args", nargs="*", metavar="BEAM_OPTION",
                        help="Beam pipeline options after `--`, appended to those --beam_runner sets.")
    parser.set_defaults(func=run_compile)


def _add_schedule_parser(commands) -> None:
    parser = commands.add_parser(
        "schedule", help="Upload the compiled YAML and create a recurring run.",
        description="Upload the compiled YAML as a new version of the pipeline (creating the "
                    "pipeline when missing) and create a recurring run of that version: at most "
                    "one run at a time, no catch-up of missed schedules. " + CRON_HELP)

    # Server and schedule.
    parser.add_argument("--host", required=True,
                        help="KFP API server URL, e.g. http://127.0.0.1:8888 after "
                             "`kubectl port-forward -n kubeflow svc/ml-pipeline 8888:8888`.")
    parser.add_argument("--cron", required=True, help="When to start runs, as a KFP cron expression. " + CRON_HELP)

    # What to upload and where it goes.
    parser.add_argument("--package", default=DEFAULT_PACKAGE_PATH,
                        help="Compiled pipeline YAML (default: %(default)s).")
    parser.add_argument("--pipeline_name", default=configs.PIPELINE_NAME,
                        help="KFP pipeline to add the version to (default: %(default)s).")
    parser.add_argument("--version", default="",
                        help="Pipeline version name, unique within the pipeline "
                             "(default: <pipeline_name>-<UTC time>).")
    parser.add_argument("--experiment", default="faq-pipeline", help="Experiment name (default: %(default)s).")
    parser.add_argument("--job_name", default="",
                        help="Recurring run name (default: <pipeline_name>-<cron without spaces>).")
    parser.add_argument("--namespace", default=None,
                        help="Kubernetes namespace on a multi-user KFP deployment; omit otherwise.")

    # Run settings that override the compiled defaults.
    parser.add_argument("--pipeline_root", default=None,
                        help="Root of the runs' artifacts, e.g. gs://BUCKET/pipeline_root "
                             "(default: the compiled default or the server's).")
    parser.add_argument("--data_root", default=None,
                        help=f"Value of the `{kubeflow_runner.DATA_ROOT_PARAMETER}` runtime parameter: "
                             "directory with train/ and eval/ *.tfrecord.gz (default: the compiled one).")
    parser.add_argument("--serving_model_dir", default=None,
                        help=f"Sets the `{kubeflow_runner.PUSH_DESTINATION_PARAMETER}` runtime parameter so "
                             "that the Pusher writes <serving_model_dir>/<model_name>/<version> "
                             "(default: the compiled one).")
    parser.add_argument("--model_name", default=configs.PipelineConfig.model_name,
                        help="Model directory name under --serving_model_dir (default: %(default)s).")
    parser.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                        help="Any other runtime parameter; repeatable.")

    parser.add_argument("--dry-run", "--dry_run", dest="dry_run", action="store_true",
                        help="Print what would be sent as JSON and contact nothing.")
    parser.set_defaults(func=run_schedule)


def run_compile(args: argparse.Namespace) -> int:
    """Compile the pipeline to `args.output`; return the exit code."""
    try:
        config = configs.config_from_arguments(args)
        path = kubeflow_runner.compile_pipeline(
            config,
            image=args.image,
            output_path=args.output,
            data_root=args.data_root,
            beam_extra_args=args.beam_args,
        )
    except ValueError as error:
        logging.error("kubeflow compile failed: %s", error)
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(path)
    return 0


def run_schedule(args: argparse.Namespace) -> int:
    """Upload `args.package` and create the recurring run, or print it with --dry-run."""
    try:
        request = _schedule_request(args)
        kubeflow_schedule.check_package(request.package_path)
        kubeflow_schedule.check_parameters(request.package_path, request.parameters, flags={
            kubeflow_runner.DATA_ROOT_PARAMETER: "--data_root",
            kubeflow_runner.PUSH_DESTINATION_PARAMETER: "--serving_model_dir"})
    except (ValueError, FileNotFoundError) as error:
        logging.error("kubeflow schedule failed: %s", error)
        print(f"error: {error}", file=sys.stderr)
        return 2

    if args.dry_run:
        print(kubeflow_schedule.format_dry_run(request))
        return 0

    import kfp_server_api
    import urllib3

    try:
        client = kubeflow_schedule.connect(args.host, namespace=args.namespace)
        result = kubeflow_schedule.schedule(client, request)
    except kfp_server_api.ApiException as error:
        logging.error("KFP API request to %s failed: %s %s: %s", args.host, error.status, error.reason, error.body)
        print(f"error: KFP API request to {args.host} failed with HTTP {error.status} {error.reason}: "
              f"{error.body}", file=sys.stderr)
        return 1
    except urllib3.exceptions.HTTPError as error:
        logging.error("Connecting to the KFP API server at %s failed: %s", args.host, error)
        print(f"error: connecting to the KFP API server at {args.host} failed: {error}. Check --host and "
              f"the port forward.", file=sys.stderr)
        return 1
    for line in kubeflow_schedule.format_result(result):
        print(line)
    return 0


def _schedule_request(args: argparse.Namespace) -> kubeflow_schedule.ScheduleRequest:
    cron = kubeflow_schedule.validate_cron(args.cron)
    parameters = kubeflow_schedule.parse_parameters(args.param)
    named_values = {kubeflow_runner.DATA_ROOT_PARAMETER: ("--data_root", args.data_root)}
    if args.serving_model_dir is not None:
        named_values[kubeflow_runner.PUSH_DESTINATION_PARAMETER] = (
            "--serving_model_dir", kubeflow_runner.push_destination_json(args.serving_model_dir, args.model_name))
    for name, (flag, value) in named_values.items():
        if value is None:
            continue
        if name in parameters:
            raise ValueError(f"Runtime parameter {name!r} is set by both {flag} and --param: keep one.")
        parameters[name] = value

    return kubeflow_schedule.ScheduleRequest(
        package_path=args.package,
        pipeline_name=args.pipeline_name,
        version_name=args.version or kubeflow_schedule.default_version_name(args.pipeline_name),
        experiment_name=args.experiment,
        recurring_run_name=args.job_name or f"{args.pipeline_name}-{cron.replace(' ', '_')}",
        cron=cron,
        parameters=parameters,
        pipeline_root=args.pipeline_root,
        namespace=args.namespace,
    )


def build_parser() -> argparse.ArgumentParser:
    """Return a parser with only the `kubeflow` subcommand, for `main`."""
    parser = argparse.ArgumentParser(prog="faq-pipeline")
    register_commands(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    """Run `kubeflow compile|schedule`; `argv` omits the program name, and its leading `kubeflow` is optional."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "kubeflow":
        argv = ["kubeflow"] + argv
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
