"""The banking forms' conversation tests, run with the real `rasa test core`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import child_env

STORIES = Path(__file__).with_name("test_forms_stories.yml")


@pytest.mark.slow
def test_form_conversations_pass_rasa_test_core(
    fast_bot: tuple[Path, Path], tmp_path: Path
) -> None:
    """Every form, with corrections, invalid values, "no" to the summary, stop and handoff."""
    project, model = fast_bot
    out = tmp_path / "results"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "rasa",
            "test",
            "core",
            "--model",
            str(model),
            "--stories",
            str(STORIES),
            "--out",
            str(out),
            "--fail-on-prediction-errors",
        ],  # fmt: skip
        cwd=project,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=900,
    )
    failed = (out / "failed_test_stories.yml").read_text(encoding="utf-8") if out.exists() else ""
    assert result.returncode == 0, f"{failed}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    assert "None of the test stories failed" in failed
    assert "Correct:" in result.stdout + result.stderr
