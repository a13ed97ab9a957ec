"""The fusion model on synthetic data: learns, gates, calibrates, explains, persists, flags OOS."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from nlu_components.errors import ComponentConfigError, ModelLoadError
from nlu_components.fusion import Example, FusionClassifierModel, FusionConfig, SymbolicView
from nlu_components.nearest import KERNELS, RowSearch
from nlu_components.symbolic import SymbolicVocabulary, message_words, symbolic_terms

DIM = 16
LABELS = ["card_arrival", "lost_card", "exchange_rate", "out_of_scope"]
WORDS = {
    "card_arrival": ["when", "will", "my", "card", "arrive"],
    "lost_card": ["i", "lost", "my", "card"],
    "exchange_rate": ["what", "is", "the", "exchange", "rate"],
    "out_of_scope": ["tell", "me", "a", "joke"],
}


def make_examples(n_per_label: int, seed: int) -> tuple[list[Example], list[str]]:
    rng = np.random.default_rng(seed)
    centres = np.eye(DIM, dtype=np.float32)[: len(LABELS)] * 3
    examples, labels = [], []
    for index, label in enumerate(LABELS):
        for _ in range(n_per_label):
            sentence = centres[index] + rng.normal(0, 0.6, DIM).astype(np.float32)
            cues = [f"root={label.split('_')[0]}", "question=mark" if rng.random() < 0.5 else "x"]
            words = [w for w in WORDS[label] if rng.random() < 0.8]
            examples.append(Example(sentence / np.linalg.norm(sentence), cues, words))
            labels.append(label)
    return examples, labels


@pytest.fixture(scope="module")
def trained() -> FusionClassifierModel:
    examples, labels = make_examples(30, seed=1)
    return FusionClassifierModel.train(examples, labels, FusionConfig(max_iterations=100))


def test_learns_held_out_data_with_calibrated_confidence(trained: FusionClassifierModel) -> None:
    test_x, test_y = make_examples(10, seed=2)
    preds = trained.predict(test_x)
    predicted = [trained.labels[int(p.probabilities.argmax())] for p in preds]
    assert np.mean(np.array(predicted) == np.array(test_y)) >= 0.9
    for p in preds:
        assert p.probabilities.sum() == pytest.approx(1.0, abs=1e-5)
    assert 0.05 <= trained.temperature <= 20
    assert trained.train_iterations >= 1
    assert trained.validation_accuracy is not None and trained.validation_accuracy >= 0.75


def test_symbolic_view_alone_decides_when_the_encoder_cannot() -> None:
    """Encoder vectors carry no signal here; the parse cues and words must carry the decision."""
    examples, labels = make_examples(20, seed=3)
    rng = np.random.default_rng(0)
    for e in examples:
        e.sentence = rng.normal(0, 1, DIM).astype(np.float32)
    model = FusionClassifierModel.train(examples, labels, FusionConfig(max_iterations=100))
    test_x, test_y = make_examples(5, seed=4)
    for e in test_x:
        e.sentence = rng.normal(0, 1, DIM).astype(np.float32)
    preds = model.predict(test_x)
    predicted = [model.labels[int(p.probabilities.argmax())] for p in preds]
    assert np.mean(np.array(predicted) == np.array(test_y)) >= 0.9


def test_explanation_has_gate_and_feature_effects(trained: FusionClassifierModel) -> None:
    test_x, _ = make_examples(2, seed=3)
    prediction = trained.predict(test_x[:1])[0]
    assert prediction.gate is not None and 0.0 < prediction.gate < 1.0
    names = [c for c, _ in prediction.cue_contributions]
    assert names and all(n.startswith(("syntax:", "word:")) for n in names)
    # the parse cue naming the intent's predicate pushes towards the predicted intent
    effects = dict(prediction.cue_contributions)
    label = trained.labels[int(prediction.probabilities.argmax())]
    assert effects[f"syntax:root={label.split('_')[0]}"] > 0
    # strongest first
    magnitudes = [abs(e) for _, e in prediction.cue_contributions]
    assert magnitudes == sorted(magnitudes, reverse=True)


def test_batch_equals_one_by_one(trained: FusionClassifierModel) -> None:
    test_x, _ = make_examples(3, seed=4)
    batch = trained.predict(test_x)
    for example, expected in zip(test_x, batch):
        single = trained.predict([example])[0]
        np.testing.assert_allclose(single.probabilities, expected.probabilities, atol=1e-5)
        assert single.gate == pytest.approx(expected.gate, abs=1e-6)


@pytest.mark.parametrize("name", ["trained", "large"])
def test_save_load_gives_same_predictions(
    name: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    trained = request.getfixturevalue(name)
    trained.save(tmp_path)
    loaded = FusionClassifierModel.load(tmp_path)
    test_x, _ = make_examples(3, seed=5)
    for a, b in zip(trained.predict(test_x), loaded.predict(test_x)):
        np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-6)
        assert a.similarity == pytest.approx(b.similarity, abs=1e-3)
        assert a.cue_contributions == pytest.approx(b.cue_contributions) or [
            n for n, _ in a.cue_contributions
        ] == [n for n, _ in b.cue_contributions]
    assert loaded.oos_threshold == trained.oos_threshold
    assert loaded.similarity_threshold == trained.similarity_threshold
    assert loaded.typicality_threshold == trained.typicality_threshold
    np.testing.assert_array_equal(loaded.in_scope_confidences, trained.in_scope_confidences)
    for a, b in zip(trained.predict(test_x), loaded.predict(test_x)):
        assert (a.typicality is None) == (b.typicality is None)
        assert a.typicality == pytest.approx(b.typicality, abs=0.05)
        assert trained.is_out_of_scope(a) == loaded.is_out_of_scope(b)
    assert loaded.vocabulary.terms == trained.vocabulary.terms


@pytest.fixture(scope="module")
def large() -> FusionClassifierModel:
    """Enough held-out messages (70 per intent) for the joint rule's 1 % tail."""
    examples, labels = make_examples(700, seed=11)
    return FusionClassifierModel.train(examples, labels, FusionConfig(max_iterations=50))


def test_small_data_keeps_two_thresholds(trained: FusionClassifierModel) -> None:
    # 9 held-out in-scope messages cannot locate a 1 % tail: the two thresholds decide
    assert trained.typicality_threshold is None and not trained.joint_out_of_scope
    assert trained.oos_threshold is not None and trained.similarity_threshold is not None
    far = np.zeros(DIM, np.float32)
    far[-1] = 1.0
    assert trained.is_out_of_scope(trained.predict([Example(far, [], ["weather"])])[0])


def test_novel_input_is_out_of_scope(large: FusionClassifierModel) -> None:
    trained = large
    far = np.zeros(DIM, np.float32)
    far[-1] = 1.0  # a direction no training message points to
    novel = Example(far, ["root=weather"], ["weather", "today"])
    prediction = trained.predict([novel])[0]
    assert trained.joint_out_of_scope and trained.typicality_threshold is not None
    assert prediction.typicality is not None
    assert prediction.typicality < trained.typicality_threshold
    assert trained.is_out_of_scope(prediction)
    # the old two-threshold rule agrees on something this far from every request
    assert trained.similarity_threshold is not None
    assert prediction.similarity < trained.similarity_threshold


def test_typicality_rejects_the_calibrated_share_of_in_scope_requests(
    large: FusionClassifierModel,
) -> None:
    trained = large
    test_x, test_y = make_examples(300, seed=12)
    in_scope = [x for x, y in zip(test_x, test_y) if y != "out_of_scope"]
    preds = trained.predict(in_scope, explain=False)
    typicality = np.array([p.typicality for p in preds])
    assert ((0.0 <= typicality) & (typicality <= 1.0)).all()
    # calibrated to reject 1 % of held-out in-scope requests: about that share of new ones
    assert 0.0 < np.mean([trained.is_out_of_scope(p) for p in preds]) <= 0.03
    # less confident and less similar is never more typical
    order = np.argsort(typicality)
    low, high = preds[order[0]], preds[order[-1]]
    assert low.probabilities.max() <= high.probabilities.max() or low.similarity <= high.similarity


def test_fixed_thresholds_replace_the_joint_rule() -> None:
    examples, labels = make_examples(700, seed=11)  # enough for the joint rule, as `large`
    model = FusionClassifierModel.train(
        examples, labels, FusionConfig(max_iterations=50, oos_similarity_threshold=0.99)
    )
    assert model.typicality_threshold is not None and not model.joint_out_of_scope
    fresh, _ = make_examples(5, seed=14)
    predictions = model.predict(fresh, explain=False)
    flagged = [
        p.similarity < 0.99 or p.probabilities.max() < model.oos_threshold for p in predictions
    ]
    assert any(flagged)
    assert [model.is_out_of_scope(p) for p in predictions] == flagged


def test_model_saved_without_typicality_keeps_two_thresholds(
    large: FusionClassifierModel, tmp_path: Path
) -> None:
    """A model trained before the joint rule existed loads and decides as it used to."""
    import json

    trained = large

    from safetensors.torch import load_file, save_file

    trained.save(tmp_path)
    meta_path = tmp_path / FusionClassifierModel.META_FILE
    meta = json.loads(meta_path.read_text())
    del meta["typicality_threshold"]
    meta_path.write_text(json.dumps(meta))
    weights = tmp_path / FusionClassifierModel.WEIGHTS_FILE
    state = {k: v for k, v in load_file(str(weights)).items() if "in_scope" not in k}
    save_file(state, str(weights))
    old = FusionClassifierModel.load(tmp_path)
    assert old.typicality_threshold is None and not old.joint_out_of_scope
    far = np.zeros(DIM, np.float32)
    far[-1] = 1.0
    prediction = old.predict([Example(far, [], ["weather"])])[0]
    assert prediction.typicality is None
    assert old.is_out_of_scope(prediction)


def test_single_view_ablations_train() -> None:
    examples, labels = make_examples(15, seed=6)
    for views in (("encoder",), ("syntax",)):
        model = FusionClassifierModel.train(examples, labels, FusionConfig(views=views))
        prediction = model.predict(examples[:1])[0]
        assert prediction.gate is None
        assert model.labels[int(prediction.probabilities.argmax())] == labels[0]
        if views == ("encoder",):
            assert prediction.cue_contributions == [] and model.vocabulary.size == 0


def test_bad_config_and_missing_files(tmp_path: Path) -> None:
    with pytest.raises(ComponentConfigError, match="views"):
        FusionConfig(views=("words",))
    with pytest.raises(ComponentConfigError, match="group weights"):
        FusionConfig(syntax_group_weight=0, word_group_weight=0, char_group_weight=0)
    with pytest.raises(ComponentConfigError, match="two intents"):
        examples, _ = make_examples(3, seed=7)
        FusionClassifierModel.train(examples[:3], ["a"] * 3, FusionConfig())
    with pytest.raises(ModelLoadError, match="rasa train"):
        FusionClassifierModel.load(tmp_path)


def test_wrong_encoder_width_is_a_clear_error(trained: FusionClassifierModel) -> None:
    with pytest.raises(ComponentConfigError, match="retrain"):
        trained.predict([Example(np.ones(DIM + 3, np.float32), [], [])])


def test_tiny_data_and_empty_inputs() -> None:
    examples, labels = make_examples(3, seed=8)
    model = FusionClassifierModel.train(examples, labels, FusionConfig())
    predictions = model.predict([Example(np.zeros(DIM, np.float32), [], []), examples[0]])
    assert len(predictions) == 2
    assert all(np.isfinite(p.probabilities).all() for p in predictions)


def test_symbolic_terms_and_vocabulary_round_trip() -> None:
    terms = symbolic_terms(["root=lose"], message_words(["I", "lost", "my", "card", "?"]), (2, 3))
    assert terms["word"] == ["i", "lost", "my", "card", "i lost", "lost my", "my card"]
    assert " l" in terms["char"] and "st " in terms["char"] and "?" not in "".join(terms["char"])
    vocab = SymbolicVocabulary(min_count={"syntax": 1, "word": 1, "char": 1}).fit([terms, terms])
    matrix = vocab.transform([terms, {"word": ["unseen"]}])
    assert matrix.shape == (2, vocab.size) and matrix[1].nnz == 0
    # each group is L2-normalised, then weighted by 0.5: three groups → norm² = 3 · 0.25
    assert float(matrix[0].multiply(matrix[0]).sum()) == pytest.approx(0.75, rel=1e-5)
    again = SymbolicVocabulary.from_json(vocab.to_json())
    assert (again.transform([terms]) != matrix[0]).nnz == 0
    # a 20,000-character message stays bounded
    huge = symbolic_terms([], ["x" * 20_000] * 5_000)
    assert len(huge["word"]) < 300 and max(len(t) for t in huge["word"]) <= 81


@pytest.mark.parametrize("kernel", KERNELS)
def test_every_search_kernel_gives_the_float32_nearest_neighbour(
    kernel: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whichever kernel the load-time timing picks (the bfloat16 one only chooses candidates),
    novelty is the float32 cosine of the nearest row, one by one and in a batch."""
    import nlu_components.fusion as fusion

    rng = np.random.default_rng(7)
    reference = rng.normal(size=(3000, DIM)).astype(np.float32)
    reference /= np.linalg.norm(reference, axis=1, keepdims=True)
    model = FusionClassifierModel.train(*make_examples(5, seed=8), FusionConfig(max_iterations=5))
    model.reference = reference
    queries, _ = make_examples(4, seed=9)
    expected = (reference @ np.stack([e.sentence for e in queries]).T).max(axis=0)

    monkeypatch.setattr(
        fusion, "RowSearch", lambda rows, rescore, bf16: RowSearch(rows, rescore, kernel=kernel)
    )
    assert model._search().kernel == kernel
    batch = model._similarity(queries)
    single = np.array([model._similarity([q])[0] for q in queries])
    np.testing.assert_allclose(batch, expected, atol=1e-6)
    np.testing.assert_allclose(single, expected, atol=1e-6)


def test_numpy_fusion_for_prediction_equals_the_torch_fusion_training_uses(
    trained: FusionClassifierModel,
) -> None:
    examples, _ = make_examples(6, seed=12)
    lm, lt = trained._view_logits(examples)
    fused, alpha = trained._fused(lm, lt)
    expected, expected_alpha = trained._combine(lm, lt)
    assert alpha is not None and expected_alpha is not None
    np.testing.assert_allclose(fused, expected.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(alpha, expected_alpha.numpy(), rtol=1e-5, atol=1e-6)
    probabilities = np.stack([p.probabilities for p in trained.predict(examples)])
    np.testing.assert_allclose(
        probabilities,
        torch.softmax(expected / trained.temperature, -1).numpy(),
        rtol=1e-5,
        atol=1e-6,
    )


def test_a_similarity_remembered_ahead_is_what_predict_would_compute(
    trained: FusionClassifierModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The live hook computes a message's novelty while it is parsed; predict then takes it."""
    import nlu_components.fusion as fusion

    examples, _ = make_examples(3, seed=13)
    computed = [trained.predict([e], explain=False)[0].similarity for e in examples]
    futures = [trained.remember_similarity(e.sentence) for e in examples]
    assert all(f is not None for f in futures) and len(trained._precomputed) == len(examples)
    for f in futures:
        f.result(timeout=10)  # type: ignore[union-attr]
    calls: list[int] = []
    nearest = FusionClassifierModel._nearest
    monkeypatch.setattr(
        FusionClassifierModel,
        "_nearest",
        lambda self, ex: calls.append(len(ex)) or nearest(self, ex),
    )
    taken = [trained.predict([e], explain=False)[0].similarity for e in examples]
    assert taken == computed and calls == []  # the very same values, none recomputed
    assert not trained._precomputed  # each taken once
    trained.predict([examples[0]], explain=False)
    assert calls == [1]  # nothing left for it: computed as usual
    # another vector (a fine-tuned encoder's, another model's) never gets a stored value
    other = trained.remember_similarity(examples[0].sentence + 0.5)
    other.result(timeout=10)  # type: ignore[union-attr]
    trained.predict([examples[0]], explain=False)
    assert calls == [1, 1, 1]
    assert trained.remember_similarity(np.ones(DIM + 1, np.float32)) is None  # wrong width
    monkeypatch.setattr(fusion, "PRECOMPUTED_KEPT", 2)
    for e in examples:
        trained.remember_similarity(e.sentence)
    assert len(trained._precomputed) == 2
    fusion._search_pool().submit(lambda: None).result()  # one thread, in order: all done
    trained._precomputed.clear()


def test_predict_waits_for_a_search_started_ahead_and_never_hangs_on_it(
    trained: FusionClassifierModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The early search runs in its own thread; predict takes its value when it is ready."""
    import threading
    import time

    import nlu_components.fusion as fusion

    examples, _ = make_examples(2, seed=21)
    expected = trained.predict([examples[0]], explain=False)[0].similarity
    fusion._search_pool().submit(lambda: None).result()  # earlier tests' searches are done
    ran_in: list[str] = []
    nearest = FusionClassifierModel._nearest

    def slow(self: FusionClassifierModel, vector: np.ndarray) -> float:
        ran_in.append(threading.current_thread().name)
        time.sleep(0.3)
        return float(nearest(self, [fusion.Example(vector)])[0])

    monkeypatch.setattr(FusionClassifierModel, "_nearest_one", slow)
    started = time.perf_counter()
    future = trained.remember_similarity(examples[0].sentence)
    assert future is not None and time.perf_counter() - started < 0.2  # the caller goes on
    calls: list[int] = []
    monkeypatch.setattr(
        FusionClassifierModel, "_nearest", lambda self, ex: calls.append(1) or nearest(self, ex)
    )
    assert trained.predict([examples[0]], explain=False)[0].similarity == expected
    assert calls == [] and ran_in and ran_in[0].startswith(fusion.SEARCH_THREAD)
    # a search that takes too long is not waited for: predict searches itself
    monkeypatch.setattr(fusion, "SEARCH_TIMEOUT", 0.05)
    trained.remember_similarity(examples[1].sentence)
    direct = trained.predict([examples[1]], explain=False)[0].similarity
    assert calls == [1] and direct == pytest.approx(nearest(trained, [examples[1]])[0])
    trained._precomputed.clear()


def test_a_symbolic_view_computed_ahead_gives_the_same_predictions(
    trained: FusionClassifierModel,
) -> None:
    """The classifier's symbolic half, computed while the featurizer waits for the vectors
    (one message at a time, then stacked), changes nothing; a view of other cues or words is
    not used."""
    examples, _ = make_examples(1, seed=21)  # one message per intent
    views = [
        trained.symbolic_view([Example(np.zeros(0, np.float32), e.cues, e.words)]) for e in examples
    ]
    assert all(v is not None for v in views)
    stacked = SymbolicView.stack([v for v in views if v is not None])
    expected = trained.predict(examples)
    for a, b in zip(trained.predict(examples, symbolic=stacked), expected):
        np.testing.assert_array_equal(a.probabilities, b.probabilities)
        assert a.gate == b.gate and a.cue_contributions == b.cue_contributions
    alone = trained.predict(examples[:1])[0]  # (a batch's products may round differently)
    one = trained.predict(examples[:1], symbolic=views[0])[0]
    np.testing.assert_array_equal(one.probabilities, alone.probabilities)
    # a view of another message's words (or of fewer messages) is ignored, not misused
    other = examples[-1]  # another intent's cues and words
    stale = trained.symbolic_view([Example(np.zeros(0, np.float32), other.cues, other.words)])
    assert stale is not None and not stale.matches(examples[:1])
    kept = trained.predict(examples[:1], symbolic=stale)[0]
    np.testing.assert_array_equal(kept.probabilities, alone.probabilities)
    assert trained.predict(examples, symbolic=views[0])[1].gate == expected[1].gate
