"""Configuration errors of `TransformerEncoderFeaturizer` name the key to fix."""

from __future__ import annotations

import pytest

from nlu_components.encoder_featurizer import TransformerEncoderFeaturizer
from nlu_components.errors import ComponentConfigError


def _config(**changes: object) -> dict:
    return {**TransformerEncoderFeaturizer.get_default_config(), **changes}


def test_defaults_are_valid() -> None:
    TransformerEncoderFeaturizer.validate_config(_config())
    assert _config()["precision"] == "auto" and _config()["pooling_layers"] == [2, 4, 6]


@pytest.mark.parametrize(
    ("changes", "key"),
    [
        ({"precision": "fp8"}, "precision"),
        ({"precision": None}, "precision"),
        ({"pooling_layers": "2,4,6"}, "pooling_layers"),
        ({"pooling_layers": [2, -1]}, "pooling_layers"),
        ({"max_length": 0}, "max_length"),
        ({"inference_threads": "1"}, "inference_threads"),
        ({"overlap_with_parser": "yes"}, "overlap_with_parser"),
        ({"overlap_worker": "gpu"}, "overlap_worker"),
        ({"overlap_worker": None}, "overlap_worker"),
        ({"gil_switch_interval_ms": 0}, "gil_switch_interval_ms"),
        ({"gil_switch_interval_ms": "fast"}, "gil_switch_interval_ms"),
    ],
)
def test_bad_values_name_the_key(changes: dict, key: str) -> None:
    with pytest.raises(ComponentConfigError, match=key):
        TransformerEncoderFeaturizer.validate_config(_config(**changes))


class _Waiter:
    def __init__(self, fail: bool = False) -> None:
        self.seen: list[list[str]] = []
        self.fail = fail

    def work(self, messages: list) -> None:
        if self.fail:
            raise RuntimeError("boom")
        self.seen.append([m.get("text") for m in messages])


def test_wait_work_runs_per_model_is_held_weakly_and_never_fails_the_parse(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from rasa.shared.nlu.training_data.message import Message

    from nlu_components import encoder_featurizer as ef

    first, second, failing = _Waiter(), _Waiter(), _Waiter(fail=True)
    ef.add_wait_work("model-a", first.work)
    ef.add_wait_work("model-a", first.work)  # registered once
    ef.add_wait_work("model-b", second.work)
    ef.add_wait_work("model-b", failing.work)
    ef.add_wait_work(None, first.work)  # a training graph registers nothing
    try:
        messages = [Message(data={"text": "hello"})]
        ef.run_wait_work(messages, "model-a")
        ef.run_wait_work(messages, None)
        assert first.seen == [["hello"]] and second.seen == []
        with caplog.at_level("ERROR"):
            ef.run_wait_work(messages, "model-b")  # the failing one is logged, not raised
        assert second.seen == [["hello"]]
        assert "work ahead of the encoder's vectors failed" in caplog.text
        del first  # a model no longer used drops out
        ef.run_wait_work(messages, "model-a")
        ef.add_wait_work("model-a", second.work)
        assert len(ef._WAIT_WORK["model-a"]) == 1
    finally:
        ef._WAIT_WORK.pop("model-a", None)
        ef._WAIT_WORK.pop("model-b", None)
