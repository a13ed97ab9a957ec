"""`python -m bot.webchat_assets [--quiet]`: install the web chat widget's browser dependencies.

The widget talks to Rasa through `socket.io-client`, pinned in `bot/webchat/package.json` and
`package-lock.json`. This step (run by `make install`, `make run` and `make test`) runs
`npm ci --omit=dev` when `bot/webchat/node_modules` is missing or was installed from another
lock file, and copies the browser bundle into `bot/webchat/static/vendor/`, where the web server
serves it beside `widget.js`. When the bundle there already matches the lock file it does
nothing (no npm, no network), so it is cheap to run every time.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from bot.webchat.errors import WebChatAssetsError

WEBCHAT_DIR = Path(__file__).resolve().parent / "webchat"

#: Files copied from `node_modules` into the served `static/vendor/` folder.
VENDOR_FILES: tuple[str, ...] = (
    "socket.io-client/dist/socket.io.min.js",
    "socket.io-client/dist/socket.io.min.js.map",
)

#: Name of the file that records which lock file the current copy came from.
STAMP_NAME = ".package-lock.sha256"


def vendor_dir(webchat_dir: Path = WEBCHAT_DIR) -> Path:
    """Where the served copies of the browser dependencies live."""
    return webchat_dir / "static" / "vendor"


def lock_digest(webchat_dir: Path = WEBCHAT_DIR) -> str:
    """SHA-256 of `package-lock.json` (what the installed copies must match)."""
    lock = webchat_dir / "package-lock.json"
    try:
        return hashlib.sha256(lock.read_bytes()).hexdigest()
    except OSError as e:
        raise WebChatAssetsError(
            f"cannot read {lock} ({e.strerror}); restore it from git (`git checkout -- {lock}`)"
        ) from e


def _stamp_matches(folder: Path, digest: str, files: tuple[str, ...]) -> bool:
    stamp = folder / STAMP_NAME
    try:
        recorded = stamp.read_text(encoding="utf-8").strip()
    except OSError:
        return False
    return recorded == digest and all((folder / f).is_file() for f in files)


def _npm_ci(webchat_dir: Path, quiet: bool, npm: str | None) -> None:
    npm = npm or shutil.which("npm")
    if npm is None:
        raise WebChatAssetsError(
            "`npm` (Node.js) was not found: the web chat widget needs it once, to install "
            "socket.io-client from the npm registry. Install Node.js 18 or newer "
            "(e.g. `apt-get install nodejs npm`, or from https://nodejs.org) and run "
            "`make install` again."
        )
    command = [npm, "ci", "--omit=dev", "--no-audit", "--no-fund"]
    if quiet:
        command.append("--loglevel=error")
    try:
        result = subprocess.run(command, cwd=webchat_dir, capture_output=quiet, text=True)
    except OSError as e:
        raise WebChatAssetsError(
            f"cannot run {npm} ({e.strerror}); check the Node.js install"
        ) from e
    if result.returncode != 0:
        detail = f":\n{(result.stderr or result.stdout or '').strip()[-2000:]}" if quiet else ""
        raise WebChatAssetsError(
            f"`npm ci` in {webchat_dir} failed (exit {result.returncode}){detail}\n"
            "Check that this machine can reach the npm registry (or its configured mirror), "
            "then run `make install` again."
        )


def install(webchat_dir: Path = WEBCHAT_DIR, quiet: bool = False, npm: str | None = None) -> bool:
    """Make `static/vendor/` hold the browser bundle of the locked socket.io-client.

    Args:
        webchat_dir: The folder with `package.json`, `package-lock.json` and `static/`.
        quiet: Print nothing unless something fails.
        npm: The npm executable (default: `npm` on PATH).

    Returns:
        True when something was installed or copied, False when all was up to date.

    Raises:
        WebChatAssetsError: npm is missing or failed, or the bundle is not where expected.
    """
    digest = lock_digest(webchat_dir)
    target = vendor_dir(webchat_dir)
    names = tuple(Path(f).name for f in VENDOR_FILES)
    if _stamp_matches(target, digest, names):
        return False
    modules = webchat_dir / "node_modules"
    if not _stamp_matches(modules, digest, VENDOR_FILES):
        if not quiet:
            print(f"Installing the web chat's socket.io client (npm ci in {webchat_dir})")
        _npm_ci(webchat_dir, quiet, npm)
        (modules / STAMP_NAME).write_text(digest + "\n", encoding="utf-8")
    target.mkdir(parents=True, exist_ok=True)
    for relative in VENDOR_FILES:
        source = modules / relative
        if not source.is_file():
            raise WebChatAssetsError(
                f"{source} is missing after `npm ci`: delete {modules} and run `make install` again"
            )
        shutil.copyfile(source, target / source.name)
    (target / STAMP_NAME).write_text(digest + "\n", encoding="utf-8")
    if not quiet:
        print(f"Web chat assets ready in {target}")
    return True


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m bot.webchat_assets", description=__doc__)
    parser.add_argument("--quiet", action="store_true", help="print nothing unless it fails")
    args = parser.parse_args(argv)
    try:
        install(WEBCHAT_DIR, quiet=args.quiet)
    except WebChatAssetsError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
