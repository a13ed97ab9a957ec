"""Helpers for tests that train real models and start real servers on 127.0.0.1.

Servers run as child processes on free ports (never the default 5005/5055/8080) and are always
stopped, even when a test fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

#: Fast pipeline for tests that need *a* trained bot, not our NLU (trains in seconds).
FAST_PIPELINE: list[dict[str, object]] = [
    {"name": "WhitespaceTokenizer"},
    {"name": "CountVectorsFeaturizer"},
    {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 2, "max_ngram": 4},
    {"name": "LogisticRegressionClassifier", "max_iter": 200},
    {"name": "FallbackClassifier", "threshold": 0.15},
]

#: Banking intents kept in the tiny training set (plus all conversation intents).
TINY_BANKING_INTENTS: tuple[str, ...] = (
    "lost_or_stolen_card",
    "card_arrival",
    "activate_my_card",
    "exchange_rate",
    "top_up_limits",
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def child_env(**extra: str) -> dict[str, str]:
    env = os.environ.copy()
    env.update(
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        USE_TF="0",
        RASA_TELEMETRY_ENABLED="false",
        SQLALCHEMY_SILENCE_UBER_WARNING="1",
        OMP_WAIT_POLICY="PASSIVE",
        PYTHONPATH=str(ROOT) + os.pathsep + env.get("PYTHONPATH", ""),
    )
    env.update(extra)
    return env


def tiny_project(
    dest: Path,
    pipeline: Sequence[dict[str, object]] | None = None,
    intents: Sequence[str] = TINY_BANKING_INTENTS,
    examples_per_intent: int = 25,
) -> Path:
    """Copy the bot into `dest` with a small NLU data set (all rules, stories, domain).

    `pipeline=None` keeps the project's own config.yml pipeline.
    """
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "domain.yml", dest / "domain.yml")
    shutil.copy(ROOT / "credentials.yml", dest / "credentials.yml")
    config = yaml.safe_load((ROOT / "config.yml").read_text(encoding="utf-8"))
    if pipeline is not None:
        config["pipeline"] = list(pipeline)
    (dest / "config.yml").write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    shutil.copytree(ROOT / "data", dest / "data", dirs_exist_ok=True)
    banking = yaml.safe_load((dest / "data" / "nlu" / "banking77.yml").read_text("utf-8"))
    kept = []
    for block in banking["nlu"]:
        if block["intent"] in intents:
            lines = [line for line in block["examples"].splitlines() if line.strip()]
            block["examples"] = "\n".join(lines[:examples_per_intent]) + "\n"
            kept.append(block)
    banking["nlu"] = kept
    (dest / "data" / "nlu" / "banking77.yml").write_text(
        yaml.safe_dump(banking, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    oos = yaml.safe_load((dest / "data" / "nlu" / "out_of_scope.yml").read_text("utf-8"))
    for block in oos["nlu"]:
        block["examples"] = "\n".join(block["examples"].splitlines()[:30]) + "\n"
    (dest / "data" / "nlu" / "out_of_scope.yml").write_text(
        yaml.safe_dump(oos, sort_keys=False, allow_unicode=True), encoding="utf-8"
    )
    rules = yaml.safe_load((dest / "data" / "rules" / "faq.yml").read_text("utf-8"))
    rules["rules"] = [r for r in rules["rules"] if r["steps"][0]["intent"] in intents]
    (dest / "data" / "rules" / "faq.yml").write_text(
        yaml.safe_dump(rules, sort_keys=False), encoding="utf-8"
    )
    stories_file = dest / "data" / "stories" / "conversation.yml"
    stories = yaml.safe_load(stories_file.read_text("utf-8"))
    stories["stories"] = [
        s
        for s in stories.get("stories", [])
        if all(
            "intent" not in step or step["intent"] in set(intents) | _CONVERSATION
            for step in s["steps"]
        )
    ]
    stories_file.write_text(yaml.safe_dump(stories, sort_keys=False), encoding="utf-8")
    return dest


_CONVERSATION = {
    "greet", "goodbye", "thank", "affirm", "deny", "bot_challenge", "request_human",
    "out_of_scope", "nlu_fallback",
}  # fmt: skip


def rasa_train(project: Path, out: Path | None = None, timeout: float = 900) -> Path:
    """Run the real `rasa train` in `project`; return the model file."""
    out = out or project / "models"
    result = subprocess.run(
        [sys.executable, "-m", "rasa", "train", "--out", str(out), "--fixed-model-name", "model"],
        cwd=project,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise AssertionError(
            f"rasa train failed:\n{result.stdout[-4000:]}\n{result.stderr[-4000:]}"
        )
    return out / "model.tar.gz"


def wait_http(url: str, timeout: float, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise AssertionError(f"server for {url} exited with {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status < 500:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.3)
    raise AssertionError(f"{url} did not come up within {timeout} s")


@contextmanager
def running(
    command: Sequence[str], health_url: str, cwd: Path, env: dict[str, str], timeout: float = 300
) -> Iterator[subprocess.Popen]:
    """Start a server process, wait for its health URL, stop it (whole process group) after."""
    log_dir = Path(tempfile.gettempdir()) / "fusiondesk-test-logs"
    log_dir.mkdir(exist_ok=True)
    log = tempfile.NamedTemporaryFile("w", dir=log_dir, suffix=".log", delete=False)  # noqa: SIM115
    process = subprocess.Popen(
        list(command),
        cwd=cwd,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        try:
            wait_http(health_url, timeout, process)
        except AssertionError:
            log.flush()
            raise AssertionError(Path(log.name).read_text()[-5000:]) from None
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()


@contextmanager
def action_server(cwd: Path, port: int, env: dict[str, str] | None = None) -> Iterator[str]:
    """The real rasa_sdk action server with this project's actions; yields its webhook URL."""
    command = [sys.executable, "-m", "rasa_sdk", "--actions", "actions", "--port", str(port)]
    with running(command, f"http://127.0.0.1:{port}/health", cwd, env or child_env()):
        yield f"http://127.0.0.1:{port}/webhook"


@contextmanager
def rasa_server(
    project: Path,
    model: Path,
    port: int,
    action_url: str | None,
    tracker_db: Path | None = None,
    env: dict[str, str] | None = None,
    token: str | None = None,
    credentials: Path | None = None,
) -> Iterator[str]:
    """The real `rasa run --enable-api` on `port`; yields its base URL."""
    endpoints: dict[str, object] = {}
    if action_url:
        endpoints["action_endpoint"] = {"url": action_url}
    if tracker_db:
        endpoints["tracker_store"] = {"type": "SQL", "dialect": "sqlite", "db": str(tracker_db)}
    endpoints_file = project / f"endpoints-{port}.yml"
    endpoints_file.write_text(yaml.safe_dump(endpoints), encoding="utf-8")
    command = [
        sys.executable, "-m", "rasa", "run", "--enable-api", "--model", str(model),
        "--port", str(port), "--interface", "127.0.0.1", "--endpoints", str(endpoints_file),
        "--credentials", str(credentials or project / "credentials.yml"), "--cors", "*",
    ]  # fmt: skip
    if token:
        command.append(f"--auth-token={token}")  # a random token may begin with "-"
    with running(command, f"http://127.0.0.1:{port}/", project, env or child_env(), timeout=600):
        yield f"http://127.0.0.1:{port}"
