"""Typed configuration of the pipeline: data, preprocessing, model, training and paths.

Every field of `PipelineConfig` is also a `faq-pipeline run` flag of the same name (see
`add_config_arguments`), so the CLI never keeps a second list of defaults.
"""

import argparse
import dataclasses
import math
import os
import re
from typing import Any, Dict, List, Optional, Sequence

PIPELINE_NAME = "faq-pipeline"  # KFP names must match [a-z0-9][a-z0-9-]*.
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_SCHEMA_PATH = os.path.join(REPO_ROOT, "schemas", "schema.pbtxt")

BEAM_RUNNERS = ("DirectRunner", "DataflowRunner", "FlinkRunner", "SparkRunner")
MODEL_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _field(default: Any, help_text: str) -> Any:
    """Declare a config field whose help text `faq-pipeline run --help` shows."""
    return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass
class PipelineConfig:
    """Hyperparameters and paths of one pipeline run."""

    # Data.
    corpus: str = _field("chatterbot:english", "Built-in corpus chatterbot:<language>, used when --data is empty.")
    data: str = _field("", "CSV or JSON Lines file with `question` and `answer` fields, UTF-8.")
    eval_fraction: float = _field(0.2, "Share of questions (with all their answers) held out for evaluation.")
    max_examples: int = _field(0, "Keep only the first N pairs after reading; 0 keeps all.")
    max_field_chars: int = _field(5000, "Questions or answers longer than this many characters are skipped.")

    # Preprocessing (Transform).
    max_question_length: int = _field(24, "Question length in tokens; longer is truncated, shorter padded.")
    max_answer_length: int = _field(32, "Answer length in tokens, including the START or END token.")
    vocab_top_k: int = _field(20000, "Maximum vocabulary size, before the 4 reserved ids.")
    vocab_min_frequency: int = _field(1, "Tokens seen fewer times become OOV.")

    # Model.
    embedding_dim: int = _field(64, "Token embedding size.")
    encoder_units: int = _field(128, "Matching LSTM size, and so the size of the exported embeddings.")
    decoder_units: int = _field(128, "Generation encoder and decoder LSTM size.")
    margin: float = _field(0.5, "Ranking-loss margin, in cosine units.")

    # Training.
    epochs: int = _field(30, "Maximum epochs for each of the two models.")
    batch_size: int = _field(64, "Examples per batch; wrong answers are drawn from the same batch.")
    learning_rate: float = _field(0.002, "Adam learning rate.")
    # Off by default: on the default corpus a fixed 30 epochs gave R10@1 0.402 against 0.344 with a
    # patience of 10 on the 10 % validation questions, which are too few to pick the best epoch.
    early_stopping_patience: int = _field(
        0, "Epochs without a better validation MRR (matching) or loss (generation) before stopping; 0 = off.")
    seed: int = _field(42, "Seed of weight initialization and shuffling.")
    num_negatives: int = _field(4, "Wrong answers per question-answer pair, each its own training row.")
    validation_fraction: float = _field(
        0.1, "Share of train questions held out for validation; the eval split is only for the evaluator.")

    # Blessing (the FaqEvaluator). Recall values are fractions in [0, 1].
    min_recall_at_1: float = _field(
        0.1, "Minimum Recall@1 over all distinct eval answers for the model to be blessed.")
    min_r10_at_1_ratio_to_tfidf: float = _field(0.0, "Minimum model R10@1 / TF-IDF R10@1; 0 = off.")
    max_recall_at_1_regression: float = _field(
        0.05, "Largest allowed absolute Recall@1 drop against the latest blessed model.")
    max_r10_at_1_regression: float = _field(
        0.05, "Largest allowed absolute R10@1 drop against the latest blessed model.")

    # Paths and names.
    model_name: str = _field("faq", "Model name: the push folder <serving_model_dir>/<model_name>/<version>.")
    pipeline_root: str = _field("pipeline_root", "Folder of the pipeline's artifacts and ML Metadata.")
    serving_model_dir: str = _field("serving_model", "Folder that pushed models go to.")
    schema_path: str = _field(DEFAULT_SCHEMA_PATH, "Schema of the raw examples (text protobuf).")
    enable_cache: bool = _field(True, "Reuse the outputs of components whose inputs did not change.")

    # Beam.
    beam_runner: str = _field("DirectRunner", f"Beam runner: {', '.join(BEAM_RUNNERS)}.")
    beam_workers: int = _field(0, "DirectRunner worker processes; 0 = one per core.")

    def validate(self) -> None:
        """Raise ValueError naming the first invalid field and its valid range."""
        self._validate_numbers()
        self._validate_sizes()
        self._validate_names_and_paths()

    def _validate_numbers(self) -> None:
        for name in ("margin", "learning_rate", "eval_fraction", "validation_fraction", "min_recall_at_1",
                     "min_r10_at_1_ratio_to_tfidf", "max_recall_at_1_regression", "max_r10_at_1_regression"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name}={getattr(self, name)} is invalid: use a finite number.")
        if self.learning_rate <= 0:
            raise ValueError(f"learning_rate={self.learning_rate} is invalid: use a positive number, e.g. 0.002.")
        for name in ("min_recall_at_1", "max_recall_at_1_regression", "max_r10_at_1_regression"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)} is invalid: use a fraction between 0 and 1.")
        if self.min_r10_at_1_ratio_to_tfidf < 0:
            raise ValueError(f"min_r10_at_1_ratio_to_tfidf={self.min_r10_at_1_ratio_to_tfidf} is invalid: "
                             "use 0 (off) or a positive ratio.")
        if not 0.0 < self.validation_fraction <= 0.5:
            raise ValueError(f"validation_fraction={self.validation_fraction} is invalid: use a value above 0 and "
                             "at most 0.5, e.g. 0.1.")
        if not 0.0 < self.eval_fraction < 1.0:
            raise ValueError(f"eval_fraction={self.eval_fraction} is invalid: use a value between 0 and 1, e.g. 0.2.")

    def _validate_sizes(self) -> None:
        if self.max_examples < 0:
            raise ValueError(f"max_examples={self.max_examples} is invalid: use 0 (all pairs) or a positive number.")
        if self.beam_workers < 0:
            raise ValueError(f"beam_workers={self.beam_workers} is invalid: use 0 (one per core) or a positive number.")
        for name in ("max_question_length", "max_answer_length", "vocab_top_k", "vocab_min_frequency",
                     "embedding_dim", "encoder_units", "decoder_units", "epochs", "batch_size", "max_field_chars",
                     "num_negatives"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name}={getattr(self, name)} is invalid: use a positive integer.")
        if self.batch_size < 2:
            raise ValueError(f"batch_size={self.batch_size} is invalid: in-batch negatives need at least 2.")
        if self.margin < 0:
            raise ValueError(f"margin={self.margin} is invalid: use a non-negative cosine margin, e.g. 0.5.")
        if self.num_negatives >= self.batch_size:
            raise ValueError(f"num_negatives={self.num_negatives} is invalid with batch_size={self.batch_size}: a row "
                             "finds at most batch_size - 1 wrong answers in its batch, so use a smaller value.")
        if self.early_stopping_patience < 0:
            raise ValueError(f"early_stopping_patience={self.early_stopping_patience} is invalid: use 0 (off) or more.")

    def _validate_names_and_paths(self) -> None:
        if not MODEL_NAME_PATTERN.fullmatch(self.model_name):
            raise ValueError(f"model_name={self.model_name!r} is invalid: use letters, digits, '_', '-' and '.', "
                             "starting with a letter or digit, because it names the push folder.")
        if self.beam_runner not in BEAM_RUNNERS:
            raise ValueError(f"beam_runner={self.beam_runner!r} is invalid: use one of {', '.join(BEAM_RUNNERS)}.")

    def check_local_files(self) -> None:
        """Raise ValueError if a file of a local run is missing (not for Kubeflow, where paths are in the image)."""
        if not os.path.isfile(self.schema_path):
            raise ValueError(f"schema_path={self.schema_path!r} not found: pass an existing schema .pbtxt file.")

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
                 "learning_rate", "early_stopping_patience", "seed", "num_negatives", "validation_fraction")
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
        help_text = f"{field.metadata['help']} (default: {default!r})"
        if field.type in (bool, "bool"):
            parser.add_argument(f"--{field.name}", default=default, action=argparse.BooleanOptionalAction,
                                help=help_text)
        else:
            parser.add_argument(f"--{field.name}", default=default, type=type(default), help=help_text)


def config_from_arguments(args: argparse.Namespace) -> PipelineConfig:
    """Build and validate a PipelineConfig from parsed `add_config_arguments` flags."""
    values = {field.name: getattr(args, field.name) for field in dataclasses.fields(PipelineConfig)}
    config = PipelineConfig(**values)
    config.validate()
    return config
