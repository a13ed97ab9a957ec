"""Plots of a benchmark run (matplotlib, headless `Agg` backend): PNG files, no Rasa here."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # headless: no display on servers and in CI

import matplotlib.pyplot as plt  # noqa: E402

from bot.bench import metrics  # noqa: E402

#: Intents shown in a confusion matrix (those most involved in errors).
CONFUSION_MAX_LABELS = 15


def confusion_plot(gold: Sequence[str], pred: Sequence[str], path: Path, title: str) -> Path | None:
    """Confusion matrix of the intents most involved in errors (None when there are none)."""
    labels = metrics.most_confused_labels(gold, pred, CONFUSION_MAX_LABELS)
    if not labels:
        return None
    matrix = metrics.confusion_matrix(gold, pred, labels)
    size = max(5.0, 0.45 * len(labels) + 3)
    fig, ax = plt.subplots(figsize=(size, size))
    try:
        image = ax.imshow(matrix, cmap="Blues")
        ax.set_xticks(range(len(labels)))
        ax.set_yticks(range(len(labels)))
        ax.set_xticklabels(labels, rotation=90, fontsize=7)
        ax.set_yticklabels(labels, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("gold")
        ax.set_title(title, fontsize=9)
        peak = max((v for row in matrix for v in row), default=0)
        for i, row in enumerate(matrix):
            for j, value in enumerate(row):
                if value:
                    color = "white" if value > peak / 2 else "black"
                    ax.text(j, i, str(value), ha="center", va="center", fontsize=6, color=color)
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return path


def confidence_histogram(
    confidences: Sequence[float], correct: Sequence[bool], path: Path, title: str
) -> Path:
    """Histogram of the predicted intent's confidence, correct and wrong predictions apart."""
    bins = [i / 20 for i in range(21)]
    fig, ax = plt.subplots(figsize=(6, 4))
    try:
        ax.hist(
            [c for c, ok in zip(confidences, correct, strict=True) if ok],
            bins=bins,
            alpha=0.6,
            label=f"correct ({sum(correct)})",
            color="tab:green",
        )
        ax.hist(
            [c for c, ok in zip(confidences, correct, strict=True) if not ok],
            bins=bins,
            alpha=0.6,
            label=f"wrong ({len(correct) - sum(correct)})",
            color="tab:red",
        )
        ax.set_xlabel("confidence of the predicted intent")
        ax.set_ylabel("messages")
        ax.set_title(title, fontsize=9)
        ax.legend()
        fig.tight_layout()
        fig.savefig(path, dpi=120)
    finally:
        plt.close(fig)
    return path


def oos_roc_plot(
    curves: Mapping[str, tuple[Sequence[float], Sequence[float], float | None]], path: Path
) -> Path:
    """Out-of-scope ROC curves of several pipelines (name → (fpr, tpr, AUROC)) in one plot."""
    fig, ax = plt.subplots(figsize=(6, 5.5))
    try:
        for name, (fpr, tpr, area) in curves.items():
            label = f"{name} (AUROC {area:.3f})" if area is not None else name
            ax.plot(fpr, tpr, label=label)
        ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=0.8)
        ax.set_xlabel("false-positive rate (in-scope flagged)")
        ax.set_ylabel("true-positive rate (out-of-scope caught)")
        ax.set_title("out-of-scope detection: score 1 − top in-scope confidence", fontsize=9)
        # below the axes: long labels ("rasa-default (DIETClassifier 5 of 100 epochs)") would
        # hide the curves
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.13))
        fig.savefig(path, dpi=120, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path
