"""Shared fixtures: a tiny trained bot (fast pipeline) for tests that need real servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import FAST_PIPELINE, rasa_train, tiny_project


@pytest.fixture(scope="session")
def fast_bot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(project dir, model file) of the default bot on a small data set, fast pipeline."""
    project = tiny_project(tmp_path_factory.mktemp("fast-bot"), pipeline=FAST_PIPELINE)
    return project, rasa_train(project)
