"""Child process of `fusiondesk bench nlu`: train one pipeline with Rasa, or parse the test set.

Run as `python -m bot.bench.nlu_worker SPEC.json`. Each pipeline gets two processes, one per
`phase` of the spec: `train`, then `parse` (the trained model loaded afresh, as `rasa run`
loads it), so that each one's memory starts fresh and its peak RSS (read by the parent with
`os.wait4`) is its own. The spec (written by `bot.bench.nlu`) names the Rasa-labelled
train/test JSONL files, the Rasa config, `epochs`, the model to parse with and where to write
the result; progress goes to the parent as JSON lines on the file descriptor `progress_fd`,
everything Rasa prints goes to stdout/stderr (a log file).

Training goes through Rasa's own `rasa.model_training.train_nlu` (an NLU-only model archive);
parsing goes through `Agent.load(...).parse_message`, the code path behind `/model/parse`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import resource
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import Any

import yaml

from bot.bench.data import Example, read_examples
from bot.bench.errors import PipelineRunError
from bot.env import apply_process_env

logger = logging.getLogger(__name__)

#: How many entries of each message's intent ranking are kept.
RANKING_KEPT = 20


class _Progress:
    """JSON-lines progress events for the parent's progress bar."""

    def __init__(self, fd: int | None) -> None:
        if fd:
            # processes Rasa or a component might start must not hold the pipe open: the
            # parent waits for its end-of-file
            os.set_inheritable(fd, False)
        self._stream = os.fdopen(fd, "w", buffering=1, encoding="utf-8") if fd else None

    def emit(self, **event: Any) -> None:
        if self._stream is not None:
            self._stream.write(json.dumps(event) + "\n")

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


def wait_for_encoder_processes() -> None:
    from nlu_components.encoder import wait_for_encoder_processes as wait

    if not wait():
        logger.warning("an encoder process did not start: parsing overlaps in a thread")


def _encoder_processes_peak_rss_mb() -> float:
    """Peak resident memory of the encoder child processes the loaded model started (the
    parse-time overlap, `nlu_components.encoder_process`), read from /proc while they run."""
    from nlu_components.encoder import encoder_processes

    total = 0.0
    for process in encoder_processes():
        pid = process.pid
        if pid is None:
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text(encoding="ascii")
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) / 1024.0
    return total


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def build_training_data(examples: list[Example]) -> Any:
    """Rasa `TrainingData` with one `Message` (text, intent, entities) per example."""
    from rasa.shared.nlu.training_data.message import Message
    from rasa.shared.nlu.training_data.training_data import TrainingData

    messages = [
        Message.build(
            text=e.text,
            intent=e.intent,
            entities=[
                {"start": s.start, "end": s.end, "entity": s.entity, "value": s.value}
                for s in e.entities
            ],
        )
        for e in examples
    ]
    return TrainingData(training_examples=messages)


def _signature(training_data: Any) -> set[tuple[Any, ...]]:
    return {
        (
            m.get("text"),
            m.get("intent"),
            tuple(sorted((e["start"], e["end"], e["entity"]) for e in m.get("entities") or [])),
        )
        for m in training_data.intent_examples
    }


def write_nlu_file(training_data: Any, directory: Path) -> tuple[Path, str]:
    """Write the training data with Rasa's YAML writer (Rasa's JSON writer if YAML loses data).

    YAML marks entities inline (`[value](type)`), so a text that itself contains such markup
    would not read back as written; the round trip is checked and JSON, which stores offsets,
    is used instead when it fails.

    Returns:
        The file and its format (`yaml` or `json`).
    """
    from rasa.shared.nlu.training_data.formats.rasa import RasaWriter
    from rasa.shared.nlu.training_data.formats.rasa_yaml import RasaYAMLReader, RasaYAMLWriter

    text = RasaYAMLWriter().dumps(training_data)
    if _signature(RasaYAMLReader().reads(text)) == _signature(training_data):
        path = directory / "nlu.yml"
        path.write_text(text, encoding="utf-8")
        return path, "yaml"
    path = directory / "nlu.json"
    path.write_text(RasaWriter().dumps(training_data), encoding="utf-8")
    return path, "json"


def _component_class(name: str) -> Any:
    """The registered Rasa component class for a pipeline entry's name (None if unknown)."""
    from rasa.engine.recipes.default_recipe import DefaultV1Recipe
    from rasa.shared.exceptions import InvalidConfigException

    try:
        return DefaultV1Recipe._from_registry(name).clazz
    except (InvalidConfigException, ImportError, AttributeError):
        return None  # training reports the bad name with Rasa's own message


def shorten_epochs(
    pipeline: list[dict[str, Any]], epochs: int | None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Cap the `epochs` of every stock component that has them (explicitly or by default).

    Returns:
        The new pipeline and, for each shortened component, `{"component", "epochs", "of"}`.
    """
    if epochs is None:
        return pipeline, []
    new_pipeline, shortened = [], []
    for component in pipeline:
        component = dict(component)
        if str(component["name"]).startswith("nlu_components."):
            # FusionDesk components stop early on a held-out slice: their `epochs` is only an
            # upper bound, and capping it would not make the comparison fairer
            new_pipeline.append(component)
            continue
        full = component.get("epochs")
        if full is None:
            clazz = _component_class(str(component["name"]))
            full = clazz.get_default_config().get("epochs") if clazz is not None else None
        if isinstance(full, int) and not isinstance(full, bool) and full > epochs:
            component["epochs"] = epochs
            short_name = str(component["name"]).rsplit(".", 1)[-1]
            shortened.append({"component": short_name, "epochs": epochs, "of": full})
        new_pipeline.append(component)
    return new_pipeline, shortened


def _prediction(parsed: dict[str, Any], ms: float) -> dict[str, Any]:
    intent = parsed.get("intent") or {}
    ranking = parsed.get("intent_ranking") or ([intent] if intent.get("name") else [])
    return {
        "intent": intent.get("name"),
        "confidence": float(intent.get("confidence") or 0.0),
        "ranking": [
            [r.get("name"), float(r.get("confidence") or 0.0)] for r in ranking[:RANKING_KEPT]
        ],
        "entities": [
            {
                "start": e.get("start"),
                "end": e.get("end"),
                "entity": e.get("entity"),
                "value": e.get("value"),
                "role": e.get("role"),
                "extractor": e.get("extractor"),
            }
            for e in parsed.get("entities") or []
        ],
        "ms": ms,
    }


async def _parse_all(agent: Any, texts: list[str], progress: _Progress) -> list[dict[str, Any]]:
    await agent.parse_message("hello")  # warm-up: lazy initialisation is not per-message cost
    predictions = []
    for i, text in enumerate(texts, start=1):
        started = time.perf_counter()
        parsed = await agent.parse_message(text)
        predictions.append(_prediction(parsed, (time.perf_counter() - started) * 1000.0))
        progress.emit(event="parsed", n=i)
    return predictions


def _configure_rasa() -> None:
    """Logging, warnings and TensorFlow set up as the `rasa` command does before it runs.

    Without this, structlog prints every parse at debug level and the latency figures would
    include that logging; `LOG_LEVEL` (default INFO) applies as it does to `rasa run`.
    """
    import rasa.utils.tensorflow.environment as tf_env
    from rasa.utils.common import configure_logging_and_warnings
    from rasa.utils.log_utils import configure_structlog

    configure_logging_and_warnings(None, warn_only_once=True, filter_repeated_logs=True)
    tf_env.setup_tf_environment()
    configure_structlog(None)


def run(spec: dict[str, Any], progress: _Progress) -> dict[str, Any]:
    """Run the spec's `phase` — `train` or `parse` — and return its raw result (no metrics)."""
    _configure_rasa()
    if spec.get("phase") == "parse":
        return parse(spec, progress)
    return train(spec, progress)


def train(spec: dict[str, Any], progress: _Progress) -> dict[str, Any]:
    """Train the spec's pipeline on its training file with Rasa's own `train_nlu`."""
    import rasa
    from rasa.model_training import train_nlu

    work_dir = Path(spec["work_dir"])
    progress.emit(event="phase", phase="preparing data")
    train_examples = read_examples(Path(spec["train"]))
    training_data = build_training_data(train_examples)
    nlu_path, nlu_format = write_nlu_file(training_data, work_dir)

    config = dict(spec["config"])
    config["pipeline"], shortened = shorten_epochs(config["pipeline"], spec.get("epochs"))
    config_path = work_dir / "config.yml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")

    progress.emit(event="phase", phase="training")
    cpu_before, started = _cpu_seconds(), time.perf_counter()
    trained = train_nlu(
        config=str(config_path),
        nlu_data=str(nlu_path),
        output=str(work_dir / "models"),
        fixed_model_name=f"nlu-{spec['pipeline']}",
    )
    train_seconds = time.perf_counter() - started
    train_cpu_seconds = _cpu_seconds() - cpu_before
    model_path = getattr(trained, "model", trained)
    if not model_path or not Path(model_path).is_file():
        raise PipelineRunError(f"Rasa produced no model (train_nlu returned {trained!r})")
    if spec.get("keep_model"):
        Path(spec["keep_model"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(model_path, spec["keep_model"])
    return {
        "pipeline": spec["pipeline"],
        "rasa_version": rasa.__version__,
        "effective_config": config,
        "shortened": shortened,
        "nlu_file_format": nlu_format,
        "train_seconds": train_seconds,
        "train_cpu_seconds": train_cpu_seconds,
        "model_path": str(model_path),
    }


def parse(spec: dict[str, Any], progress: _Progress) -> dict[str, Any]:
    """Load the trained model (`spec["model"]`) and parse every test message through it.

    A process of its own, as `rasa run` serves a model: not the training process, whose
    leftover state (gigabytes of training-data objects, training thread settings) slowed
    every parse (BANKING77: p50 10.5 ms in the training process, 8.2–8.6 ms in a fresh one).
    """
    from rasa.core.agent import Agent

    model_path = spec["model"]
    test_texts = [e.text for e in read_examples(Path(spec["test"]))]
    progress.emit(event="phase", phase="loading model")
    started = time.perf_counter()
    agent = Agent.load(model_path)
    # the parse-time encoder process starts in the background: time the steady state
    wait_for_encoder_processes()
    load_seconds = time.perf_counter() - started

    progress.emit(event="phase", phase="parsing")
    predictions = asyncio.run(_parse_all(agent, test_texts, progress))
    return {
        "load_seconds": load_seconds,
        "peak_rss_encoder_process_mb": _encoder_processes_peak_rss_mb(),
        "predictions": predictions,
    }


def main(argv: list[str]) -> int:
    """Run the spec at `argv[0]`; write the result (or the error) to the spec's `result`."""
    if len(argv) != 1:
        print("usage: python -m bot.bench.nlu_worker SPEC.json", file=sys.stderr)
        return 2
    apply_process_env()
    spec = json.loads(Path(argv[0]).read_text(encoding="utf-8"))
    os.chdir(spec["work_dir"])  # Rasa writes relative paths (e.g. `.rasa/`) under the cwd
    progress = _Progress(spec.get("progress_fd"))
    result_path = Path(spec["result"])
    try:
        result = run(spec, progress)
    except Exception as e:  # noqa: BLE001 - process boundary: hand any failure to the parent
        traceback.print_exc()
        result_path.write_text(json.dumps({"error": f"{type(e).__name__}: {e}"}), "utf-8")
        return 1
    finally:
        progress.close()
    result_path.write_text(json.dumps(result), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
