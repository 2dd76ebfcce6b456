"""`faq-pipeline kubeflow compile`: a real KubeflowV2DagRunner compile, loaded back with KFP's own loaders."""

import os

import pytest
import yaml
from google.protobuf import json_format

from pipeline import configs, kubeflow_commands, kubeflow_runner, kubeflow_schedule

IMAGE = "registry.example.com/faq-pipeline:1.2.3"
TFX_COMMAND = ["python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor"]
COMPONENTS = {"ImportExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "Transform",
              "Trainer", "FaqEvaluator", "ServingCheck", "Pusher"}
# The latest-blessed-model Resolver compiles into two query tasks without a container.
RESOLVER_TASKS = {"latest_blessed_model_resolver-model-blessing-resolver",
                  "latest_blessed_model_resolver-model-resolver"}
# Components whose executors run Beam and so receive the Beam pipeline options.
BEAM_COMPONENTS = {"ImportExampleGen", "StatisticsGen", "ExampleValidator", "Transform"}
PUSH_DESTINATION = '{"filesystem": {"baseDirectory": "gs://bucket/serving_model/faq"}}'


def _compile(tmp_path_factory, name, *argv):
    output = tmp_path_factory.mktemp(name) / "faq-pipeline.yaml"
    exit_code = kubeflow_commands.main(["compile", "--image", IMAGE, "--output", str(output), *argv])
    assert exit_code == 0
    return output


@pytest.fixture(scope="module")
def compiled(tmp_path_factory):
    """Path of a compile with every default set and extra Beam options."""
    return _compile(tmp_path_factory, "with-defaults",
                    "--pipeline_root", "gs://bucket/pipeline_root",
                    "--data_root", "gs://bucket/data",
                    "--serving_model_dir", "gs://bucket/serving_model",
                    "--epochs", "3",
                    "--", "--temp_location=gs://bucket/tmp")


@pytest.fixture(scope="module")
def spec(compiled):
    return yaml.safe_load(compiled.read_text())


def _executor(spec, component):
    label = spec["components"][component]["executorLabel"]
    return spec["deploymentSpec"]["executors"][label]


def _task_parameter(spec, component, name):
    return spec["root"]["dag"]["tasks"][component]["inputs"]["parameters"][name]


def test_compile_loads_as_pipeline_spec(compiled, spec):
    from kfp.pipeline_spec import pipeline_spec_pb2

    # Strict parse: an unknown field would raise.
    parsed = json_format.ParseDict(spec, pipeline_spec_pb2.PipelineSpec())
    assert parsed.pipeline_info.name == "faq-pipeline"
    assert parsed.schema_version == "2.1.0"
    assert parsed.sdk_version == "tfx-1.16.0"
    assert set(parsed.components) == COMPONENTS | RESOLVER_TASKS
    assert set(parsed.root.dag.tasks) == COMPONENTS | RESOLVER_TASKS


def test_compile_loads_with_kfp_loader(compiled):
    from kfp import components

    component = components.load_component_from_file(str(compiled))
    assert component.name == "faq-pipeline"
    assert set(component.component_spec.inputs) == {"data_root", "push_destination"}


def test_compile_every_component_runs_image(spec):
    executors = spec["deploymentSpec"]["executors"]
    assert len(executors) == len(COMPONENTS) + len(RESOLVER_TASKS)
    for task in RESOLVER_TASKS:
        assert set(executors[f"{task}_executor"]) == {"resolver"}
    for component in COMPONENTS:
        container = _executor(spec, component)["container"]
        assert container["image"] == IMAGE, component
        assert container["command"] == TFX_COMMAND, component


def test_compile_command_matches_tfx(spec):
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    assert list(kubeflow_v2_dag_runner.KUBEFLOW_TFX_CMD) == TFX_COMMAND
    assert list(kubeflow_runner.TFX_CONTAINER_COMMAND) == TFX_COMMAND


def test_compile_runtime_parameters(spec):
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    assert parameters == {
        "data_root": {"parameterType": "STRING", "defaultValue": "gs://bucket/data", "isOptional": True},
        "push_destination": {"parameterType": "STRING", "defaultValue": PUSH_DESTINATION, "isOptional": True},
    }
    assert _task_parameter(spec, "ImportExampleGen", "input_base") == {"componentInputParameter": "data_root"}
    assert _task_parameter(spec, "Pusher", "push_destination") == {"componentInputParameter": "push_destination"}
    assert spec["defaultPipelineRoot"] == "gs://bucket/pipeline_root"


def test_compile_output_schedulable(compiled):
    # Every runtime parameter has a default, so a run needs no parameter values.
    kubeflow_schedule.check_parameters(str(compiled), {})


def test_compile_header_lists_defaults(compiled):
    header = [line for line in compiled.read_text().splitlines() if line.startswith("#")]
    assert header[:2] == ["# PIPELINE DEFINITION", "# Name: faq-pipeline"]
    assert "#  data_root: str [Default: 'gs://bucket/data']" in header
    assert f"#  push_destination: str [Default: '{PUSH_DESTINATION}']" in header


def test_compile_code_by_import_path(spec):
    assert _task_parameter(spec, "Transform", "preprocessing_fn") == {
        "runtimeValue": {"constant": "components.preprocessing.preprocessing_fn"}}
    assert _task_parameter(spec, "Trainer", "run_fn") == {"runtimeValue": {"constant": "components.trainer.run_fn"}}
    assert _task_parameter(spec, "ImportSchemaGen", "schema_file") == {
        "runtimeValue": {"constant": kubeflow_commands.IMAGE_SCHEMA_PATH}}


def test_compile_trainer_gets_config(spec):
    custom_config = _task_parameter(spec, "Trainer", "custom_config")["runtimeValue"]["constant"]
    assert '"epochs": 3' in custom_config


def test_compile_beam_options(spec):
    expected = ["--runner=DirectRunner", "--direct_running_mode=multi_processing", "--direct_num_workers=0",
                "--temp_location=gs://bucket/tmp"]
    for component in BEAM_COMPONENTS:
        args = _executor(spec, component)["container"]["args"]
        assert args[-len(expected):] == expected, component


def test_compile_has_no_local_paths(compiled):
    text = compiled.read_text()
    local_paths = {
        "test directory": str(compiled.parent),
        "repository": configs.REPO_ROOT,
        "working directory": os.getcwd(),
        "home": os.path.expanduser("~") + "/",
        "/work": "/work/",
    }
    for description, path in local_paths.items():
        assert path not in text, description


def test_compile_without_defaults(tmp_path_factory):
    output = _compile(tmp_path_factory, "no-defaults", "--beam_runner", "DataflowRunner",
                      "--", "--project=my-project", "--region=europe-west1")
    spec = yaml.safe_load(output.read_text())

    assert spec["root"]["inputDefinitions"]["parameters"] == {
        "data_root": {"parameterType": "STRING"},
        "push_destination": {"parameterType": "STRING"},
    }
    assert "defaultPipelineRoot" not in spec
    with pytest.raises(ValueError, match="'data_root' has no default"):
        kubeflow_schedule.check_parameters(str(output), {})
    args = _executor(spec, "Transform")["container"]["args"]
    assert args[-3:] == ["--runner=DataflowRunner", "--project=my-project", "--region=europe-west1"]
    assert not any(arg.startswith("--direct_") for arg in args)


@pytest.mark.parametrize("argv, message", [
    (["--output", "faq-pipeline.json"], "use a name ending in .yaml"),
    (["--data_root", "data"], "--data_root='data' is a relative path"),
    (["--pipeline_root", "pipeline_root"], "--pipeline_root='pipeline_root' is a relative path"),
    (["--image", ""], "--image is empty"),
])
def test_compile_rejects_invalid_flags(argv, message, tmp_path, capsys):
    exit_code = kubeflow_commands.main(["compile", "--output", str(tmp_path / "p.yaml"), *argv])

    assert exit_code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "p.yaml").exists()


def test_push_destination_json_parses():
    from tfx import v1 as tfx

    value = kubeflow_runner.push_destination_json("gs://bucket/serving_model/", "faq")
    destination = json_format.Parse(value, tfx.proto.PushDestination())
    assert destination.filesystem.base_directory == "gs://bucket/serving_model/faq"
