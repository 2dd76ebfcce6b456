"""Upload the compiled pipeline to Kubeflow Pipelines and create a recurring run.

Uses `kfp.Client` (kfp 2.5.0, KFP REST API v2beta1). `schedule` finds the pipeline by name
and creates it when missing, then uploads the compiled YAML as a new version of it. Then it
finds or creates the experiment and creates a recurring run of that version with a cron
trigger. The recurring run allows one run at a time and does not catch up missed schedules.
"""

import dataclasses
import datetime
import hashlib
import json
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from absl import logging

CRON_FIELD_NAMES = ("second", "minute", "hour", "day of month", "month", "day of week")

# Inclusive value ranges of the six fields of the cron format that KFP uses
# (github.com/robfig/cron with the seconds field).
_CRON_FIELD_RANGES = ((0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (0, 6))
_CRON_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_CRON_WEEKDAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_CRON_ITEM = re.compile(r"^(?P<range>\*|\?|[0-9A-Za-z]+(-[0-9A-Za-z]+)?)(/(?P<step>[0-9]+))?$")


@dataclasses.dataclass(frozen=True)
class ScheduleRequest:
    """Everything that `schedule` sends to the KFP API server."""

    package_path: str
    pipeline_name: str
    version_name: str
    experiment_name: str
    recurring_run_name: str
    cron: str
    parameters: Dict[str, Any]
    pipeline_root: Optional[str] = None
    namespace: Optional[str] = None
    max_concurrency: int = 1
    no_catchup: bool = True


@dataclasses.dataclass(frozen=True)
class ScheduleResult:
    """Ids that the KFP API server assigned."""

    pipeline_id: str
    pipeline_version_id: str
    experiment_id: str
    recurring_run_id: str
    pipeline_created: bool


def validate_cron(expression: str) -> str:
    """Return `expression` stripped, or raise ValueError explaining the 6-field KFP format.

    KFP cron strings have a seconds field first: "second minute hour day-of-month month
    day-of-week", for example "0 0 3 * * *" for 03:00:00 every day.
    """
    fields = expression.split()
    if len(fields) == 5:
        raise ValueError(
            f"Cron expression {expression!r} has 5 fields, but KFP cron expressions have 6 with "
            f"the seconds first: use {'0 ' + ' '.join(fields)!r} to run at second 0.")
    if len(fields) != 6:
        raise ValueError(
            f"Cron expression {expression!r} has {len(fields)} fields: use 6 fields "
            f"({' '.join(CRON_FIELD_NAMES)}), for example '0 0 3 * * *' for 03:00:00 every day.")

    for index, field in enumerate(fields):
        _validate_cron_field(expression, index, field)
    return " ".join(fields)


def _validate_cron_field(expression: str, index: int, field: str) -> None:
    name = CRON_FIELD_NAMES[index]
    low, high = _CRON_FIELD_RANGES[index]
    for item in field.split(","):
        match = _CRON_ITEM.match(item)
        if match is None:
            raise ValueError(
                f"Cron expression {expression!r}: {name} field {field!r} is invalid: use '*', a "
                f"number {low}-{high}, a range 'a-b', a list 'a,b' or a step '*/n'.")
        if match.group("range") == "?" and index not in (3, 5):
            raise ValueError(
                f"Cron expression {expression!r}: '?' is only valid in the day of month and day "
                f"of week fields, not in the {name} field: use '*'.")
        if match.group("step") is not None and int(match.group("step")) == 0:
            raise ValueError(
                f"Cron expression {expression!r}: {name} step in {item!r} is 0: use a step of 1 or more.")
        if match.group("range") in ("*", "?"):
            continue

        values = []
        for bound in match.group("range").split("-"):
            value = _parse_cron_value(index, bound)
            if value is None or not low <= value <= high:
                raise ValueError(
                    f"Cron expression {expression!r}: {name} value {bound!r} is invalid: use "
                    f"{low}-{high}.")
            values.append(value)
        if values != sorted(values):
            raise ValueError(
                f"Cron expression {expression!r}: {name} range {item!r} is invalid because it "
                f"starts after it ends: write the smaller value first.")


def _parse_cron_value(index: int, token: str) -> Optional[int]:
    if token.isdigit():
        return int(token)
    names = {4: _CRON_MONTH_NAMES, 5: _CRON_WEEKDAY_NAMES}.get(index, ())
    if token.upper() in names:
        offset = 1 if index == 4 else 0  # Months count from 1, weekdays from 0 (Sunday).
        return names.index(token.upper()) + offset
    return None


def parse_parameters(assignments: Sequence[str]) -> Dict[str, str]:
    """Parse `NAME=VALUE` strings into a dict; raise ValueError on a malformed or repeated name."""
    parameters: Dict[str, str] = {}
    for assignment in assignments:
        name, separator, value = assignment.partition("=")
        if not separator or not name:
            raise ValueError(f"Runtime parameter {assignment!r} is invalid: use NAME=VALUE.")
        if name in parameters:
            raise ValueError(f"Runtime parameter {name!r} is given twice: keep one NAME=VALUE.")
        parameters[name] = value
    return parameters


def default_version_name(pipeline_name: str, now: Optional[datetime.datetime] = None) -> str:
    """Return `<pipeline_name>-<UTC time>`, unique per second, because KFP rejects a repeated version name."""
    now = now or datetime.datetime.now(datetime.timezone.utc)
    return f"{pipeline_name}-{now.strftime('%Y%m%d-%H%M%S')}"


def describe_request(request: ScheduleRequest) -> Dict[str, Any]:
    """Return the calls `schedule` would make for `request`, as JSON-compatible data."""
    with open(request.package_path, "rb") as package:
        content = package.read()
    return {
        "pipeline": {"display_name": request.pipeline_name, "create_if_missing": True},
        "pipeline_version": {
            "display_name": request.version_name,
            "package_path": request.package_path,
            "package_bytes": len(content),
            "package_sha256": hashlib.sha256(content).hexdigest(),
        },
        "experiment": {"display_name": request.experiment_name, "namespace": request.namespace},
        "recurring_run": {
            "display_name": request.recurring_run_name,
            "cron": request.cron,
            "max_concurrency": request.max_concurrency,
            "no_catchup": request.no_catchup,
            "mode": "ENABLE",
            "runtime_config": {"pipeline_root": request.pipeline_root, "parameters": request.parameters},
        },
    }


def connect(host: str, namespace: Optional[str] = None, existing_token: Optional[str] = None):
    """Return a `kfp.Client` for `host`; the client checks the server's healthz endpoint first."""
    import kfp  # Imported here so that --dry-run and --help work without contacting anything.

    logging.info("Connecting to the KFP API server at %s", host)
    return kfp.Client(host=host, namespace=namespace or "kubeflow", existing_token=existing_token)


def schedule(client, request: ScheduleRequest) -> ScheduleResult:
    """Upload `request.package_path` as a new pipeline version and create a recurring run of it."""
    validate_cron(request.cron)

    pipeline_id, pipeline_created = _find_or_create_pipeline(client, request)
    version = client.upload_pipeline_version(
        pipeline_package_path=request.package_path,
        pipeline_version_name=request.version_name,
        pipeline_id=pipeline_id,
    )
    logging.info("Uploaded %s as version %s (%s) of pipeline %s",
                 request.package_path, request.version_name, version.pipeline_version_id, pipeline_id)

    experiment = client.create_experiment(name=request.experiment_name, namespace=request.namespace)
    recurring_run = client.create_recurring_run(
        experiment_id=experiment.experiment_id,
        job_name=request.recurring_run_name,
        cron_expression=request.cron,
        max_concurrency=request.max_concurrency,
        no_catchup=request.no_catchup,
        params=request.parameters,
        pipeline_id=pipeline_id,
        version_id=version.pipeline_version_id,
        enabled=True,
        pipeline_root=request.pipeline_root,
    )
    logging.info("Created recurring run %s (%s) with cron %r in experiment %s",
                 request.recurring_run_name, recurring_run.recurring_run_id, request.cron,
                 experiment.experiment_id)

    return ScheduleResult(
        pipeline_id=pipeline_id,
        pipeline_version_id=version.pipeline_version_id,
        experiment_id=experiment.experiment_id,
        recurring_run_id=recurring_run.recurring_run_id,
        pipeline_created=pipeline_created,
    )


def _find_or_create_pipeline(client, request: ScheduleRequest) -> Tuple[str, bool]:
    pipeline_id = client.get_pipeline_id(request.pipeline_name)
    if pipeline_id is not None:
        logging.info("Found pipeline %s (%s)", request.pipeline_name, pipeline_id)
        return pipeline_id, False

    # Create an empty pipeline, so that its only version is the one uploaded next, under
    # the requested version name. `upload_pipeline` would add a first version named after
    # the pipeline.
    from kfp_server_api import V2beta1Pipeline

    body = V2beta1Pipeline(display_name=request.pipeline_name, namespace=request.namespace,
                           description="FAQ matching and answer generation (TFX).")
    pipeline = client.pipelines.create_pipeline(body=body)
    logging.info("Created pipeline %s (%s)", request.pipeline_name, pipeline.pipeline_id)
    return pipeline.pipeline_id, True


def format_result(result: ScheduleResult) -> List[str]:
    """Return one `name: id` line per id in `result`."""
    return [
        f"pipeline_id: {result.pipeline_id}" + (" (created)" if result.pipeline_created else ""),
        f"pipeline_version_id: {result.pipeline_version_id}",
        f"experiment_id: {result.experiment_id}",
        f"recurring_run_id: {result.recurring_run_id}",
    ]


def format_dry_run(request: ScheduleRequest) -> str:
    """Return `describe_request(request)` as indented JSON."""
    return json.dumps(describe_request(request), indent=2, sort_keys=True)


def check_package(path: str) -> None:
    """Raise FileNotFoundError with the compile command when the compiled YAML is missing."""
    if not os.path.isfile(path):
        raise FileNotFoundError(
            f"Pipeline package {path!r} not found: run `faq-pipeline kubeflow compile --output {path}` "
            f"first, or pass --package.")
    if not path.endswith((".yaml", ".yml")):
        raise ValueError(
            f"Pipeline package {path!r} is invalid: KFP 2 uploads the IR YAML that "
            f"`faq-pipeline kubeflow compile` writes, so use a path ending in .yaml.")


def check_parameters(path: str, parameters: Dict[str, Any], flags: Optional[Dict[str, str]] = None) -> None:
    """Raise ValueError when `parameters` misses a required input of the pipeline at `path` or names an unknown one.

    `flags` maps a parameter name to the command-line flag that sets it, for the error message.
    """
    import yaml

    with open(path) as package:
        spec = yaml.safe_load(package)
    inputs = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})

    unknown = sorted(set(parameters) - set(inputs))
    if unknown:
        raise ValueError(
            f"Runtime parameter {unknown[0]!r} is not an input of {path}: use one of "
            f"{', '.join(sorted(inputs)) or '(none)'}.")
    missing = sorted(name for name, definition in inputs.items()
                     if "defaultValue" not in definition and name not in parameters)
    if missing:
        raise ValueError(
            f"Runtime parameter {missing[0]!r} has no default in {path}: set it with "
            f"{(flags or {}).get(missing[0], f'--param {missing[0]}=VALUE')}, or compile with a default.")

