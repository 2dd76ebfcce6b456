"""Run the pipeline on this machine: ingestion, then BeamDagRunner with ML Metadata in SQLite."""

import dataclasses
import os
import time
from typing import List, Optional, Sequence

from absl import logging
from tensorflow.python.saved_model import loader_impl  # Reads signature names without loading the graph.
from tfx import v1 as tfx
from tfx.orchestration.beam import beam_dag_runner

from components import evaluation
from components import ingestion
from pipeline import pipeline as faq_pipeline
from pipeline import run_summary
from pipeline.configs import PipelineConfig, beam_pipeline_args

METADATA_FILE = "metadata.sqlite"
DATA_FOLDER = "data"  # Under the pipeline root: one sub-folder per ingested corpus fingerprint.


@dataclasses.dataclass
class LocalRunResult:
    """Outcome of one local run: ingestion counts, per-component states, and the push."""

    ingestion: ingestion.IngestionReport
    components: List[run_summary.ComponentRun]
    push: Optional[run_summary.PushResult]
    signature_names: List[str]
    evaluation: Optional[run_summary.Blessing]
    serving_check: Optional[run_summary.Blessing]
    evaluation_uri: Optional[str]
    report_path: Optional[str]
    metadata_path: str
    seconds: float


def signature_names(saved_model_dir: str) -> List[str]:
    """Return the serving signature names, without internal entries such as `__saved_model_init_op`."""
    saved_model = loader_impl.parse_saved_model(saved_model_dir)
    return sorted(name for name in saved_model.meta_graphs[0].signature_def if not name.startswith("__"))


def run_local(config: PipelineConfig, extra_beam_args: Sequence[str] = ()) -> LocalRunResult:
    """Ingest the configured data and run the whole pipeline with BeamDagRunner."""
    started = time.time()
    pipeline_root = os.path.abspath(config.pipeline_root)
    serving_model_dir = os.path.abspath(config.serving_model_dir)
    metadata_path = os.path.join(pipeline_root, METADATA_FILE)
    os.makedirs(pipeline_root, exist_ok=True)

    ingestion_report = ingestion.ingest(config.corpus, config.data, config.eval_fraction,
                              os.path.join(pipeline_root, DATA_FOLDER), config.max_examples, config.max_field_chars)
    pipeline = faq_pipeline.create_pipeline(
        config,
        pipeline_root=pipeline_root,
        data_root=ingestion_report.data_root,
        serving_model_dir=serving_model_dir,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(metadata_path),
        beam_pipeline_args=beam_pipeline_args(config.beam_runner, config.beam_workers, extra_beam_args),
        enable_cache=config.enable_cache)

    logging.info("Running pipeline %s with BeamDagRunner; root %s", pipeline.pipeline_info.pipeline_name,
                 pipeline_root)
    beam_dag_runner.BeamDagRunner().run(pipeline)

    store = run_summary.open_store(metadata_path)
    components = run_summary.component_runs(store, since_ms=int(started * 1000))
    push = run_summary.latest_push(store)
    names = signature_names(push.destination) if push and push.pushed else []
    evaluation_uri = run_summary.latest_artifact_uri(store, "ModelEvaluation")
    report = evaluation.report_path(evaluation_uri) if evaluation_uri else None
    return LocalRunResult(ingestion_report, components, push, names,
                          run_summary.latest_blessing(store, "ModelBlessing"),
                          run_summary.latest_blessing(store, "InfraBlessing"),
                          evaluation_uri, report, metadata_path, time.time() - started)


def format_result(result: LocalRunResult) -> str:
    """Describe a finished run for the terminal: components, push outcome and signatures."""
    lines = [result.ingestion.summary(), "Components:"]
    for component in result.components:
        lines.append(f"  {component.component:<20} {component.state:<10} {component.seconds:7.1f} s")
    if result.evaluation is not None:
        lines.append(f"Evaluation: {result.evaluation.message or ('blessed' if result.evaluation.blessed else 'NOT blessed')}")
    if result.serving_check is not None:
        lines.append(f"Serving check: {'passed' if result.serving_check.blessed else 'FAILED (see the ServingCheck log above)'}")
    if result.push is None:
        lines.append("No Pusher output was recorded.")
    elif result.push.pushed:
        lines.append(f"Pushed model: {result.push.destination}")
        lines.append(f"Signatures: {', '.join(result.signature_names)}")
    else:
        lines.append("The model was NOT pushed, because the evaluation or the serving check did not bless it "
                     "(see above). Thresholds are flags: see `faq-pipeline run --help`.")
    if result.report_path:
        lines.append(f"Evaluation report: {result.report_path}")
    lines.append(f"Total: {result.seconds:.1f} s; metadata: {result.metadata_path}")
    return "\n".join(lines)
