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
