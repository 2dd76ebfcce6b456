"""`faq-pipeline kubeflow schedule` against a local KFP API server stand-in.

The stand-in is a small HTTP server on 127.0.0.1 that implements the KFP REST API v2beta1
endpoints that kfp.Client 2.5.0 calls for this command, records every request, and returns
the ids a real server would assign. The client, its generated REST code and the HTTP
traffic are real.
"""

import email.parser
import email.policy
import http.server
import json
import threading
import urllib.parse

import pytest
import yaml

from pipeline import kubeflow_commands, kubeflow_schedule

PIPELINE_YAML = """\
# PIPELINE DEFINITION
# Name: faq-pipeline
components:
  comp-hello:
    executorLabel: exec-hello
deploymentSpec:
  executors:
    exec-hello:
      container:
        image: faq-pipeline:test
pipelineInfo:
  name: faq-pipeline
root:
  dag:
    tasks:
      hello:
        componentRef:
          name: comp-hello
        taskInfo:
          name: hello
  inputDefinitions:
    parameters:
      data_root:
        parameterType: STRING
      push_destination:
        defaultValue: '{"filesystem": {"baseDirectory": "gs://bucket/serving_model/faq"}}'
        isOptional: true
        parameterType: STRING
schemaVersion: 2.1.0
sdkVersion: tfx-1.16.0
"""


class FakeKfpState:
    """Objects that exist on the stand-in server, and every request it received."""

    def __init__(self, pipelines=(), experiments=(), reject_recurring_runs=False):
        self.pipelines = {name: f"pipeline-{index}" for index, name in enumerate(pipelines, 1)}
        self.experiments = {name: f"experiment-{index}" for index, name in enumerate(experiments, 1)}
        self.reject_recurring_runs = reject_recurring_runs
        self.requests = []
        self.lock = threading.Lock()

    def requests_to(self, method, path):
        return [request for request in self.requests if request["method"] == method and request["path"] == path]


def _display_name_filter(query):
    """Return the display_name that a KFP `filter` query parameter matches, or None."""
    if "filter" not in query:
        return None
    predicates = json.loads(query["filter"][0])["predicates"]
    return predicates[0]["stringValue"]


def _parse_multipart(content_type, body):
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body)
    return {part.get_param("name", header="content-disposition"): part.get_payload(decode=True)
            for part in message.iter_parts()}


class FakeKfpHandler(http.server.BaseHTTPRequestHandler):
    """Implements healthz, pipelines (list, create, upload_version), experiments and recurringruns."""

    state: FakeKfpState = None

    def log_message(self, format, *args):  # Keep pytest output clean.
        pass

    def do_GET(self):
        self._handle("GET")

    def do_POST(self):
        self._handle("POST")

    def _handle(self, method):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        request = {"method": method, "path": url.path, "query": query,
                   "content_type": self.headers.get("Content-Type", ""), "body": body}
        with self.state.lock:
            self.state.requests.append(request)
            status, response = self._route(request)
        payload = json.dumps(response).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _route(self, request):
        state = self.state
        route = (request["method"], request["path"])
        if route == ("GET", "/apis/v2beta1/healthz"):
            return 200, {"multi_user": False}
        if route == ("GET", "/apis/v2beta1/pipelines"):
            name = _display_name_filter(request["query"])
            found = [{"pipeline_id": pipeline_id, "display_name": display_name}
                     for display_name, pipeline_id in state.pipelines.items() if display_name == name]
            return 200, {"pipelines": found, "total_size": len(found)} if found else {}
        if route == ("POST", "/apis/v2beta1/pipelines"):
            name = json.loads(request["body"])["display_name"]
            state.pipelines[name] = f"pipeline-{len(state.pipelines) + 1}"
            return 200, {"pipeline_id": state.pipelines[name], "display_name": name}
        if route == ("POST", "/apis/v2beta1/pipelines/upload_version"):
            return 200, {"pipeline_id": request["query"]["pipelineid"][0],
                         "pipeline_version_id": "version-1",
                         "display_name": request["query"]["name"][0]}
        if route == ("GET", "/apis/v2beta1/experiments"):
            name = _display_name_filter(request["query"])
            found = [{"experiment_id": experiment_id, "display_name": display_name}
                     for display_name, experiment_id in state.experiments.items() if display_name == name]
            return 200, {"experiments": found, "total_size": len(found)} if found else {}
        if route == ("POST", "/apis/v2beta1/experiments"):
            name = json.loads(request["body"])["display_name"]
            state.experiments[name] = f"experiment-{len(state.experiments) + 1}"
            return 200, {"experiment_id": state.experiments[name], "display_name": name}
        if route == ("POST", "/apis/v2beta1/recurringruns") and state.reject_recurring_runs:
            return 400, {"error": "Invalid cron schedule", "code": 3}
        if route == ("POST", "/apis/v2beta1/recurringruns"):
            response = json.loads(request["body"])
            response["recurring_run_id"] = "recurring-run-1"
            return 200, response
        return 404, {"error": f"{request['method']} {request['path']} is not implemented", "code": 5}


@pytest.fixture
def kfp_server(monkeypatch, tmp_path):
    """Start the stand-in on an ephemeral loopback port; yield (host URL, FakeKfpState factory)."""
    import kfp.client.client

    # kfp.Client reads a per-user context file; point it at an empty location.
    monkeypatch.setattr(kfp.client.client.Client, "_LOCAL_KFP_CONTEXT",
                        str(tmp_path / "kfp-context.json"))
    servers = []

    def start(**objects):
        state = FakeKfpState(**objects)
        handler = type("Handler", (FakeKfpHandler,), {"state": state})
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}", state

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.fixture
def package(tmp_path):
    path = tmp_path / "faq-pipeline.yaml"
    path.write_text(PIPELINE_YAML)
    return path


def _schedule_argv(host, package, *extra):
    return ["schedule", "--host", host, "--cron", "0 0 3 * * *", "--package", str(package),
            "--experiment", "faq-nightly", "--version", "faq-pipeline-v7", *extra]


def test_schedule_creates_pipeline_and_run(kfp_server, package, capsys):
    host, state = kfp_server()

    exit_code = kubeflow_commands.main(_schedule_argv(
        host, package, "--data_root", "gs://bucket/data", "--serving_model_dir", "gs://bucket/serving_model",
        "--pipeline_root", "gs://bucket/pipeline_root"))

    assert exit_code == 0
    assert len(state.requests_to("GET", "/apis/v2beta1/healthz")) >= 1

    created = state.requests_to("POST", "/apis/v2beta1/pipelines")
    assert len(created) == 1
    assert json.loads(created[0]["body"])["display_name"] == "faq-pipeline"

    uploads = state.requests_to("POST", "/apis/v2beta1/pipelines/upload_version")
    assert len(uploads) == 1
    assert uploads[0]["query"]["name"] == ["faq-pipeline-v7"]
    assert uploads[0]["query"]["pipelineid"] == ["pipeline-1"]
    assert uploads[0]["content_type"].startswith("multipart/form-data")
    form = _parse_multipart(uploads[0]["content_type"], uploads[0]["body"])
    assert form["uploadfile"] == PIPELINE_YAML.encode()

    experiments = state.requests_to("POST", "/apis/v2beta1/experiments")
    assert len(experiments) == 1
    assert json.loads(experiments[0]["body"])["display_name"] == "faq-nightly"

    runs = state.requests_to("POST", "/apis/v2beta1/recurringruns")
    assert len(runs) == 1
    run = json.loads(runs[0]["body"])
    assert run["trigger"] == {"cron_schedule": {"cron": "0 0 3 * * *"}}
    assert run["max_concurrency"] == 1
    assert run["no_catchup"] is True
    assert run["mode"] == "ENABLE"
    assert run["experiment_id"] == "experiment-1"
    assert run["pipeline_version_reference"] == {"pipeline_id": "pipeline-1",
                                                 "pipeline_version_id": "version-1"}
    assert run["runtime_config"]["pipeline_root"] == "gs://bucket/pipeline_root"
    assert run["runtime_config"]["parameters"] == {
        "data_root": "gs://bucket/data",
        "push_destination": '{"filesystem": {"baseDirectory": "gs://bucket/serving_model/faq"}}'}
    assert "pipeline_spec" not in run

    output = capsys.readouterr().out
    assert "pipeline_id: pipeline-1 (created)" in output
    assert "pipeline_version_id: version-1" in output
    assert "experiment_id: experiment-1" in output
    assert "recurring_run_id: recurring-run-1" in output


def test_schedule_reuses_pipeline_and_experiment(kfp_server, package, capsys):
    host, state = kfp_server(pipelines=["faq-pipeline"], experiments=["faq-nightly"])

    exit_code = kubeflow_commands.main(_schedule_argv(host, package, "--param", "data_root=gs://other/data"))

    assert exit_code == 0
    assert state.requests_to("POST", "/apis/v2beta1/pipelines") == []
    assert state.requests_to("POST", "/apis/v2beta1/experiments") == []

    uploads = state.requests_to("POST", "/apis/v2beta1/pipelines/upload_version")
    assert len(uploads) == 1
    assert uploads[0]["query"]["pipelineid"] == ["pipeline-1"]

    run = json.loads(state.requests_to("POST", "/apis/v2beta1/recurringruns")[0]["body"])
    assert run["experiment_id"] == "experiment-1"
    assert run["runtime_config"] == {"parameters": {"data_root": "gs://other/data"}}

    output = capsys.readouterr().out
    assert "pipeline_id: pipeline-1\n" in output


def test_schedule_dry_run_contacts_nothing(kfp_server, package, capsys):
    host, state = kfp_server()

    exit_code = kubeflow_commands.main(_schedule_argv(
        host, package, "--dry-run", "--data_root", "gs://bucket/data"))

    assert exit_code == 0
    assert state.requests == []

    printed = json.loads(capsys.readouterr().out)
    assert printed["recurring_run"]["cron"] == "0 0 3 * * *"
    assert printed["recurring_run"]["max_concurrency"] == 1
    assert printed["recurring_run"]["no_catchup"] is True
    assert printed["recurring_run"]["runtime_config"]["parameters"] == {"data_root": "gs://bucket/data"}
    assert printed["pipeline_version"]["display_name"] == "faq-pipeline-v7"
    assert printed["pipeline_version"]["package_bytes"] == len(PIPELINE_YAML.encode())
    assert printed["experiment"]["display_name"] == "faq-nightly"


def test_schedule_rejects_five_field_cron(kfp_server, package, capsys):
    host, state = kfp_server()
    argv = _schedule_argv(host, package)
    argv[argv.index("--cron") + 1] = "0 3 * * *"

    exit_code = kubeflow_commands.main(argv)

    assert exit_code == 2
    assert state.requests == []
    error = capsys.readouterr().err
    assert "'0 3 * * *' has 5 fields" in error
    assert "'0 0 3 * * *'" in error


def test_schedule_requires_parameter_without_default(kfp_server, package, capsys):
    host, state = kfp_server()

    exit_code = kubeflow_commands.main(_schedule_argv(host, package))

    assert exit_code == 2
    assert state.requests == []
    assert "'data_root' has no default" in capsys.readouterr().err


def test_schedule_rejects_unknown_parameter(kfp_server, package, capsys):
    host, state = kfp_server()

    exit_code = kubeflow_commands.main(_schedule_argv(
        host, package, "--data_root", "gs://bucket/data", "--param", "epochs=3"))

    assert exit_code == 2
    assert state.requests == []
    assert "'epochs' is not an input" in capsys.readouterr().err


def test_schedule_rejects_duplicate_parameter(kfp_server, package, capsys):
    host, state = kfp_server()

    exit_code = kubeflow_commands.main(_schedule_argv(
        host, package, "--data_root", "gs://bucket/data", "--param", "data_root=gs://other/data"))

    assert exit_code == 2
    assert state.requests == []
    assert "set by both --data_root and --param" in capsys.readouterr().err


def test_schedule_reports_server_error(kfp_server, package, capsys):
    host, state = kfp_server(reject_recurring_runs=True)

    exit_code = kubeflow_commands.main(_schedule_argv(host, package, "--data_root", "gs://bucket/data"))

    assert exit_code == 1
    assert len(state.requests_to("POST", "/apis/v2beta1/recurringruns")) == 1
    error = capsys.readouterr().err
    assert f"KFP API request to {host} failed with HTTP 400" in error
    assert "Invalid cron schedule" in error


def test_schedule_reports_unreachable_host(kfp_server, package, capsys):
    import socket

    # Bind and close a loopback port, so that nothing listens on it.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        host = f"http://127.0.0.1:{probe.getsockname()[1]}"

    exit_code = kubeflow_commands.main(_schedule_argv(host, package, "--data_root", "gs://bucket/data"))

    assert exit_code == 1
    assert f"connecting to the KFP API server at {host} failed" in capsys.readouterr().err


def test_schedule_missing_package_fails(kfp_server, tmp_path, capsys):
    host, state = kfp_server()

    exit_code = kubeflow_commands.main(_schedule_argv(host, tmp_path / "missing.yaml"))

    assert exit_code == 2
    assert state.requests == []
    assert "faq-pipeline kubeflow compile" in capsys.readouterr().err


@pytest.mark.parametrize("expression", [
    "0 0 3 * * *",
    "0 */15 * * * *",
    "30 0 3 ? * MON-FRI",
    "0 0 0 1,15 JAN-JUN ?",
    "0 0 9-17/2 * * 1-5",
])
def test_validate_cron_accepts(expression):
    assert kubeflow_schedule.validate_cron(expression) == expression


@pytest.mark.parametrize("expression, message", [
    ("0 3 * * *", "has 5 fields"),
    ("0 0 3 * * * 2030", "has 7 fields"),
    ("60 0 3 * * *", "second value '60' is invalid: use 0-59"),
    ("0 0 24 * * *", "hour value '24' is invalid: use 0-23"),
    ("0 0 3 0 * *", "day of month value '0' is invalid: use 1-31"),
    ("0 0 3 * 13 *", "month value '13' is invalid: use 1-12"),
    ("0 0 3 * * FOO", "day of week value 'FOO' is invalid: use 0-6"),
    ("0 ? 3 * * *", "'?' is only valid in the day of month and day of week fields"),
    ("0 */0 3 * * *", "step in '*/0' is 0"),
    ("0 0 5-3 * * *", "starts after it ends"),
    ("0 0 3 * * a/b", "day of week field 'a/b' is invalid"),
])
def test_validate_cron_rejects(expression, message):
    with pytest.raises(ValueError) as error:
        kubeflow_schedule.validate_cron(expression)
    assert message in str(error.value)


def test_parse_parameters_rejects_bad_input():
    assert kubeflow_schedule.parse_parameters(["a=1", "b=x=y"]) == {"a": "1", "b": "x=y"}
    with pytest.raises(ValueError, match="use NAME=VALUE"):
        kubeflow_schedule.parse_parameters(["novalue"])
    with pytest.raises(ValueError, match="given twice"):
        kubeflow_schedule.parse_parameters(["a=1", "a=2"])


def test_package_fixture_is_pipeline_spec(package):
    # The uploaded fixture must itself be a valid PipelineSpec, or the test proves less.
    from google.protobuf import json_format
    from kfp.pipeline_spec import pipeline_spec_pb2

    spec = json_format.ParseDict(yaml.safe_load(package.read_text()), pipeline_spec_pb2.PipelineSpec())
    assert spec.pipeline_info.name == "faq-pipeline"
