"""Compile the pipeline to KFP IR YAML with TFX's KubeflowV2DagRunner.

The YAML is the PipelineSpec that open-source Kubeflow Pipelines 2 uploads. TFX 1.16 picks the
format from the output file name: `.yaml`/`.yml` writes the PipelineSpec alone, any other name
writes the JSON PipelineJob that Vertex AI Pipelines submits (`_write_pipeline_spec_to_file` in
tfx/orchestration/kubeflow/v2/kubeflow_v2_dag_runner.py).

Nothing in the YAML depends on the machine that compiles it. The data and the push destination
are runtime parameters that each run sets, the pipeline root is a flag or the run's setting, and
the schema path is a path inside the pipeline image.
"""

import json
import os
import posixpath
from typing import Dict, Sequence

from absl import logging

from pipeline import configs

# Runtime parameters of the compiled pipeline.
DATA_ROOT_PARAMETER = "data_root"  # Directory with train/ and eval/ *.tfrecord.gz.
PUSH_DESTINATION_PARAMETER = "push_destination"  # tfx.proto.PushDestination in JSON.

# The command KubeflowV2DagRunner sets on every container (KUBEFLOW_TFX_CMD in TFX 1.16).
TFX_CONTAINER_COMMAND = ("python", "-m", "tfx.orchestration.kubeflow.v2.container.kubeflow_v2_run_executor")


def push_destination_json(serving_model_dir: str, model_name: str) -> str:
    """Return the `push_destination` parameter value that pushes to `<serving_model_dir>/<model_name>/<version>`."""
    base_directory = posixpath.join(serving_model_dir.rstrip("/"), model_name)
    return json.dumps({"filesystem": {"baseDirectory": base_directory}}, sort_keys=True)


def check_output_path(output_path: str) -> None:
    """Raise ValueError unless `output_path` names a YAML file."""
    if not output_path.endswith((".yaml", ".yml")):
        raise ValueError(
            f"Output path {output_path!r} is invalid: use a name ending in .yaml, because TFX writes "
            f"the Vertex AI PipelineJob JSON for any other name and KFP 2 uploads the YAML "
            f"PipelineSpec.")


def check_cluster_path(flag: str, path: str) -> None:
    """Raise ValueError when `path` is relative, because a pod would resolve it in its working directory."""
    if path and "://" not in path and not path.startswith("/"):
        raise ValueError(
            f"--{flag}={path!r} is a relative path, which each pod would resolve in its own working "
            f"directory: use a bucket URI such as gs://BUCKET/{path} or an absolute path mounted in "
            f"the pods.")


def create_kubeflow_pipeline(config: configs.PipelineConfig, beam_extra_args: Sequence[str] = ()):
    """Create the pipeline with runtime parameters for the data and the push destination."""
    from tfx import v1 as tfx  # Imported here because TFX takes about 10 s to import.

    from pipeline import pipeline as faq_pipeline

    # The defaults of these parameters are written into the YAML by `write_run_defaults`,
    # because TFX leaves RuntimeParameter defaults out of the YAML form.
    data_root_parameter = tfx.dsl.experimental.RuntimeParameter(name=DATA_ROOT_PARAMETER, ptype=str)
    push_destination_parameter = tfx.dsl.experimental.RuntimeParameter(name=PUSH_DESTINATION_PARAMETER, ptype=str)

    return faq_pipeline.create_pipeline(
        config,
        # TFX requires a pipeline root, but writes it only into the JSON form: `write_run_defaults`
        # puts --pipeline_root into the YAML, and each run may set its own.
        pipeline_root=config.pipeline_root or "unset-pipeline-root",
        data_root=data_root_parameter,
        serving_model_dir=push_destination_parameter,
        beam_pipeline_args=kubeflow_beam_args(config, beam_extra_args),
        enable_cache=config.enable_cache,
    )


def kubeflow_beam_args(config: configs.PipelineConfig, beam_extra_args: Sequence[str] = ()) -> list:
    """Return the Beam options for the components, sized in the pod, not on the compiling machine."""
    args = configs.beam_pipeline_args(config.beam_runner, config.beam_workers, beam_extra_args)
    if config.beam_runner == "DirectRunner" and config.beam_workers == 0:
        # configs.beam_pipeline_args turns 0 into this machine's core count. Beam itself reads
        # --direct_num_workers=0 as the core count of the machine that runs the component, so
        # keep 0. NOTE: in a pod with a CPU limit that count is the node's cores, not the limit,
        # so set --beam_workers to the limit.
        args = [arg if not arg.startswith("--direct_num_workers=") else "--direct_num_workers=0"
                for arg in args]
    return args


def compile_pipeline(config: configs.PipelineConfig, *, image: str, output_path: str,
                     data_root: str = "", beam_extra_args: Sequence[str] = ()) -> str:
    """Write the pipeline as KFP IR YAML to `output_path` and return that path.

    Raises ValueError on an invalid output name, an empty image or a relative path.
    """
    from tfx import v1 as tfx

    config.validate()
    check_output_path(output_path)
    if not image:
        raise ValueError("--image is empty: pass the pipeline image as the cluster pulls it, "
                         "e.g. REGISTRY/faq-pipeline:TAG.")
    for flag, path in (("pipeline_root", config.pipeline_root), ("data_root", data_root),
                       ("serving_model_dir", config.serving_model_dir), ("schema_path", config.schema_path)):
        check_cluster_path(flag, path)

    pipeline = create_kubeflow_pipeline(config, beam_extra_args)
    # Schema 2.1.0 is the PipelineSpec version that KFP 2 itself compiles to (`parameterType`).
    # TFX 1.16's YAML writer also needs it: with the 2.0.0 default, writing a pipeline that has
    # runtime parameters fails with KeyError 'parameterType'.
    runner_config = tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
        default_image=image, default_commands=list(TFX_CONTAINER_COMMAND), use_pipeline_spec_2_1=True)
    output_dir, output_filename = os.path.split(os.path.abspath(output_path))
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=runner_config, output_dir=output_dir, output_filename=output_filename)
    runner.run(pipeline)

    push_destination = (push_destination_json(config.serving_model_dir, config.model_name)
                        if config.serving_model_dir else "")
    write_run_defaults(output_path, pipeline_root=config.pipeline_root,
                       parameter_defaults={DATA_ROOT_PARAMETER: data_root,
                                           PUSH_DESTINATION_PARAMETER: push_destination})
    logging.info("Compiled %s for image %s to %s", configs.PIPELINE_NAME, image, output_path)
    return output_path


def write_run_defaults(path: str, pipeline_root: str, parameter_defaults: Dict[str, str]) -> None:
    """Write the default pipeline root and runtime parameter values into the YAML at `path`.

    An empty value writes no default, so KFP requires each run to set it. TFX writes both
    kinds of default only into the JSON PipelineJob's runtimeConfig, not into the YAML.
    """
    import yaml
    from tfx.orchestration.kubeflow.v2 import kubeflow_v2_dag_runner

    with open(path) as spec_file:
        spec = yaml.safe_load(spec_file)
    if pipeline_root:
        spec["defaultPipelineRoot"] = pipeline_root
    parameters = spec["root"]["inputDefinitions"]["parameters"]
    for name, value in parameter_defaults.items():
        if value:
            parameters[name]["defaultValue"] = value
            parameters[name]["isOptional"] = True

    # Regenerate TFX's header comment (name, inputs and their defaults) from the updated spec,
    # with the same TFX 1.16 function that wrote it.
    header = kubeflow_v2_dag_runner._extract_comments_from_pipeline_spec(  # pylint: disable=protected-access
        spec, f"This is converted from TFX pipeline from tfx-{_tfx_version()}.")
    with open(path, "w") as spec_file:
        spec_file.write(header)
        yaml.safe_dump(spec, spec_file, sort_keys=True)


def _tfx_version() -> str:
    from tfx import version

    return version.__version__
