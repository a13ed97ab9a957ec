"""The project as operators use it: data validates, the bot trains and holds a conversation."""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
import yaml

from tests.support import ROOT, action_server, child_env, free_port, rasa_server


def test_every_banking_intent_has_a_knowledge_base_answer() -> None:
    domain = yaml.safe_load((ROOT / "domain.yml").read_text())
    articles = yaml.safe_load((ROOT / "data/knowledge_base/banking.yml").read_text())["articles"]
    answered = {a["intent"] for a in articles}
    nlu = (ROOT / "data/nlu/banking77.yml").read_text()
    banking = {line.split(": ", 1)[1] for line in nlu.splitlines() if line.startswith("- intent: ")}
    assert len(banking) == 77
    assert banking <= set(domain["intents"])
    assert banking <= answered
    for article in articles:
        assert len(article["answer"]) > 40, article["id"]


@pytest.mark.slow
def test_rasa_data_validate() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rasa", "data", "validate", "--fail-on-warnings"],
        cwd=ROOT,
        env=child_env(),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]


def _say(base: str, sender: str, text: str) -> list[dict]:
    request = urllib.request.Request(
        f"{base}/webhooks/rest/webhook",
        data=json.dumps({"sender": sender, "message": text}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


@pytest.mark.slow
@pytest.mark.integration
def test_conversation_over_rest(fast_bot: tuple[Path, Path], tmp_path: Path) -> None:
    """greeting → a banking question answered from the knowledge base → goodbye."""
    project, model = fast_bot
    env = child_env(FUSIONDESK_DB_URL=f"sqlite:///{tmp_path / 'bot.db'}")
    with action_server(project, free_port(), env) as actions_url:
        with rasa_server(
            project, model, free_port(), actions_url, tmp_path / "bot.db", env
        ) as base:
            greeting = _say(base, "customer-1", "hello")
            assert greeting and "help" in greeting[0]["text"].lower()
            answer = _say(base, "customer-1", "I lost my card")
            assert answer, "no answer to a banking question"
            assert "freeze" in " ".join(m.get("text", "") for m in answer).lower()
            goodbye = _say(base, "customer-1", "bye")
            assert goodbye and "goodbye" in goodbye[0]["text"].lower()
