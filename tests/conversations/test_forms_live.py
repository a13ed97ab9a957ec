"""The forms end to end: the default pipeline (with SemanticRoleEntityExtractor) trained by
the real `rasa train`, the real Rasa server and action server, customers typing over REST."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support import action_server, child_env, free_port, rasa_server, rasa_train, tiny_project


@pytest.fixture(scope="module")
def bot(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The default bot with its own config.yml pipeline on a small data set."""
    project = tiny_project(tmp_path_factory.mktemp("forms-bot"), examples_per_intent=20)
    return project, rasa_train(project)


def say(base: str, sender: str, text: str) -> str:
    request = urllib.request.Request(
        f"{base}/webhooks/rest/webhook",
        data=json.dumps({"sender": sender, "message": text}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        replies: list[dict[str, Any]] = json.loads(response.read())
    return " | ".join(r.get("text", "") for r in replies)


@pytest.mark.slow
@pytest.mark.integration
def test_transfer_with_a_correction_and_a_vague_top_up(
    bot: tuple[Path, Path], tmp_path: Path
) -> None:
    project, model = bot
    env = child_env(FUSIONDESK_DB_URL=f"sqlite:///{tmp_path / 'bot.db'}")
    with action_server(project, free_port(), env) as actions_url:
        with rasa_server(project, model, free_port(), actions_url, None, env) as base:
            reply = say(base, "t1", "send 50 euros to Anna tomorrow")
            assert "Please check: send 50.00 EUR to Anna, tomorrow" in reply, reply
            reply = say(base, "t1", "no, to Emma, not Anna")
            assert "Emma instead of Anna" in reply, reply
            assert "send 50.00 EUR to Emma, tomorrow" in reply, reply
            reply = say(base, "t1", "yes")
            assert "Done: 50.00 EUR to Emma, tomorrow (reference TR-" in reply, reply
            assert "simulation" in reply

            reply = say(base, "t2", "I want to top up my account")
            assert "How much would you like to top up?" in reply, reply
            reply = say(base, "t2", "fifty-ish")
            assert "exact amount" in reply, reply
            reply = say(base, "t2", "200")
            assert "How would you like to pay" in reply, reply
            reply = say(base, "t2", "with cash")
            assert "cash aren't possible" in reply, reply
            reply = say(base, "t2", "stop")
            assert "Nothing was done" in reply, reply
