"""The fusion model on synthetic data: learns, calibrates, explains, persists, flags OOS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from nlu_components.errors import ComponentConfigError, ModelLoadError
from nlu_components.fusion import Example, FusionClassifierModel, FusionConfig

DIM, SYN = 16, 6
LABELS = ["card_arrival", "lost_card", "exchange_rate", "out_of_scope"]


def make_examples(n_per_label: int, seed: int) -> tuple[list[Example], list[str]]:
    rng = np.random.default_rng(seed)
    centres = np.eye(DIM, dtype=np.float32)[: len(LABELS)] * 3
    examples, labels = [], []
    for index, label in enumerate(LABELS):
        for _ in range(n_per_label):
            length = int(rng.integers(2, 6))
            tokens = centres[index] + rng.normal(0, 0.5, (length, DIM)).astype(np.float32)
            sentence = tokens.mean(axis=0)
            syntax = np.zeros((length, SYN), np.float32)
            syntax[np.arange(length), rng.integers(0, SYN, length)] = 1
            cues = [f"root={label.split('_')[0]}", "question=mark" if rng.random() < 0.5 else "x"]
            examples.append(Example(tokens, sentence / np.linalg.norm(sentence), syntax, cues))
            labels.append(label)
    return examples, labels


@pytest.fixture(scope="module")
def trained() -> FusionClassifierModel:
    examples, labels = make_examples(30, seed=1)
    return FusionClassifierModel.train(
        examples,
        labels,
        FusionConfig(epochs=40, hidden_dim=32, attention_dim=16, learning_rate=3e-3, patience=10),
    )


def test_learns_held_out_data_with_calibrated_confidence(trained: FusionClassifierModel) -> None:
    test_x, test_y = make_examples(10, seed=2)
    preds = trained.predict(test_x)
    predicted = [trained.labels[int(p.probabilities.argmax())] for p in preds]
    assert np.mean(np.array(predicted) == np.array(test_y)) >= 0.9
    for p in preds:
        assert p.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert 0.05 <= trained.temperature <= 20
    assert trained.best_epochs >= 1


def test_explanation_has_gate_cues_and_token_weights(trained: FusionClassifierModel) -> None:
    test_x, _ = make_examples(2, seed=3)
    prediction = trained.predict(test_x[:1])[0]
    assert prediction.gate is not None and 0.0 <= prediction.gate <= 1.0
    assert prediction.cue_contributions and all(
        isinstance(c, str) for c, _ in prediction.cue_contributions
    )
    assert len(prediction.token_weights) == len(test_x[0].tokens)
    assert sum(prediction.token_weights) == pytest.approx(1.0, abs=1e-4)


def test_batch_equals_one_by_one(trained: FusionClassifierModel) -> None:
    test_x, _ = make_examples(3, seed=4)
    batch = trained.predict(test_x)
    for example, expected in zip(test_x, batch):
        single = trained.predict([example])[0]
        np.testing.assert_allclose(single.probabilities, expected.probabilities, atol=1e-5)


def test_save_load_gives_same_predictions(trained: FusionClassifierModel, tmp_path: Path) -> None:
    trained.save(tmp_path)
    loaded = FusionClassifierModel.load(tmp_path)
    test_x, _ = make_examples(3, seed=5)
    for a, b in zip(trained.predict(test_x), loaded.predict(test_x)):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
        assert a.similarity == pytest.approx(b.similarity, abs=1e-3)
    assert loaded.oos_threshold == trained.oos_threshold
    assert loaded.similarity_threshold == trained.similarity_threshold


def test_novel_input_is_out_of_scope(trained: FusionClassifierModel) -> None:
    far = np.zeros(DIM, np.float32)
    far[-1] = 1.0  # a direction no training message points to
    novel = Example(np.tile(far * 3, (3, 1)), far, np.zeros((3, SYN), np.float32), ["root=weather"])
    prediction = trained.predict([novel])[0]
    assert trained.similarity_threshold is not None
    assert prediction.similarity < trained.similarity_threshold
    assert trained.is_out_of_scope(prediction)


def test_single_view_ablations_train() -> None:
    examples, labels = make_examples(15, seed=6)
    for views in (("encoder",), ("syntax",)):
        model = FusionClassifierModel.train(
            examples, labels, FusionConfig(views=views, epochs=3, hidden_dim=16)
        )
        prediction = model.predict(examples[:1])[0]
        assert prediction.gate is None
        assert (prediction.token_weights == []) is True


def test_bad_config_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ComponentConfigError, match="views"):
        FusionConfig(views=("words",))
    with pytest.raises(ComponentConfigError, match="two intents"):
        examples, _ = make_examples(3, seed=7)
        FusionClassifierModel.train(examples[:3], ["a"] * 3, FusionConfig())
    with pytest.raises(ModelLoadError, match="rasa train"):
        FusionClassifierModel.load(tmp_path)


def test_tiny_data_trains_without_schedule_errors() -> None:
    """One optimiser step per epoch (a handful of examples) must still train."""
    examples, labels = make_examples(3, seed=8)
    model = FusionClassifierModel.train(examples, labels, FusionConfig(epochs=2, hidden_dim=16))
    assert len(model.predict(examples[:2])) == 2
