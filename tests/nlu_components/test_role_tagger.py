"""The CRF role tagger on hand-built parses and deterministic stand-in vectors (fast)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
import spacy
from spacy.tokens import Doc

from nlu_components.errors import ComponentConfigError, ModelLoadError
from nlu_components.role_tagger import (
    EntitySpan,
    RoleTagger,
    TaggerConfig,
    TaggerInput,
    TaggerTrainingError,
    bio_tags,
    decode_bio,
    encode_label,
)

VOCAB = spacy.blank("en").vocab
NAMES = ["Anna", "Ben", "Emma", "Olga", "Kwame", "Sofia", "Lukas", "Priya", "Tom", "Zoe"]
AMOUNTS = ["50", "20", "75", "300", "15", "40", "60", "25", "90", "10"]
SMALL = {
    "encoder_dims": 4,
    "encoder_clusters": (3, 5),
    "sentence_clusters": 0,
    "max_iterations": 60,
    "use_neural_features": True,
}


def vector(word: str, dim: int = 16) -> np.ndarray:
    """A fixed pseudo-random vector per word (stands in for the encoder)."""
    seed = int.from_bytes(hashlib.sha256(word.lower().encode()).digest()[:4], "little")
    return np.random.default_rng(seed).normal(size=dim).astype(np.float32)


def transfer(amount: str, name: str) -> tuple[TaggerInput, list[EntitySpan]]:
    """ "send <amount> euros to <name>" with its parse and annotated spans."""
    doc = Doc(
        VOCAB,
        words=["send", amount, "euros", "to", name],
        spaces=[True, True, True, True, False],
        heads=[0, 2, 0, 0, 3],
        deps=["ROOT", "nummod", "dobj", "prep", "pobj"],
        pos=["VERB", "NUM", "NOUN", "ADP", "PROPN"],
        lemmas=["send", amount, "euro", "to", name],
    )
    vectors = np.stack([vector(t.text) for t in doc])
    start = 5
    spans = [
        EntitySpan(start, start + len(amount), "amount"),
        EntitySpan(start + len(amount) + 1, start + len(amount) + 6, "currency"),
        EntitySpan(len(doc.text) - len(name), len(doc.text), "person", "recipient"),
    ]
    return TaggerInput(doc, vectors, vectors.mean(axis=0)), spans


@pytest.fixture(scope="module")
def data() -> tuple[list[TaggerInput], list[list[EntitySpan]]]:
    pairs = [transfer(a, n) for a, n in zip(AMOUNTS, NAMES, strict=True)]
    return [p[0] for p in pairs], [p[1] for p in pairs]


@pytest.fixture(scope="module")
def tagger(data: tuple[list[TaggerInput], list[list[EntitySpan]]]) -> RoleTagger:
    model = RoleTagger(TaggerConfig.from_dict(SMALL))
    model.fit(*data)
    return model


def key(spans: list[EntitySpan]) -> list[tuple[int, int, str, str | None]]:
    return [(s.start, s.end, s.entity, s.role) for s in spans]


def test_learns_entities_with_roles(tagger: RoleTagger, data) -> None:  # type: ignore[no-untyped-def]
    inputs, gold = data
    predicted = tagger.predict(inputs)
    assert [key(p) for p in predicted] == [key(g) for g in gold]
    assert all(0.5 < s.confidence <= 1.0 for p in predicted for s in p)
    assert predicted[0][2].value == "Anna" and predicted[0][2].role == "recipient"
    assert "B-person::recipient" in tagger.labels


def test_save_load_gives_the_same_predictions(tagger: RoleTagger, data, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    inputs, _ = data
    tagger.save(tmp_path / "tagger")
    assert sorted(p.name for p in (tmp_path / "tagger").iterdir()) == [
        "config.json",
        "model.crfsuite",
        "neural",
        "projection.npz",
    ]
    assert sorted(p.name for p in (tmp_path / "tagger" / "neural").iterdir()) == [
        "neural.json",
        "neural.npz",
    ]
    loaded = RoleTagger.load(tmp_path / "tagger")
    assert loaded.predict(inputs) == tagger.predict(inputs)
    assert loaded.config == tagger.config


def test_batch_equals_one_by_one(tagger: RoleTagger, data) -> None:  # type: ignore[no-untyped-def]
    inputs, _ = data
    assert tagger.predict(inputs) == [tagger.predict([i])[0] for i in inputs]


def test_broken_or_missing_model_fails_loudly(tagger: RoleTagger, tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="rasa train"):
        RoleTagger.load(tmp_path / "nothing-here")
    tagger.save(tmp_path / "t")
    (tmp_path / "t" / "model.crfsuite").write_bytes(b"not a model")
    with pytest.raises(ModelLoadError):
        RoleTagger.load(tmp_path / "t")
    with pytest.raises(ModelLoadError, match="not trained"):
        RoleTagger().predict([])
    tagger.save(tmp_path / "n")
    (tmp_path / "n" / "neural" / "neural.npz").write_bytes(b"junk")
    with pytest.raises(ModelLoadError, match="neural tagger"):
        RoleTagger.load(tmp_path / "n")


def test_training_needs_entities_and_vectors(data) -> None:  # type: ignore[no-untyped-def]
    inputs, _ = data
    with pytest.raises(TaggerTrainingError, match="no entity annotations"):
        RoleTagger(TaggerConfig.from_dict(SMALL)).fit(inputs, [[] for _ in inputs])
    without_vectors = [TaggerInput(i.doc) for i in inputs]
    with pytest.raises(ComponentConfigError, match="TransformerEncoderFeaturizer"):
        RoleTagger(TaggerConfig.from_dict(SMALL)).fit(without_vectors, data[1])


def test_ablation_without_encoder_or_role_features(data) -> None:  # type: ignore[no-untyped-def]
    inputs, gold = data
    config = TaggerConfig.from_dict(
        {**SMALL, "use_encoder_features": False, "use_role_features": False}
    )
    model = RoleTagger(config)
    plain = [TaggerInput(i.doc) for i in inputs]
    model.fit(plain, gold)
    assert model.projection is None
    assert [key(p) for p in model.predict(plain)] == [key(g) for g in gold]
    feats = model.featurize(plain[0])
    assert not any(name.startswith(("role=", "e0", "c0=")) for name in feats[4])


def test_bio_round_trip_and_labels() -> None:
    inputs, spans = transfer("1,000", "Li Wei")
    doc = inputs.doc
    tags = bio_tags(doc, spans)
    assert tags == ["O", "B-amount", "B-currency", "O", "B-person::recipient"]
    assert key(decode_bio(doc, tags)) == key(spans)
    # an I- tag without its B- starts a new span
    assert key(decode_bio(doc, ["O", "I-amount", "O", "O", "O"])) == [(5, 10, "amount", None)]
    with pytest.raises(TaggerTrainingError, match="may not contain"):
        encode_label("person::x", None)


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"window": 9}, "window"),
        ({"encoder_clusters": [1]}, "encoder_clusters"),
        ({"c1": -1}, "c1"),
        ({"neural_folds": 1}, "neural_folds"),
        ({"x": 1}, "unknown"),
    ],
)
def test_config_is_validated(bad: dict[str, object], message: str) -> None:
    with pytest.raises(ComponentConfigError, match=message):
        TaggerConfig.from_dict(bad)


def test_lexicon_marks_words_annotated_in_training(tagger: RoleTagger, data) -> None:  # type: ignore[no-untyped-def]
    inputs, _ = data
    feats = tagger.featurize(inputs[0])
    assert "lex=B-person" in feats[4]  # "Anna" was annotated as a person
    assert "lex=none" in feats[0]  # "send" never was
    unseen, _ = transfer("33", "Hiroshi")
    assert "lex=none" in tagger.featurize(unseen)[4]


def test_neural_guesses_are_crf_features(tagger: RoleTagger, data) -> None:  # type: ignore[no-untyped-def]
    inputs, gold = data
    assert tagger.neural is not None
    assert tagger.neural.labels[0] == "O" and "B-person::recipient" in tagger.neural.labels
    feats = tagger.featurize(inputs[0])
    guessed = [next(k for k in f if k.startswith("nn=")) for f in feats]
    # the neural tagger on its own has learned the toy data
    assert guessed == ["nn=" + t for t in bio_tags(inputs[0].doc, gold[0])]
    assert "1:nn=B-amount" in feats[0] and "-1:nn=O" in feats[1]
    # guesses passed in win over the trained tagger's (how out-of-fold guesses are used)
    forced = np.zeros((5, len(tagger.neural.labels)), np.float32)
    forced[:, 0] = 1.0
    assert all("nn=O" in f for f in tagger.featurize(inputs[0], guesses=forced))
    off = RoleTagger(TaggerConfig.from_dict({**SMALL, "use_neural_features": False}))
    off.fit(*data)
    assert off.neural is None
    assert not any(k.startswith(("nn=", "1:nn=")) for f in off.featurize(inputs[0]) for k in f)


def test_neural_tagger_alone_batch_equals_one_by_one(tagger: RoleTagger, data) -> None:  # type: ignore[no-untyped-def]
    # messages of different lengths in one batch: padding must not change a message's labels
    inputs, _ = data
    short = TaggerInput(inputs[0].doc[:3].as_doc(), inputs[0].vectors[:3], inputs[0].sentence)  # type: ignore[index]
    mixed = [inputs[0], short, inputs[1]]
    assert tagger.neural is not None
    examples = [tagger._neural_example(i) for i in mixed]
    batched = tagger.neural.probabilities(examples)
    for example, probs in zip(examples, batched, strict=True):
        alone = tagger.neural.probabilities([example])[0]
        assert probs.shape == (len(example.attributes), len(tagger.neural.labels))
        np.testing.assert_allclose(probs, alone, atol=1e-5)


def test_cnn_neural_tagger_learns_and_pads_cleanly(data) -> None:  # type: ignore[no-untyped-def]
    inputs, gold = data
    cnn = RoleTagger(TaggerConfig.from_dict({**SMALL, "neural_architecture": "cnn"}))
    cnn.fit(inputs, gold)
    assert cnn.neural is not None and cnn.neural.config.architecture == "cnn"
    examples = [cnn._neural_example(i) for i in inputs]
    tags = [bio_tags(i.doc, g) for i, g in zip(inputs, gold, strict=True)]
    guessed = [
        [cnn.neural.labels[j] for j in p.argmax(-1)] for p in cnn.neural.probabilities(examples)
    ]
    assert guessed == tags
    short = TaggerInput(inputs[0].doc[:2].as_doc(), inputs[0].vectors[:2], inputs[0].sentence)  # type: ignore[index]
    mixed = [examples[0], cnn._neural_example(short)]
    for example, probs in zip(mixed, cnn.neural.probabilities(mixed), strict=True):
        np.testing.assert_allclose(probs, cnn.neural.probabilities([example])[0], atol=1e-5)
    assert [key(p) for p in cnn.predict(inputs)] == [key(g) for g in gold]
