"""Typed configuration of the pipeline: data, preprocessing, model, training and paths.

Every field of `PipelineConfig` is also a `faq-pipeline run` flag of the same name (see
`add_config_arguments`), so the CLI never keeps a second list of defaults.
"""

import argparse
import dataclasses
import os
from typing import Any, Dict, List, Optional, Sequence

PIPELINE_NAME = "faq-pipeline"  # KFP names must match [a-z0-9][a-z0-9-]*.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SCHEMA_PATH = os.path.join(REPO_ROOT, "schemas", "schema.pbtxt")

BEAM_RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner")


@dataclasses.dataclass
class PipelineConfig:
    """Hyperparameters and paths of one pipeline run."""

    # Data.
    corpus: str = "chatterbot:english"  # "chatterbot:<language>" when `data` is empty.
    data: str = ""  # CSV or JSON Lines file with `question` and `answer` fields, UTF-8.
    eval_fraction: float = 0.2  # Share of questions (not pairs) held out for evaluation.
    max_examples: int = 0  # Keep only the first N pairs after reading (0 = all); for smoke runs.
    max_field_chars: int = 5000  # Longer questions or answers are skipped and counted.

    # Preprocessing (Transform).
    max_question_length: int = 24  # Tokens; longer questions are truncated, shorter padded with PAD.
    max_answer_length: int = 32  # Tokens of the answer, including the START or END token.
    vocab_top_k: int = 20000
    vocab_min_frequency: int = 1

    # Model.
    embedding_dim: int = 64
    encoder_units: int = 128  # Size of the LSTM state and of the exported embeddings.
    decoder_units: int = 128
    margin: float = 0.3  # Ranking margin in cosine units.

    # Training.
    epochs: int = 20
    batch_size: int = 64
    learning_rate: float = 0.002
    early_stopping_patience: int = 5  # Epochs without a better val_loss before stopping; 0 = off.
    seed: int = 42

    # Blessing (the FaqEvaluator). Recall values are fractions in [0, 1].
    min_recall_at_1: float = 0.1  # Over all distinct eval answers; chance is 1 / (number of answers).
    min_r10_at_1_ratio_to_tfidf: float = 0.0  # Model R10@1 / TF-IDF R10@1; 0 = off.
    max_recall_at_1_regression: float = 0.05  # Largest allowed absolute drop against the latest blessed model.
    max_r10_at_1_regression: float = 0.05

    # Paths and names.
    model_name: str = "faq"
    pipeline_root: str = "pipeline_root"
    serving_model_dir: str = "serving_model"
    schema_path: str = DEFAULT_SCHEMA_PATH
    enable_cache: bool = True

    # Beam.
    beam_runner: str = "DirectRunner"
    beam_workers: int = 0  # DirectRunner worker processes; 0 = one per core.

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field and its valid range."""
        if not 0.0 < self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction={self.eval_fraction} is invalid: use a value between 0 and 1, e.g. 0.2.")
        for name in ("max_question_length", "max_answer_length", "vocab_top_k", "vocab_min_frequency",
                     "embedding_dim", "encoder_units", "decoder_units", "epochs", "batch_size", "max_field_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} is invalid: use a positive integer.")
        if self.batch_size < 2:
            raise ValueError(f"batch_size={self.batch_size} is invalid: in-batch negatives need at least 2.")
        if self.margin < 0:
            raise ValueError(f"margin={self.margin} is invalid: use a non-negative cosine margin, e.g. 0.3.")
        if self.early_stopping_patience < 0:
            raise ValueError(f"early_stopping_patience={self.early_stopping_patience} is invalid: use 0 (off) or more.")
        if self.beam_runner not in BEAM_RUNNERS:
            raise ValueError(f"beam_runner={self.beam_runner!r} is invalid: use one of {', '.join(BEAM_RUNNERS)}.")

    def blessing_thresholds(self) -> Dict[str, float]:
        """Return the FaqEvaluator's blessing thresholds as BlessingThresholds keyword arguments."""
        names = ("min_recall_at_1", "min_r10_at_1_ratio_to_tfidf", "max_recall_at_1_regression",
                 "max_r10_at_1_regression")
        return {name: getattr(self, name) for name in names}

    def transform_config(self) -> Dict[str, Any]:
        """Return the values `preprocessing_fn` reads from Transform's custom_config."""
        return {
            "max_question_length": self.max_question_length,
            "max_answer_length": self.max_answer_length,
            "vocab_top_k": self.vocab_top_k,
            "vocab_min_frequency": self.vocab_min_frequency,
        }

    def trainer_config(self) -> Dict[str, Any]:
        """Return the hyperparameters `run_fn` reads from the Trainer's custom_config."""
        names = ("embedding_dim", "encoder_units", "decoder_units", "margin", "epochs", "batch_size",
                 "learning_rate", "early_stopping_patience", "seed")
        return {name: getattr(self, name) for name in names}


def beam_pipeline_args(runner: str = "DirectRunner", workers: int = 0,
                       extra_args: Sequence[str] = ()) -> List[str]:
    """Build Beam pipeline options for `runner`, followed by `extra_args` unchanged.

    DirectRunner runs in multi-processing mode with `workers` processes (0 = one per core).
    The other runners get only `--runner`; their options (project, region, master URL) come
    from `extra_args`.
    """
    if runner not in BEAM_RUNNERS:
        raise ValueError(f"Beam runner {runner!r} is not supported: use one of {', '.join(BEAM_RUNNERS)}.")
    args = [f"--runner={runner}"]
    if runner == "DirectRunner":
        args += ["--direct_running_mode=multi_processing", f"--direct_num_workers={workers or os.cpu_count() or 1}"]
    return args + list(extra_args)


def add_config_arguments(parser: argparse.ArgumentParser, defaults: Optional[PipelineConfig] = None) -> None:
    """Add one `--<field>` flag per PipelineConfig field, typed and defaulted from the dataclass."""
    defaults = defaults or PipelineConfig()
    for field in dataclasses.fields(PipelineConfig):
        default = getattr(defaults, field.name)
        if field.type in (bool, "bool"):
            parser.add_argument(f"--{field.name}", default=default, action=argparse.BooleanOptionalAction,
                                help=f"(default: {default})")
        else:
            parser.add_argument(f"--{field.name}", default=default, type=type(default),
                                help=f"(default: {default!r})")


def config_from_arguments(args: argparse.Namespace) -> PipelineConfig:
    """Build and validate a PipelineConfig from parsed `add_config_arguments` flags."""
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(PipelineConfig)}
    config = PipelineConfig(**values)
    config.validate()
    return config
