"""Fine-tuning mode with the real MiniLM encoder on a handful of sentences."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nlu_components.encoder import load_encoder
from nlu_components.finetune import FineTuneConfig, finetune, reencode, trainable_layer_names
from nlu_components.fusion import Example, FusionClassifierModel, FusionConfig
from nlu_components.syntax import TOKEN_FEATURE_DIM

DATA = {
    "card_arrival": ["when will my card arrive", "my card has not come yet", "card delivery is late",
                     "still waiting for my new card", "how long until the card gets here",
                     "where is my card", "my card never showed up", "is my card on its way"],
    "exchange_rate": ["what is the exchange rate", "how much is a euro in dollars", "current rate for pounds",
                      "which exchange rate do you use", "euro to yen rate please", "rate for converting money",
                      "what rate will I get abroad", "how are currencies converted"],
}  # fmt: skip


def _data() -> tuple[list[Example], list[str], list[str], list[list[tuple[int, int]]]]:
    encoder = load_encoder(max_length=32)
    texts = [t for ts in DATA.values() for t in ts]
    labels = [label for label, ts in DATA.items() for _ in ts]
    spans = []
    for text in texts:
        spans.append([])
        position = 0
        for word in text.split():
            start = text.index(word, position)
            spans[-1].append((start, start + len(word)))
            position = start + len(word)
    base = [
        Example(np.zeros((len(s), encoder.dim), np.float32), np.zeros(encoder.dim, np.float32),
                np.zeros((len(s), TOKEN_FEATURE_DIM), np.float32), [f"first={t.split()[0]}"])
        for t, s in zip(texts, spans)
    ]  # fmt: skip
    examples = reencode(encoder.model, encoder, base, texts, spans)
    return examples, labels, texts, spans


@pytest.mark.slow
def test_top_layers_train_and_survive_save_and_load(tmp_path: Path) -> None:
    encoder = load_encoder(max_length=32)
    examples, labels, texts, spans = _data()
    config = FusionConfig(
        epochs=5, hidden_dim=32, attention_dim=16, refit_on_all=False, validation_fraction=0.25
    )
    model = FusionClassifierModel.train(examples, labels, config)
    before = {k: v.clone() for k, v in encoder.model.state_dict().items()}
    model = finetune(
        model,
        encoder,
        examples,
        texts,
        spans,
        labels,
        FineTuneConfig(layers=1, epochs=1, batch_size=4),
    )
    # the shared encoder is untouched; only the top layer's weights were fine-tuned
    for name, value in encoder.model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert model.encoder_state
    top = set(trainable_layer_names(encoder.model, 1))
    assert set(model.encoder_state) == top
    assert all(".layer.5." in name for name in model.encoder_state)
    tuned = encoder.with_state(model.encoder_state)
    assert any(not torch.equal(tuned.model.state_dict()[n], before[n]) for n in top)

    model.save(tmp_path)
    loaded = FusionClassifierModel.load(tmp_path)
    assert loaded.finetune_layers == 1
    reloaded = encoder.with_state(loaded.encoder_state or {})
    a = reencode(tuned.model, tuned, examples[:3], texts[:3], spans[:3])
    b = reencode(reloaded.model, reloaded, examples[:3], texts[:3], spans[:3])
    for x, y in zip(model.predict(a), loaded.predict(b)):
        np.testing.assert_allclose(x.probabilities, y.probabilities, atol=1e-5)
