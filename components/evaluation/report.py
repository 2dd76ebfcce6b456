"""Self-contained HTML evaluation report: metric tables and base64 PNG plots (matplotlib Agg)."""

import base64
import html
import io
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

import matplotlib

matplotlib.use("Agg")  # Render to files only, because the pipeline runs without a display.
import matplotlib.pyplot as plt  # noqa: E402  (must follow the backend choice)
from matplotlib.ticker import MaxNLocator  # noqa: E402
from tfx.utils import io_utils  # noqa: E402

REPORT_FILE_NAME = "report.html"

# (history section, metric key, legend label) per line of each training plot.
_LOSS_SERIES = (
    ("matching", "loss", "matching train"),
    ("matching", "val_loss", "matching validation"),
    ("generation", "loss", "generation train"),
    ("generation", "val_loss", "generation validation"),
)
_PERPLEXITY_SERIES = (
    ("generation", "perplexity", "train"),
    ("generation", "val_perplexity", "validation"),
)
_ACCURACY_SERIES = (
    ("generation", "masked_token_accuracy", "train"),
    ("generation", "val_masked_token_accuracy", "validation"),
)


def report_path(evaluation_artifact_uri: str) -> str:
    """Return the path of `report.html` inside a ModelEvaluation artifact written by FaqEvaluator."""
    return os.path.join(evaluation_artifact_uri, REPORT_FILE_NAME)


def write_report(evaluation_artifact_uri: str, metrics: Dict[str, Any],
                 training_history: Dict[str, Any]) -> str:
    """Render the report for `metrics` (the metrics.json dictionary) and return its path.

    `training_history` has the Trainer's `training_history.json` layout. Missing sections or
    keys are skipped, and a plot with no series at all is replaced by a short note.
    """
    sections = [
        _blessing_section(metrics),
        _retrieval_section(metrics),
        _generation_section(metrics),
        _training_section(training_history),
    ]
    page = ("<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\">"
            "<title>FAQ model evaluation</title>"
            "<style>body{font-family:sans-serif;max-width:960px;margin:auto}"
            "table{border-collapse:collapse}td,th{border:1px solid #999;padding:2px 8px}"
            "</style></head><body>\n<h1>FAQ model evaluation</h1>\n"
            + "\n".join(sections) + "\n</body></html>\n")
    path = report_path(evaluation_artifact_uri)
    io_utils.write_string_file(path, page)
    return path


def _blessing_section(metrics: Dict[str, Any]) -> str:
    outcome = metrics.get("blessing", {})
    return (f"<h2>Blessing</h2>\n<p>{html.escape(str(outcome.get('message', 'not decided')))}</p>"
            f"\n<p>Model: {html.escape(str(metrics.get('model_uri', '')))}<br>"
            f"Baseline model: {html.escape(str(metrics.get('baseline_model_uri') or 'none'))}</p>")


def _retrieval_section(metrics: Dict[str, Any]) -> str:
    retrieval = metrics["retrieval"]
    columns = [("model", retrieval["model"]), ("TF-IDF", retrieval["tfidf"])]
    if retrieval.get("baseline_model"):
        columns.append(("latest blessed model", retrieval["baseline_model"]))
    split = metrics["eval_split"]
    one_in_ten = metrics["one_in_ten"]

    curve = metrics["recall_curve"]
    plot = _plot_lines(
        "Recall@k on the full eval answer pool", "k", "Recall@k",
        [("model", curve["k"], curve["model"]), ("TF-IDF", curve["k"], curve["tfidf"])])
    return (f"<h2>Retrieval</h2>\n<p>{split['questions']} questions, {split['candidate_answers']} "
            f"candidate answers, {split['questions_without_candidate']} questions without a "
            f"correct candidate (counted as misses). 1-in-10: {one_in_ten['pairs']} pairs, seed "
            f"{one_in_ten['seed']}, {one_in_ten['questions_skipped']} questions skipped.</p>\n"
            + _table(columns) + "\n" + plot)


def _generation_section(metrics: Dict[str, Any]) -> str:
    generation = metrics["generation"]
    columns = [("model", generation["model"]), ("add-one unigram", generation["unigram"])]
    return (f"<h2>Generation (teacher-forced, eval pairs)</h2>\n<p>{generation['eval_target_tokens']}"
            f" eval target tokens, vocabulary size {generation['vocabulary_size']}.</p>\n"
            + _table(columns))


def _training_section(history: Dict[str, Any]) -> str:
    plots = [
        _plot_history("Training loss per epoch", "loss", history, _LOSS_SERIES),
        _plot_history("Generation perplexity per epoch", "perplexity", history,
                      _PERPLEXITY_SERIES),
        _plot_history("Generation masked token accuracy per epoch", "accuracy", history,
                      _ACCURACY_SERIES),
    ]
    return "<h2>Training</h2>\n" + "\n".join(plots)


def _plot_history(title: str, y_label: str, history: Dict[str, Any],
                  series: Sequence[Tuple[str, str, str]]) -> str:
    lines = []
    for section, key, label in series:
        values = (history.get(section) or {}).get(key)
        if values:
            lines.append((label, list(range(1, len(values) + 1)), values))
    return _plot_lines(title, "epoch", y_label, lines)


def _plot_lines(title: str, x_label: str, y_label: str,
                lines: List[Tuple[str, Sequence[float], Sequence[Optional[float]]]]) -> str:
    """Return an <img> with the lines as an embedded PNG, or a note when there is nothing to plot."""
    if not lines:
        return f"<p>{html.escape(title)}: no data.</p>"

    figure, axes = plt.subplots(figsize=(7, 4), dpi=100)
    for label, x_values, y_values in lines:
        # None (a non-finite value in metrics.json) becomes a gap in the line.
        y_float = [float("nan") if y is None else y for y in y_values]
        axes.plot(x_values, y_float, marker="o", markersize=3, label=label)
    axes.set_title(title)
    axes.set_xlabel(x_label)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))  # Epochs and k are integers.
    axes.set_ylabel(y_label)
    axes.grid(True, alpha=0.3)
    axes.legend()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", bbox_inches="tight")
    plt.close(figure)

    encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f"<img alt=\"{html.escape(title)}\" src=\"data:image/png;base64,{encoded}\">"


def _table(columns: List[Tuple[str, Dict[str, Optional[float]]]]) -> str:
    names = list(columns[0][1].keys())
    header = "".join(f"<th>{html.escape(label)}</th>" for label, _ in columns)
    rows = []
    for name in names:
        cells = "".join(f"<td>{_format_cell(values, name)}</td>" for _, values in columns)
        rows.append(f"<tr><th>{html.escape(name)}</th>{cells}</tr>")
    return f"<table><tr><th>metric</th>{header}</tr>{''.join(rows)}</table>"


def _format_cell(values: Dict[str, Optional[float]], name: str) -> str:
    if name not in values:
        return "n/a"
    if values[name] is None:
        return "non-finite"
    return f"{values[name]:.4f}"
