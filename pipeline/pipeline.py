"""Definition of the faq-pipeline TFX pipeline, independent of the orchestrator that runs it."""

import os
from typing import List, Optional, Sequence, Union

from tfx import v1 as tfx
from tfx.dsl.components.base import base_node

from components.evaluation import BlessingThresholds, FaqEvaluator, create_latest_blessed_model_resolver
from components.serving.check import ServingCheck
from pipeline.configs import PIPELINE_NAME, PipelineConfig

PREPROCESSING_FN = "components.preprocessing.preprocessing_fn"
RUN_FN = "components.trainer.run_fn"

# A path or a RuntimeParameter, so that the Kubeflow runner can leave it to run time.
PathOrParameter = Union[str, tfx.dsl.experimental.RuntimeParameter]


def example_gen_input_config() -> tfx.proto.Input:
    """Read the splits that components.ingestion writes: <data_root>/train/* and <data_root>/eval/*."""
    return tfx.proto.Input(splits=[
        tfx.proto.Input.Split(name="train", pattern="train/*"),
        tfx.proto.Input.Split(name="eval", pattern="eval/*"),
    ])


def create_components(config: PipelineConfig, data_root: PathOrParameter,
                      push_destination: Union[tfx.proto.PushDestination, tfx.dsl.experimental.RuntimeParameter],
                      ) -> List[base_node.BaseNode]:
    """Create the pipeline's components in topological order."""
    example_gen = tfx.components.ImportExampleGen(input_base=data_root, input_config=example_gen_input_config())
    statistics_gen = tfx.components.StatisticsGen(examples=example_gen.outputs["examples"])
    schema_gen = tfx.components.ImportSchemaGen(schema_file=config.schema_path)
    example_validator = tfx.components.ExampleValidator(
        statistics=statistics_gen.outputs["statistics"], schema=schema_gen.outputs["schema"])

    transform = tfx.components.Transform(
        examples=example_gen.outputs["examples"],
        schema=schema_gen.outputs["schema"],
        preprocessing_fn=PREPROCESSING_FN,
        custom_config=config.transform_config())

    trainer = tfx.components.Trainer(
        run_fn=RUN_FN,
        examples=transform.outputs["transformed_examples"],
        transform_graph=transform.outputs["transform_graph"],
        schema=schema_gen.outputs["schema"],
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"]),
        custom_config=config.trainer_config())

    # TFMA's Evaluator cannot score a model whose training output is its loss and whose signatures
    # take raw strings, so FaqEvaluator writes the standard ModelEvaluation and ModelBlessing.
    latest_blessed_model = create_latest_blessed_model_resolver()
    evaluator = FaqEvaluator(
        examples=example_gen.outputs["examples"],
        model=trainer.outputs["model"],
        model_run=trainer.outputs["model_run"],
        baseline_model=latest_blessed_model.outputs["model"],
        thresholds=BlessingThresholds(**config.blessing_thresholds()))

    # InfraValidator only runs TF Serving in Docker or Kubernetes and only sends serialized
    # tf.Example, so ServingCheck serves the candidate itself and calls every raw-string signature.
    serving_check = ServingCheck(model=trainer.outputs["model"])

    pusher = tfx.components.Pusher(
        model=trainer.outputs["model"],
        model_blessing=evaluator.outputs["blessing"],
        infra_blessing=serving_check.outputs["blessing"],
        push_destination=push_destination)

    return [example_gen, statistics_gen, schema_gen, example_validator, transform, trainer,
            latest_blessed_model, evaluator, serving_check, pusher]


def create_pipeline(config: PipelineConfig, *, pipeline_root: str, data_root: PathOrParameter,
                    serving_model_dir: PathOrParameter,
                    metadata_connection_config: Optional[tfx.orchestration.metadata.ConnectionConfigType] = None,
                    beam_pipeline_args: Sequence[str] = (), enable_cache: bool = True) -> tfx.dsl.Pipeline:
    """Return the pipeline: ingest, validate, Transform, Trainer, evaluation, serving check and Pusher.

    `data_root` contains the TFRecord splits written by components.ingestion. Pushed models go to
    `<serving_model_dir>/<model_name>/<version>`. A RuntimeParameter `serving_model_dir` becomes the
    Pusher's whole `push_destination`, because a RuntimeParameter cannot be a field inside a proto,
    so its value is a PushDestination in JSON (see pipeline/kubeflow_runner.py).
    """
    if isinstance(serving_model_dir, tfx.dsl.experimental.RuntimeParameter):
        push_destination = serving_model_dir
    else:
        push_destination = tfx.proto.PushDestination(filesystem=tfx.proto.PushDestination.Filesystem(
            base_directory=os.path.join(serving_model_dir, config.model_name)))
    return tfx.dsl.Pipeline(
        pipeline_name=PIPELINE_NAME,
        pipeline_root=pipeline_root,
        components=create_components(config, data_root, push_destination),
        enable_cache=enable_cache,
        metadata_connection_config=metadata_connection_config,
        beam_pipeline_args=list(beam_pipeline_args),
    )
