"""Fine-tuning mode with the real MiniLM encoder on a handful of sentences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nlu_components.encoder import load_encoder
from nlu_components.errors import ComponentConfigError
from nlu_components.finetune import (
    FineTuneConfig,
    finetune,
    trainable_layer_names,
    training_device,
)
from nlu_components.fusion import Example, FusionClassifierModel, FusionConfig

DATA = {
    "card_arrival": ["when will my card arrive", "my card has not come yet", "card delivery is late",
                     "still waiting for my new card", "how long until the card gets here",
                     "where is my card", "my card never showed up", "is my card on its way"],
    "exchange_rate": ["what is the exchange rate", "how much is a euro in dollars", "current rate for pounds",
                      "which exchange rate do you use", "euro to yen rate please", "rate for converting money",
                      "what rate will I get abroad", "how are currencies converted"],
}  # fmt: skip


def _examples(encoder, texts: list[str]) -> list[Example]:  # type: ignore[no-untyped-def]
    encodings = encoder.encode_tokens(texts, 1, (2, 4, 6))
    return [
        Example(e.layers, [f"first={t.split()[0]}"], t.split()) for e, t in zip(encodings, texts)
    ]


@pytest.mark.slow
def test_top_layers_train_and_survive_save_and_load(tmp_path: Path) -> None:
    encoder = load_encoder(max_length=32)
    texts = [t for ts in DATA.values() for t in ts]
    labels = [label for label, ts in DATA.items() for _ in ts]
    before = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    state = finetune(
        encoder, texts, labels, FineTuneConfig(layers=1, epochs=2, batch_size=4,
                                               validation_fraction=0.25)
    )  # fmt: skip
    # the shared encoder is untouched; only the top layer's weights were fine-tuned
    for name, value in encoder.model.state_dict().items():
        assert torch.equal(value, before[name]), name
    top = set(trainable_layer_names(encoder.model, 1))
    assert set(state) == top
    assert all(".layer.5." in name for name in state)
    tuned = encoder.with_state(state)
    assert any(not torch.equal(tuned.model.state_dict()[n], before[n]) for n in top)

    # the fusion model trains on the tuned encoder's features and carries its layers
    model = FusionClassifierModel.train(_examples(tuned, texts), labels, FusionConfig())
    model.encoder_state, model.finetune_layers = state, 1
    model.save(tmp_path)
    loaded = FusionClassifierModel.load(tmp_path)
    assert loaded.finetune_layers == 1
    reloaded = encoder.with_state(loaded.encoder_state or {})
    a, b = _examples(tuned, texts[:3]), _examples(reloaded, texts[:3])
    for x, y in zip(model.predict(a), loaded.predict(b)):
        np.testing.assert_allclose(x.probabilities, y.probabilities, atol=1e-5)


def test_the_training_device_is_the_gpu_when_there_is_one_else_a_clear_error() -> None:
    has_gpu = torch.cuda.is_available()
    assert training_device("auto").type == ("cuda" if has_gpu else "cpu")
    assert training_device("cpu").type == "cpu"
    if not has_gpu:
        with pytest.raises(ComponentConfigError, match="no CUDA GPU.*auto"):
            training_device("cuda:0")
    with pytest.raises(ComponentConfigError, match="finetune `device`"):
        FineTuneConfig(device="tpu")


def test_the_classifier_passes_its_device_setting_to_fine_tuning() -> None:
    from nlu_components.fused_classifier import FusedIntentClassifier

    config = FusedIntentClassifier.get_default_config()
    assert FusedIntentClassifier.finetune_config(config).device == "auto"
    config["finetune_device"] = "cpu"
    assert FusedIntentClassifier.finetune_config(config).device == "cpu"
    config["finetune_device"] = "gpu"
    with pytest.raises(ComponentConfigError, match="cuda:N"):
        FusedIntentClassifier.finetune_config(config)
