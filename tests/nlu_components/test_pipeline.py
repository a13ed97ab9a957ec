"""The fused pipeline inside real `rasa train` and a loaded Rasa model."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nlu_components.encoder import resolve_model_path
from nlu_components.errors import ModelNotFoundError
from nlu_components.spacy_parser import _entities_unread, load_parsing_pipeline
from tests.support import rasa_train, tiny_project

BAD_INPUTS = [
    "",
    "   ",
    "card " * 4000,  # 20,000 characters
    "🙂🙂🙂",
    "¿Dónde está mi tarjeta nueva?",
    "\x00\x01\x02\ufffd\ufffd binary \x7f",
]


@pytest.fixture(scope="module")
def fused_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    project = tiny_project(tmp_path_factory.mktemp("fused-bot"), examples_per_intent=20)
    return rasa_train(project)


def _parse_all(model: Path, texts: list[str]) -> list[dict]:
    from rasa.core.agent import Agent

    agent = Agent.load(str(model))

    async def run() -> list[dict]:
        return [await agent.parse_message(text) for text in texts]

    return asyncio.run(run())


@pytest.mark.slow
def test_train_parse_explain_and_reload(fused_model: Path) -> None:
    texts = [
        "I lost my card and someone may be using it",
        "hello there",
        "what is today's exchange rate?",
    ]
    first = _parse_all(fused_model, texts)
    assert first[0]["intent"]["name"] == "lost_or_stolen_card"
    # the words that pushed towards the intent are the ones that name it
    assert any({"lost", "card"} & set(w["cue"].split()) for w in first[0]["explanation"]["words"])
    assert first[1]["intent"]["name"] == "greet"
    for parsed in first:
        ranking = parsed["intent_ranking"]
        assert ranking and ranking[0]["confidence"] >= ranking[-1]["confidence"]
        assert 0.0 <= parsed["intent"]["confidence"] <= 1.0
        explanation = parsed["explanation"]
        assert 0.0 <= explanation["syntax_weight"] <= 1.0
        assert explanation["syntax_cues"] and "cue" in explanation["syntax_cues"][0]
        assert explanation["words"] and "effect" in explanation["words"][0]
        assert explanation["temperature"] > 0
    # a second load of the persisted model gives the same predictions
    second = _parse_all(fused_model, texts)
    for a, b in zip(first, second):
        assert a["intent"]["name"] == b["intent"]["name"]
        assert a["intent"]["confidence"] == pytest.approx(b["intent"]["confidence"], abs=1e-6)


@pytest.mark.slow
def test_bad_input_gets_a_prediction_never_a_crash(fused_model: Path) -> None:
    parsed = _parse_all(fused_model, BAD_INPUTS)
    assert len(parsed) == len(BAD_INPUTS)
    for result in parsed:
        assert result["intent"]["name"]
        assert 0.0 <= result["intent"]["confidence"] <= 1.0
    # empty and whitespace-only messages are not guessed at
    assert parsed[0]["intent"]["confidence"] == 0.0
    assert parsed[0]["intent"]["name"] in {"out_of_scope", "nlu_fallback"}


@pytest.mark.slow
def test_encoding_overlapped_with_the_parse_gives_the_same_result(fused_model: Path) -> None:
    """The spaCy component starts the encoder early, in a child process (the default) or a
    thread; switched off, every parse is the same."""
    import gc

    from rasa.core.agent import Agent

    from nlu_components import encoder as encoder_module
    from nlu_components import fusion

    gc.collect()  # models of earlier tests drop out of the live hooks and prefetching encoders
    agent = Agent.load(str(fused_model))
    prefetching = list(encoder_module._PREFETCHING)
    assert prefetching, "the featurizer enabled the overlap (its default)"
    processes = [e._process for e in prefetching]
    assert any(processes), "a loaded model encodes in a child process by default"
    assert all(p.wait_ready(120) for p in processes if p is not None)
    for e in prefetching:  # an encoding another test started and never collected is not ours
        with e._pending_lock:
            e._pending.clear()
    texts = ["I lost my card", "my card still has not arrived", "   ", "🙂"]

    async def run() -> list[dict]:
        return [await agent.parse_message(text) for text in texts]

    import threading

    from nlu_components.fusion import SEARCH_THREAD, FusionClassifierModel

    threads: list[str] = []
    nearest = FusionClassifierModel._nearest
    predict = FusionClassifierModel.predict
    ahead: list[bool] = []

    def recorded(self: FusionClassifierModel, examples: list) -> object:
        threads.append(threading.current_thread().name)
        return nearest(self, examples)

    def predicted(self: FusionClassifierModel, examples: list, *args: object, **kw: object) -> list:
        ahead.append(kw.get("symbolic") is not None)
        return predict(self, examples, *args, **kw)  # type: ignore[arg-type]

    FusionClassifierModel._nearest = recorded  # type: ignore[method-assign]
    FusionClassifierModel.predict = predicted  # type: ignore[method-assign]
    # a busy machine may delay the search thread: here the classifier waits for it rather
    # than doing the search itself (the product's fallback, which gives the same value)
    timeout, fusion.SEARCH_TIMEOUT = fusion.SEARCH_TIMEOUT, 60.0
    try:
        in_process = asyncio.run(run())
    finally:
        FusionClassifierModel._nearest = nearest  # type: ignore[method-assign]
        FusionClassifierModel.predict = predict  # type: ignore[method-assign]
        fusion.SEARCH_TIMEOUT = timeout
    # the symbolic view of each message with words was computed while the featurizer waited
    # for the vectors, and handed to the classifier (the blank one has nothing to classify)
    assert ahead == [True, True, False, True]
    # the classifier's novelty search ran in its search thread, started by the encoder
    # process's reader thread as the vectors arrived, for each message with words (not for
    # the blank one)
    assert threads and all(t.startswith(SEARCH_THREAD) for t in threads)
    assert all(not e._pending for e in prefetching)  # every started encoding was collected
    assert all(p.broken is None and p._next_id > 0 for p in processes if p is not None)
    settings = [e._prefetch for e in prefetching]
    from nlu_components import encoder_featurizer

    wait_work = dict(encoder_featurizer._WAIT_WORK)
    try:
        for e in prefetching:
            e._process = None
        in_thread = asyncio.run(run())
        for e in prefetching:
            e._prefetch = None
        alone = asyncio.run(run())
        encoder_featurizer._WAIT_WORK.clear()  # the classifier computes its symbolic view
        nothing_ahead = asyncio.run(run())
    finally:
        encoder_featurizer._WAIT_WORK.update(wait_work)
        for e, setting, process in zip(prefetching, settings, processes):
            e._prefetch, e._process = setting, process
    for a, b, c, d in zip(in_process, in_thread, alone, nothing_ahead):
        assert a["intent"] == b["intent"] == c["intent"] == d["intent"]
        assert a["entities"] == b["entities"] == c["entities"] == d["entities"]
        assert a["explanation"] == b["explanation"] == c["explanation"] == d["explanation"]
        assert "fusion_symbolic_ahead" not in a  # taken by the classifier, never output


def test_missing_model_directory_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelNotFoundError, match="model_path"):
        resolve_model_path(tmp_path / "no-such-model")
    with pytest.raises(ModelNotFoundError, match="install"):
        load_parsing_pipeline("en_core_web_missing_pipeline")


@pytest.mark.slow
def test_finetune_mode_trains_persists_and_reloads(tmp_path: Path) -> None:
    """`mode: finetune` inside real `rasa train`: the tuned layers travel with the model."""
    import yaml

    config = yaml.safe_load(Path("config.yml").read_text(encoding="utf-8"))
    pipeline = [dict(c) for c in config["pipeline"]]
    for component in pipeline:
        if str(component["name"]).endswith("FusedIntentClassifier"):
            component.update(mode="finetune", finetune_layers=1, finetune_epochs=1)
    project = tiny_project(tmp_path / "bot", pipeline=pipeline, examples_per_intent=12)
    model = rasa_train(project)
    texts = ["I lost my card", "hello there"]
    first, second = _parse_all(model, texts), _parse_all(model, texts)
    assert first[0]["intent"]["name"] == "lost_or_stolen_card"
    for a, b in zip(first, second):
        assert a["intent"] == b["intent"]
        assert 0.0 <= a["explanation"]["syntax_weight"] <= 1.0


FAQ_ONLY_NLU = """
version: "3.1"
nlu:
- intent: card_arrival
  examples: |
    - where is my new card?
    - my card has not arrived yet
    - when will my card come?
    - how long does card delivery take?
    - the card you sent me still is not here
    - is my card on its way?
- intent: exchange_rate
  examples: |
    - what is today's exchange rate?
    - how much is a dollar in euros?
    - which rate do you use to convert currencies?
    - what exchange rate will I get?
    - is the euro rate good today?
    - how are foreign currencies converted?
- intent: greet
  examples: |
    - hello
    - hi there
    - good morning
    - hey
    - hello, anyone there?
    - hi bot
"""


@pytest.mark.slow
def test_a_model_without_entity_annotations_parses_without_spacy_ner(tmp_path: Path) -> None:
    import subprocess
    import sys

    from tests.support import ROOT, child_env

    (tmp_path / "nlu.yml").write_text(FAQ_ONLY_NLU, encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "rasa", "train", "nlu", "--config", str(ROOT / "config.yml"),
         "--nlu", "nlu.yml", "--out", "models", "--fixed-model-name", "model"],
        cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    from rasa.core.agent import Agent

    agent = Agent.load(str(tmp_path / "models" / "model.tar.gz"))
    assert agent.processor is not None
    # the slot filler has nothing to find, so incoming messages skip spaCy's NER
    assert _entities_unread(agent.processor.model_metadata.model_id)

    async def run(texts: list[str]) -> list[dict]:
        return [await agent.parse_message(text) for text in texts]

    parsed = asyncio.run(run(["when does my card arrive?", "send 50 euros to Anna", *BAD_INPUTS]))
    assert parsed[0]["intent"]["name"] == "card_arrival"
    assert all(p["entities"] == [] for p in parsed)
    assert all(p["intent"]["name"] for p in parsed[2:] if p["text"].strip())
