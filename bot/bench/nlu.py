"""`fusiondesk bench nlu`: train NLU pipelines with Rasa and compare them on one test set.

For each pipeline a child process (`bot.bench.nlu_worker`) trains an NLU-only model through
`rasa.model_training.train_nlu` and parses every test message through the loaded model; this
process measures its peak memory, computes the figures (`bot.bench.report`) and writes
`report.json`, `details.json`, `report.md`, per-message `predictions/*.jsonl` and `plots/`.
Each pipeline's raw result is cached under `~/.cache/fusiondesk/bench/` (or
`$FUSIONDESK_BENCH_CACHE`) by a hash of train data, test data, pipeline config and epochs.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import select
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bot.bench import metrics
from bot.bench.data import (
    Example,
    LabelMap,
    examples_digest,
    file_sha256,
    limit_per_intent,
    read_examples,
    write_examples,
)
from bot.bench.errors import BenchError, PipelineConfigError
from bot.bench.nlu_worker import shorten_epochs
from bot.bench.pipelines import PipelineSpec, resolve_pipeline
from bot.bench.report import Prediction, evaluate, label_counts, pipeline_label, render_markdown
from bot.env import PROCESS_ENV
from bot.settings import PROJECT_ROOT

logger = logging.getLogger(__name__)

#: Environment variable overriding the result cache's folder.
CACHE_ENV = "FUSIONDESK_BENCH_CACHE"
#: Bump when the worker's raw result changes shape or meaning (invalidates cached results).
HARNESS_VERSION = 2  # 2: parsing in a process of its own


def add_parser(bench_subparsers: argparse._SubParsersAction) -> None:
    """Register `fusiondesk bench nlu`."""
    parser = bench_subparsers.add_parser(
        "nlu",
        help="train NLU pipelines with Rasa and compare them on a test set",
        description=(
            "Train each pipeline through Rasa (one child process each), parse every test "
            "message through the trained model, and write report.json, report.md and plots."
        ),
    )
    parser.add_argument(
        "--train", type=Path, required=True, metavar="FILE", help="training data (JSONL)"
    )
    parser.add_argument(
        "--test", type=Path, required=True, metavar="FILE", help="test data (JSONL)"
    )
    parser.add_argument(
        "--pipeline",
        action="append",
        required=True,
        metavar="NAME",
        help="fused, encoder-only, syntax-only, fused-finetune, rasa-default, rasa-crf, "
        "or the path of a Rasa config file; repeat to compare several",
    )
    parser.add_argument(
        "--out", type=Path, required=True, metavar="DIR", help="folder for the report"
    )
    parser.add_argument(
        "--epochs",
        type=_positive_int,
        metavar="N",
        help="train components that have epochs (DIET, ResponseSelector, ...) for at most N "
        "epochs; the report labels such runs as shortened",
    )
    parser.add_argument(
        "--limit-per-intent",
        type=_positive_int,
        metavar="N",
        help="train on the first N utterances of each intent only",
    )
    parser.add_argument("--no-cache", action="store_true", help="retrain even if cached")
    parser.add_argument(
        "--config",
        type=Path,
        default=PROJECT_ROOT / "config.yml",
        metavar="FILE",
        help="config.yml that `fused` and its variants come from (default: the project's)",
    )
    parser.add_argument(
        "--keep-models", action="store_true", help="also save each trained model in OUT/models/"
    )
    parser.set_defaults(func=_cmd_nlu)


def _positive_int(raw: str) -> int:
    try:
        value = int(raw)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{raw!r} is not a whole number") from e
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} must be at least 1")
    return value


@dataclass(frozen=True)
class BenchOptions:
    """Everything one `fusiondesk bench nlu` run needs."""

    train: Path
    test: Path
    pipelines: tuple[str, ...]
    out: Path
    epochs: int | None = None
    limit_per_intent: int | None = None
    use_cache: bool = True
    config: Path = PROJECT_ROOT / "config.yml"
    keep_models: bool = False
    progress: bool = True


def _cmd_nlu(args: argparse.Namespace) -> int:
    options = BenchOptions(
        train=args.train,
        test=args.test,
        pipelines=tuple(args.pipeline),
        out=args.out,
        epochs=args.epochs,
        limit_per_intent=args.limit_per_intent,
        use_cache=not args.no_cache,
        config=args.config,
        keep_models=args.keep_models,
        progress=sys.stderr.isatty() or bool(os.environ.get("FUSIONDESK_PROGRESS")),
    )
    report = run_benchmark(options)
    print(f"report: {options.out / 'report.md'}")
    failed = [name for name, r in report.items() if "error" in r]
    if failed:
        print(f"fusiondesk: pipeline(s) failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


# --- cache --------------------------------------------------------------------------------


def cache_dir() -> Path:
    """Folder of cached pipeline results (`$FUSIONDESK_BENCH_CACHE` overrides it)."""
    override = os.environ.get(CACHE_ENV)
    return Path(override) if override else Path.home() / ".cache" / "fusiondesk" / "bench"


class ResultCache:
    """Raw pipeline results as JSON files named by their cache key."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    def get(self, key: str) -> dict[str, Any] | None:
        path = self.directory / f"{key}.json"
        try:
            loaded = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, json.JSONDecodeError) as e:
            logger.warning("ignoring unreadable cache entry %s: %s", path, e)
            return None
        return loaded if isinstance(loaded, dict) and "predictions" in loaded else None

    def put(self, key: str, result: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{key}.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(result), encoding="utf-8")
        os.replace(tmp, self.directory / f"{key}.json")  # atomic: no half-written entries


def _source_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def cache_key(spec: PipelineSpec, train_digest: str, test_digest: str, epochs: int | None) -> str:
    """Hash of everything a pipeline's result depends on.

    Besides data, config and epochs it covers the Rasa version and, for pipelines using the
    project's own components, the source of `nlu_components/` (so editing them retrains).
    """
    uses_own = any(str(c["name"]).startswith("nlu_components.") for c in spec.config["pipeline"])
    parts = {
        "harness": HARNESS_VERSION,
        "train": train_digest,
        "test": test_digest,
        "config": spec.config,
        "epochs": epochs,
        "rasa": importlib.metadata.version("rasa"),
        "components": _source_digest(PROJECT_ROOT / "nlu_components") if uses_own else None,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


# --- child processes ----------------------------------------------------------------------


class _Bar:
    """A tqdm progress bar per pipeline, or plain log lines when not on a terminal."""

    def __init__(self, name: str, total: int, enabled: bool) -> None:
        self.name = name
        self._bar = None
        if enabled:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=name, unit="msg", leave=True, dynamic_ncols=True)

    def phase(self, phase: str) -> None:
        if self._bar is not None:
            self._bar.set_description(f"{self.name}: {phase}")
        else:
            logger.info("%s: %s", self.name, phase)

    def parsed(self, n: int) -> None:
        if self._bar is not None:
            self._bar.update(n - self._bar.n)

    def tick(self) -> None:
        if self._bar is not None:
            self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


def _child_env(work_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    for key, value in PROCESS_ENV.items():
        env.setdefault(key, value)
    # the project's components, and (as `rasa` does) custom components beside the caller's cwd:
    # the child itself runs in its scratch folder
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(PROJECT_ROOT), os.getcwd(), env.get("PYTHONPATH", "")) if p
    )
    env["MPLBACKEND"] = "Agg"
    # Rasa's own training cache would let one pipeline reuse another's featurisation and make
    # train_seconds meaningless; each child trains from scratch in its own folder.
    env["RASA_MAX_CACHE_SIZE"] = "0"
    env["RASA_CACHE_DIRECTORY"] = str(work_dir / ".rasa-cache")
    return env


def _follow_progress(fd: int, bar: _Bar) -> None:
    """Read JSON-lines progress from the child until it closes the pipe."""
    pending = b""
    while True:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            bar.tick()  # keeps the elapsed time moving during long training
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        pending += chunk
        *lines, pending = pending.split(b"\n")
        for line in lines:
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            if event.get("event") == "phase":
                bar.phase(str(event.get("phase")))
            elif event.get("event") == "parsed":
                bar.parsed(int(event.get("n", 0)))


def run_worker(
    spec: PipelineSpec,
    work_dir: Path,
    train_path: Path,
    test_path: Path,
    n_test: int,
    options: BenchOptions,
    log_path: Path,
) -> dict[str, Any]:
    """Train one pipeline in a child process, then parse the test set in another.

    The parse runs in a process of its own with the trained model loaded afresh, as `rasa run`
    serves it (see `nlu_worker.parse`).

    Returns:
        The workers' raw results merged, with `peak_rss_train_mb` and `peak_rss_parse_mb` (each
        child's peak resident memory), or `{"error": ...}` when a child failed.
    """
    work_dir.mkdir(parents=True)
    common = {
        "pipeline": spec.name,
        "config": spec.config,
        "epochs": options.epochs,
        "train": str(train_path),
        "test": str(test_path),
        "work_dir": str(work_dir),
    }
    keep = (options.out / "models" / f"{spec.name}.tar.gz").resolve()
    bar = _Bar(spec.name, n_test, options.progress)
    try:
        with log_path.open("wb") as log:
            trained, train_peak = _run_child(
                {
                    **common,
                    "phase": "train",
                    "keep_model": str(keep) if options.keep_models else None,
                },
                work_dir / "train-result.json",
                bar,
                log,
            )
            if "error" in trained:
                return trained
            parsed, parse_peak = _run_child(
                {**common, "phase": "parse", "model": trained["model_path"]},
                work_dir / "parse-result.json",
                bar,
                log,
            )
    finally:
        bar.close()
    if "error" in parsed:
        return parsed
    return {
        **trained,
        **parsed,
        "peak_rss_train_mb": train_peak,
        "peak_rss_parse_mb": parse_peak,
    }


def _run_child(
    spec: dict[str, Any], result_path: Path, bar: _Bar, log: Any
) -> tuple[dict[str, Any], float]:
    """Run one worker phase; its result (or `{"error": ...}`) and its peak RSS in MB."""
    read_fd, write_fd = os.pipe()
    spec_path = result_path.with_name(f"{spec['phase']}-spec.json")
    spec_path.write_text(
        json.dumps({**spec, "result": str(result_path), "progress_fd": write_fd}),
        encoding="utf-8",
    )
    try:
        try:
            log.flush()
            child = subprocess.Popen(
                [sys.executable, "-m", "bot.bench.nlu_worker", str(spec_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,),
                env=_child_env(Path(spec["work_dir"])),
                cwd=spec["work_dir"],
            )
        finally:
            os.close(write_fd)  # only the child writes progress; EOF tells us it is done
        try:
            _follow_progress(read_fd, bar)
        except BaseException:
            child.kill()  # Ctrl-C or a bug here: never leave a training process behind
            raise
        finally:
            # wait4 reaps the child and reports its own resource usage (peak RSS in KiB)
            _, status, usage = os.wait4(child.pid, 0)
            child.returncode = os.waitstatus_to_exitcode(status)
    finally:
        os.close(read_fd)
    try:
        result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError):
        result = {"error": f"the worker exited with status {child.returncode} and no result"}
    if child.returncode != 0 and "error" not in result:
        result = {"error": f"the worker exited with status {child.returncode}"}
    return result, usage.ru_maxrss / 1024.0


# --- the run ------------------------------------------------------------------------------


def _predictions(raw: dict[str, Any], labels: LabelMap) -> list[Prediction]:
    out = []
    for p in raw["predictions"]:
        entities = []
        for e in p["entities"]:
            if (
                isinstance(e.get("start"), int)
                and isinstance(e.get("end"), int)
                and e.get("entity")
            ):
                entities.append((e["start"], e["end"], labels.entity_from_rasa(e["entity"])))
        out.append(
            Prediction(
                intent=labels.intent_from_rasa(p["intent"] or ""),
                confidence=float(p["confidence"]),
                ranking=tuple(
                    (labels.intent_from_rasa(n or ""), float(c)) for n, c in p["ranking"]
                ),
                entities=tuple(entities),
                ms=float(p["ms"]),
            )
        )
    return out


def _summary(path: Path, examples: Sequence[Example]) -> dict[str, Any]:
    return {
        "file": str(path),
        "n": len(examples),
        "n_intents": len(label_counts(examples)),
        "n_entities": sum(len(e.entities) for e in examples),
        "sha256": file_sha256(path),
    }


def _write_predictions(
    path: Path, test: Sequence[Example], predictions: Sequence[Prediction]
) -> None:
    with path.open("w", encoding="utf-8") as f:
        for example, p in zip(test, predictions, strict=True):
            row = {
                "text": example.text,
                "gold": example.intent,
                "predicted": p.intent,
                "confidence": round(p.confidence, 6),
                "correct": metrics.canonical_intent(example.intent)
                == metrics.canonical_intent(p.intent),
                "gold_entities": [[s.start, s.end, s.entity] for s in example.entities],
                "predicted_entities": [list(k) for k in p.entities],
                "ms": round(p.ms, 3),
            }
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def _plot(
    name: str, test: Sequence[Example], predictions: Sequence[Prediction], plot_dir: Path
) -> list[Path]:
    from bot.bench import plots  # matplotlib: imported only when a report is written

    gold = [e.intent for e in test]
    pred = [p.intent for p in predictions]
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
    written = [
        plots.confidence_histogram(
            [p.confidence for p in predictions],
            [
                metrics.canonical_intent(g) == metrics.canonical_intent(p)
                for g, p in zip(gold, pred, strict=True)
            ],
            plot_dir / f"{slug}-confidence.png",
            f"{name}: confidence of the predicted intent",
        )
    ]
    confusion = plots.confusion_plot(
        gold, pred, plot_dir / f"{slug}-confusion.png", f"{name}: most confused intents"
    )
    if confusion is not None:
        written.append(confusion)
    return written


def _machine() -> str:
    try:
        rasa_version = importlib.metadata.version("rasa")
    except importlib.metadata.PackageNotFoundError:
        rasa_version = "not installed"
    return (
        f"{os.cpu_count()} CPU cores, {platform.machine()}, Python {platform.python_version()}, "
        f"Rasa {rasa_version}, {time.strftime('%Y-%m-%d %H:%M')}"
    )


def run_benchmark(options: BenchOptions) -> dict[str, dict[str, Any]]:
    """Run every pipeline of `options` and write the report files.

    Returns:
        The content of `report.json`: pipeline name → flat figures (or `error`).

    Raises:
        BenchError: bad data, an unknown or unfit pipeline, or an unwritable output folder
            (all checked before anything trains).
    """
    train_all = read_examples(options.train)
    test = read_examples(options.test)
    train = limit_per_intent(train_all, options.limit_per_intent)
    specs = [resolve_pipeline(name, options.config) for name in options.pipelines]
    names = [s.name for s in specs]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise PipelineConfigError(f"pipeline(s) given twice: {', '.join(duplicates)}")
    try:
        for sub in ("logs", "plots", "predictions"):
            (options.out / sub).mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise BenchError(f"cannot create the report folder {options.out}: {e}") from e

    labels = LabelMap.build(train, test)
    rasa_train = [labels.to_rasa(e) for e in train]
    rasa_test = [labels.to_rasa(e) for e in test]
    train_digest, test_digest = examples_digest(rasa_train), examples_digest(rasa_test)
    data_summary: dict[str, Any] = {
        "train": _summary(options.train, train),
        "test": _summary(options.test, test),
        "machine": _machine(),
        "test_intents_not_in_train": sorted(
            {e.intent for e in test} - {e.intent for e in train} - metrics.OOS_LABELS
        ),
    }
    cache = ResultCache(cache_dir())
    report: dict[str, dict[str, Any]] = {}
    details: dict[str, dict[str, Any]] = {}
    plot_paths: dict[str, list[str]] = {}
    roc_curves: dict[str, tuple[list[float], list[float], float | None]] = {}

    scratch = Path(tempfile.mkdtemp(prefix="fusiondesk-bench-"))
    try:
        train_path, test_path = scratch / "train.jsonl", scratch / "test.jsonl"
        write_examples(train_path, rasa_train)
        write_examples(test_path, rasa_test)
        for spec in specs:
            # `--epochs` only changes pipelines it shortens: the others keep their cache entry
            shortens = bool(shorten_epochs(spec.config["pipeline"], options.epochs)[1])
            key = cache_key(spec, train_digest, test_digest, options.epochs if shortens else None)
            raw = cache.get(key) if options.use_cache else None
            cached = raw is not None
            log_path = options.out / "logs" / f"{spec.name}.log"
            if raw is None:
                raw = run_worker(
                    spec, scratch / spec.name, train_path, test_path, len(test), options, log_path
                )
                if "error" not in raw:
                    cache.put(key, raw)
            else:
                logger.info("%s: using the cached result %s", spec.name, key[:12])
            common = {
                "pipeline": spec.name,
                "source": spec.source,
                "epochs": options.epochs,
                "cache_key": key,
                "cached": cached,
                "n_train": len(train),
                "n_test": len(test),
                "train_file": str(options.train),
                "test_file": str(options.test),
                "train_sha256": data_summary["train"]["sha256"],
                "test_sha256": data_summary["test"]["sha256"],
                "limit_per_intent": options.limit_per_intent,
            }
            if "error" in raw:
                report[spec.name] = {"label": spec.name, "error": raw["error"],
                                     "log": str(log_path), **common}  # fmt: skip
                logger.error("%s failed: %s (log: %s)", spec.name, raw["error"], log_path)
                continue
            predictions = _predictions(raw, labels)
            flat, detail = evaluate(train, test, predictions)
            notes = []
            if raw.get("nlu_file_format") == "json":
                notes.append("training data written as Rasa JSON (YAML could not hold a text)")
            report[spec.name] = {
                "label": pipeline_label(spec.name, raw["shortened"]),
                **common,
                "epochs_shortened": bool(raw["shortened"]),
                "shortened": "; ".join(
                    f"{s['component']} {s['epochs']}/{s['of']}" for s in raw["shortened"]
                ),
                "notes": "; ".join(notes),
                **flat,
                "train_seconds": raw["train_seconds"],
                "train_cpu_seconds": raw["train_cpu_seconds"],
                "load_seconds": raw["load_seconds"],
                # the larger of training's peak and serving's: the parse process's own plus its
                # encoder child process's (parse-time overlap)
                "peak_rss_mb": max(
                    raw["peak_rss_train_mb"],
                    raw["peak_rss_parse_mb"] + raw.get("peak_rss_encoder_process_mb", 0.0),
                ),
                "peak_rss_train_mb": raw["peak_rss_train_mb"],
                "peak_rss_parse_mb": raw["peak_rss_parse_mb"],
                "peak_rss_encoder_process_mb": raw.get("peak_rss_encoder_process_mb", 0.0),
                "rasa_version": raw["rasa_version"],
            }
            details[spec.name] = {**detail, "effective_config": raw["effective_config"]}
            _write_predictions(
                options.out / "predictions" / f"{spec.name}.jsonl", test, predictions
            )
            written = _plot(spec.name, test, predictions, options.out / "plots")
            plot_paths[spec.name] = [str(p.relative_to(options.out)) for p in written]
            if "oos_auroc" in flat:
                positives = [metrics.is_out_of_scope(e.intent) for e in test]
                fpr, tpr = metrics.roc_curve(positives, [p.oos_score for p in predictions])
                roc_curves[report[spec.name]["label"]] = (fpr, tpr, flat["oos_auroc"])
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    if roc_curves:
        from bot.bench import plots

        roc = plots.oos_roc_plot(roc_curves, options.out / "plots" / "oos-roc.png")
        plot_paths["all"] = [str(roc.relative_to(options.out))]
    (options.out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (options.out / "details.json").write_text(
        json.dumps({"data": data_summary, "pipelines": details}, indent=2), encoding="utf-8"
    )
    (options.out / "report.md").write_text(
        render_markdown(report, details, plot_paths, data_summary), encoding="utf-8"
    )
    return report
