"""The install step of the widget's browser dependencies (`python -m bot.webchat_assets`).

npm itself is replaced by a small script that lays out `node_modules` as `npm ci` does (and
counts its runs), so these tests need no registry; the real `npm ci` runs in `make install`.
"""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from bot import webchat_assets
from bot.webchat.errors import WebChatAssetsError
from bot.webchat_assets import VENDOR_FILES, install, lock_digest, main, vendor_dir

REAL_WEBCHAT = Path(webchat_assets.__file__).resolve().parent / "webchat"

FAKE_NPM = """#!/bin/sh
echo "$@" >> "{log}"
if [ -n "{fail}" ]; then echo "npm ERR! network unreachable" >&2; exit 1; fi
mkdir -p node_modules/socket.io-client/dist
echo "/* socket.io $(cat package-lock.json | wc -c) */" > node_modules/socket.io-client/dist/socket.io.min.js
echo "{{}}" > node_modules/socket.io-client/dist/socket.io.min.js.map
"""


@pytest.fixture
def webchat_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "webchat"
    folder.mkdir()
    for name in ("package.json", "package-lock.json"):
        shutil.copy(REAL_WEBCHAT / name, folder / name)
    return folder


def fake_npm(tmp_path: Path, fail: bool = False) -> tuple[str, Path]:
    log = tmp_path / "npm-calls.log"
    script = tmp_path / ("npm-fail" if fail else "npm")
    script.write_text(FAKE_NPM.format(log=log, fail="yes" if fail else ""), encoding="utf-8")
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return str(script), log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_the_package_pins_an_engine_io_v4_client() -> None:
    # socket.io-client 4.x speaks Engine.IO v4, the protocol of python-socketio 5.x.
    text = (REAL_WEBCHAT / "package.json").read_text()
    assert '"socket.io-client": "4.' in text
    assert (
        '"node_modules/socket.io-client": {\n      "version": "4.'
        in (REAL_WEBCHAT / "package-lock.json").read_text()
    )


def test_install_runs_npm_ci_once_then_does_nothing(webchat_dir: Path, tmp_path: Path) -> None:
    npm, log = fake_npm(tmp_path)
    assert install(webchat_dir, quiet=True, npm=npm) is True
    assert calls(log) == ["ci --omit=dev --no-audit --no-fund --loglevel=error"]
    for relative in VENDOR_FILES:
        copied = vendor_dir(webchat_dir) / Path(relative).name
        assert copied.read_bytes() == (webchat_dir / "node_modules" / relative).read_bytes()

    assert install(webchat_dir, quiet=True, npm=npm) is False
    assert len(calls(log)) == 1


def test_a_changed_lock_file_reinstalls(webchat_dir: Path, tmp_path: Path) -> None:
    npm, log = fake_npm(tmp_path)
    install(webchat_dir, quiet=True, npm=npm)
    lock = webchat_dir / "package-lock.json"
    lock.write_text(lock.read_text() + "\n", encoding="utf-8")
    assert install(webchat_dir, quiet=True, npm=npm) is True
    assert len(calls(log)) == 2
    assert (vendor_dir(webchat_dir) / ".package-lock.sha256").read_text().strip() == lock_digest(
        webchat_dir
    )


def test_a_deleted_copy_is_restored_from_node_modules_without_npm(
    webchat_dir: Path, tmp_path: Path
) -> None:
    npm, log = fake_npm(tmp_path)
    install(webchat_dir, quiet=True, npm=npm)
    (vendor_dir(webchat_dir) / "socket.io.min.js").unlink()
    assert install(webchat_dir, quiet=True, npm=npm) is True
    assert (vendor_dir(webchat_dir) / "socket.io.min.js").is_file()
    assert len(calls(log)) == 1


def test_missing_npm_is_a_clear_error(
    webchat_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(WebChatAssetsError, match=r"`npm` \(Node.js\) was not found.*make install"):
        install(webchat_dir, quiet=True)
    assert not vendor_dir(webchat_dir).exists()


def test_failing_npm_reports_its_output(webchat_dir: Path, tmp_path: Path) -> None:
    npm, _ = fake_npm(tmp_path, fail=True)
    with pytest.raises(
        WebChatAssetsError, match=r"(?s)npm ci.*failed \(exit 1\).*network unreachable"
    ):
        install(webchat_dir, quiet=True, npm=npm)


def test_main_prints_the_error_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken"
    broken.mkdir()
    monkeypatch.setattr(webchat_assets, "WEBCHAT_DIR", broken)
    assert main(["--quiet"]) == 2
    assert "package-lock.json" in capsys.readouterr().err


def test_the_repository_copy_is_installed_and_current(webchat_assets: Path) -> None:
    # The session fixture ran the real install step (npm ci when needed); again, it is a no-op.
    assert install(quiet=True) is False
    head = (webchat_assets / "socket.io.min.js").read_text(encoding="utf-8")[:200]
    assert "Socket.IO v4." in head
