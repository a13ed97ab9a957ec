"""`FusedIntentClassifier`: the fused transformer + syntax intent classifier for Rasa.

Thin adapter: gathers the encoder's sentence vector (from `TransformerEncoderFeaturizer`), the
syntax cues (from `SyntaxFeaturizer`) and the words of each message, trains
`fusion.FusionClassifierModel`, persists it in Rasa's model storage (safetensors + JSON), and
at prediction time writes `intent`, `intent_ranking` and an `explanation` (the gate α, the
parse cues and words that moved the decision, the calibration) that `/model/parse` returns.
"""

from __future__ import annotations

import logging
from dataclasses import fields, replace
from typing import Any

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.classifiers.classifier import IntentClassifier
from rasa.nlu.constants import TOKENS_NAMES
from rasa.shared.nlu.constants import INTENT, INTENT_NAME_KEY, PREDICTED_CONFIDENCE_KEY, TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from nlu_components.encoder import SentenceEncoder, TokenEncoding, add_live_hook, load_encoder
from nlu_components.encoder_featurizer import add_wait_work
from nlu_components.errors import ComponentConfigError, ModelLoadError
from nlu_components.finetune import FineTuneConfig, finetune
from nlu_components.fusion import Example, FusionClassifierModel, FusionConfig, SymbolicView
from nlu_components.symbolic import message_words
from nlu_components.syntax_featurizer import SYNTAX_CUES, SyntaxFeaturizer

logger = logging.getLogger(__name__)

#: Message attribute with the per-prediction explanation (returned by /model/parse).
EXPLANATION = "explanation"
#: Message attribute (not output) with the symbolic view computed while the featurizer waited.
SYMBOLIC_AHEAD = "fusion_symbolic_ahead"
#: Intent Rasa's rules use when the NLU is not confident and no out-of-scope intent exists.
NLU_FALLBACK = "nlu_fallback"
_FUSION_KEYS = {f.name for f in fields(FusionConfig)}


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.INTENT_CLASSIFIER, is_trainable=True)
class FusedIntentClassifier(IntentClassifier, GraphComponent):
    """Intent classifier fusing a transformer language model with dependency syntax."""

    @classmethod
    def required_components(cls) -> list[type]:
        # frozen mode also needs TransformerEncoderFeaturizer (checked when training);
        # fine-tuning mode encodes with its own fine-tuned copy of the encoder
        return [SyntaxFeaturizer]

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            # Which views to use: [encoder, syntax] is the fused model; one alone is an ablation.
            "views": ["encoder", "syntax"],
            # `frozen`: the encoder stays fixed and only the fusion network trains (minutes).
            # `finetune`: then the top `finetune_layers` encoder layers train with the head
            # (better accuracy, tens of minutes on a small CPU); the fine-tuned layers are
            # stored with the model and TransformerEncoderFeaturizer is not needed.
            "mode": "frozen",
            "finetune_layers": 2,
            "finetune_epochs": 3,
            "finetune_batch_size": 32,
            "finetune_encoder_learning_rate": 0.00005,
            "finetune_head_learning_rate": 0.003,
            # Where the layers train: `auto` (a CUDA GPU when torch sees one, else the CPU),
            # `cpu`, `cuda` or `cuda:N`. Parsing stays on the CPU.
            "finetune_device": "auto",
            # Encoder the fine-tuning mode starts from (null = the MiniLM package), its
            # word-piece limit and pooled layers; use the same values as
            # TransformerEncoderFeaturizer.
            "model_path": None,
            "max_length": 64,
            "pooling_layers": [2, 4, 6],
            # Inverse L2 strength of both views' weights (as C of a logistic regression).
            "regularization": 40.0,
            # L-BFGS iterations of the joint fit (the refit on all data gets half).
            "max_iterations": 100,
            # Weight of each group of the symbolic view: syntax cues from the dependency
            # parse, word uni/bigrams, character n-grams inside words (0 = off).
            "syntax_group_weight": 0.5,
            "word_group_weight": 0.5,
            "char_group_weight": 0.5,
            "char_ngram_min": 2,
            "char_ngram_max": 5,
            # Syntax cues and character n-grams seen fewer times than this are ignored.
            "min_cue_count": 2,
            # Pull of the per-message gate towards an even split between the views.
            "gate_regularization": 0.01,
            # Share of each intent held out for the gate, calibration and the OOS thresholds.
            "validation_fraction": 0.1,
            # After calibration, refit the views on all data (warm start).
            "refit_on_all": True,
            "seed": 42,
            "training_threads": 2,
            # Out-of-scope: intent trained from examples, plus a rule calibrated on the
            # held-out slice when the data has `oos_intent` examples: a message whose
            # confidence and similarity to the in-scope training messages are jointly less
            # typical than the held-out in-scope ones' becomes `oos_intent`.
            "oos_intent": "out_of_scope",
            # Share of held-out in-scope messages the automatic rule may reject (0.01 = 1 %).
            "oos_in_scope_rejection": 0.01,
            # Fixed thresholds instead of the automatic rule (null = automatic): a prediction
            # below either becomes `oos_intent` (or `nlu_fallback` when the data has no such
            # intent). The confidence one is on the calibrated top probability; the
            # similarity one on the cosine to the nearest in-scope training message.
            "oos_threshold": None,
            "oos_similarity_threshold": None,
            # Intents listed in `intent_ranking`.
            "ranking_length": 10,
            # Syntax cues and words named in each explanation.
            "explanation_cues": 3,
        }

    def __init__(
        self,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        model: FusionClassifierModel | None = None,
        encoder: SentenceEncoder | None = None,
    ) -> None:
        self.component_config = config
        self._model_storage = model_storage
        self._resource = resource
        self.model = model
        #: fine-tuning mode only: the encoder with the fine-tuned top layers
        self.encoder = encoder

    @staticmethod
    def fusion_config(config: dict[str, Any]) -> FusionConfig:
        mode = config.get("mode", "frozen")
        if mode not in {"frozen", "finetune"}:
            raise ComponentConfigError(
                f"FusedIntentClassifier: unknown mode {mode!r}; use `frozen` or `finetune`"
            )
        options = {k: v for k, v in config.items() if k in _FUSION_KEYS}
        options["views"] = tuple(options.get("views", ("encoder", "syntax")))
        if mode == "finetune" and "encoder" not in options["views"]:
            raise ComponentConfigError("mode `finetune` needs the `encoder` view")
        return FusionConfig(**options)

    @staticmethod
    def finetune_config(config: dict[str, Any]) -> FineTuneConfig:
        return FineTuneConfig(
            pooling_layers=tuple(config["pooling_layers"]),
            validation_fraction=config["validation_fraction"],
            seed=config["seed"],
            layers=config["finetune_layers"],
            epochs=config["finetune_epochs"],
            batch_size=config["finetune_batch_size"],
            encoder_learning_rate=config["finetune_encoder_learning_rate"],
            head_learning_rate=config["finetune_head_learning_rate"],
            threads=config["training_threads"],
            device=str(config["finetune_device"]),
        )

    @property
    def finetuning(self) -> bool:
        return self.component_config["mode"] == "finetune"

    def _base_encoder(self) -> SentenceEncoder:
        return load_encoder(
            self.component_config["model_path"], max_length=self.component_config["max_length"]
        )

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> FusedIntentClassifier:
        config = {**cls.get_default_config(), **config}
        cls.fusion_config(config)  # fail at graph build time on a bad config
        if config["mode"] == "finetune":
            cls.finetune_config(config)
        return cls(config, model_storage, resource)

    # ------------------------------------------------------------------ features
    @staticmethod
    def _words(message: Message) -> list[str]:
        return message_words([t.text for t in message.get(TOKENS_NAMES[TEXT]) or []])

    @classmethod
    def _example(cls, message: Message) -> Example | None:
        _, sentence = message.get_dense_features(
            TEXT,
            featurizers=[],  # all dense text features; ours is the only dense featurizer
        )
        if sentence is None:
            return None
        return Example(
            sentence=np.asarray(sentence.features, dtype=np.float32).reshape(-1),
            cues=list(message.get(SYNTAX_CUES) or []),
            words=cls._words(message),
        )

    def _encoded_examples(
        self, messages: list[Message], encoder: SentenceEncoder, threads: int, live: bool = False
    ) -> list[Example]:
        """Examples whose vectors come from `encoder` (fine-tuning mode).

        Live messages go one by one through the encoder's lean path, as the featurizer does.
        """
        layers = tuple(self.component_config["pooling_layers"])
        encodings = encoder.encode_tokens(
            [m.get(TEXT) or "" for m in messages], threads, layers, live=live
        )
        return [
            Example(
                sentence=encoding.sentence if encoding.layers is None else encoding.layers,
                cues=list(message.get(SYNTAX_CUES) or []),
                words=self._words(message),
            )
            for message, encoding in zip(messages, encodings)
        ]

    # ------------------------------------------------------------------ training
    def train(self, training_data: TrainingData) -> Resource:
        examples: list[Example] = []
        labels: list[str] = []
        messages = [
            m for m in training_data.intent_examples if m.get(INTENT) and m.get(TOKENS_NAMES[TEXT])
        ]
        state: dict[str, Any] = {}
        if self.finetuning:
            encoder = self._base_encoder()
            labels = [m.get(INTENT) for m in messages]
            state = finetune(
                encoder,
                [m.get(TEXT) for m in messages],
                labels,
                self.finetune_config(self.component_config),
            )
            self.encoder = encoder.with_state(state)
            examples = self._encoded_examples(
                messages, self.encoder, self.component_config["training_threads"]
            )
        else:
            for message in messages:
                example = self._example(message)
                if example is not None:
                    examples.append(example)
                    labels.append(message.get(INTENT))
        if not examples:
            raise ComponentConfigError(
                "FusedIntentClassifier found no featurized intent examples: put "
                "ParsingSpacyNLP, SpacyTokenizer, TransformerEncoderFeaturizer and "
                "SyntaxFeaturizer before it in the pipeline"
            )
        config = self.fusion_config(self.component_config)
        width = int(np.asarray(examples[0].sentence).size)
        layers = max(1, len(self.component_config["pooling_layers"]))
        if width % layers == 0:  # novelty on the top layer's pooling (see FusionConfig)
            config = replace(config, similarity_dims=width // layers)
        self.model = FusionClassifierModel.train(examples, labels, config)
        if self.finetuning:
            self.model.encoder_state = state
            self.model.finetune_layers = self.component_config["finetune_layers"]
        with self._model_storage.write_to(self._resource) as directory:
            self.model.save(directory)
        return self._resource

    @classmethod
    def load(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
        **kwargs: Any,
    ) -> FusedIntentClassifier:
        config = {**cls.get_default_config(), **config}
        try:
            with model_storage.read_from(resource) as directory:
                model = FusionClassifierModel.load(directory)
        except ValueError as e:  # Rasa raises ValueError when the resource does not exist
            raise ModelLoadError(
                f"FusedIntentClassifier: no trained model in storage ({e}); run `rasa train`"
            ) from e
        encoder = None
        if config["mode"] == "finetune":
            if not model.encoder_state:
                raise ModelLoadError("FusedIntentClassifier: fine-tuned layers missing; retrain")
            base = load_encoder(config["model_path"], max_length=config["max_length"])
            encoder = base.with_state(model.encoder_state)
        component = cls(config, model_storage, resource, model, encoder)
        if encoder is None and model.use_encoder:
            # the featurizer's vectors are ours: start the novelty search while spaCy parses
            add_live_hook(component._on_live_encoding)
        if encoder is None and model.use_syntax:
            # and compute the symbolic view while the featurizer waits for those vectors
            add_wait_work(execution_context.model_id, component._symbolic_ahead)
        return component

    def _symbolic_ahead(self, messages: list[Message]) -> None:
        """Wait work (`add_wait_work`): each parsed message's symbolic view, left on it for
        `process`, which checks it was computed from the cues and words it classifies."""
        model = self.model
        if model is None:
            return
        for message in messages:
            if message.get(TOKENS_NAMES[TEXT]):
                example = Example(
                    np.zeros(0, np.float32),
                    list(message.get(SYNTAX_CUES) or []),
                    self._words(message),
                )
                message.set(SYMBOLIC_AHEAD, model.symbolic_view([example]))

    def _on_live_encoding(self, encoding: TokenEncoding) -> None:
        """Live hook: the nearest-training-message similarity of a message being parsed."""
        if self.model is not None:
            vector = encoding.sentence if encoding.layers is None else encoding.layers
            self.model.remember_similarity(vector)

    # ------------------------------------------------------------------ prediction
    def process(self, messages: list[Message]) -> list[Message]:
        if self.model is None:
            raise ModelLoadError("FusedIntentClassifier is not trained; run `rasa train`")
        if self.encoder is not None:
            with_text = [m for m in messages if m.get(TOKENS_NAMES[TEXT])]
            encoded = self._encoded_examples(with_text, self.encoder, 1, live=True)
            by_id = {id(m): e for m, e in zip(with_text, encoded)}
            pending = [(m, by_id.get(id(m))) for m in messages]
        else:
            pending = [(m, self._example(m)) for m in messages]
        ahead = [m.data.pop(SYMBOLIC_AHEAD, None) for m in messages]
        ready = [(m, e) for m, e in pending if e is not None]
        for message, _ in pending:
            if not any(message is m for m, _ in ready):
                self._set_unknown(message)
        views = [view for view, (_, e) in zip(ahead, pending) if e is not None]
        symbolic = (
            SymbolicView.stack(views) if views and all(v is not None for v in views) else None
        )
        predictions = self.model.predict([e for _, e in ready], symbolic=symbolic)
        for (message, _), prediction in zip(ready, predictions):
            self._set_prediction(message, prediction)
        return messages

    def _set_unknown(self, message: Message) -> None:
        # empty or untokenizable text: nothing to classify — say so with zero confidence
        name = self._oos_name()
        message.set(
            INTENT, {INTENT_NAME_KEY: name, PREDICTED_CONFIDENCE_KEY: 0.0}, add_to_output=True
        )
        message.set("intent_ranking", [], add_to_output=True)
        message.set(EXPLANATION, {"reason": "empty message"}, add_to_output=True)

    def _oos_name(self) -> str:
        labels = self.model.labels if self.model else []
        oos = self.component_config["oos_intent"]
        return oos if oos in labels else NLU_FALLBACK

    def _set_prediction(self, message: Message, prediction: Any) -> None:
        model = self.model
        if model is None:
            raise ModelLoadError("FusedIntentClassifier is not trained; run `rasa train`")
        probs = prediction.probabilities
        order = np.argsort(-probs)
        ranking = [
            {INTENT_NAME_KEY: model.labels[i], PREDICTED_CONFIDENCE_KEY: float(probs[i])}
            for i in order[: self.component_config["ranking_length"]]
        ]
        top = dict(ranking[0])
        below_threshold = top[INTENT_NAME_KEY] != self.component_config[
            "oos_intent"
        ] and model.is_out_of_scope(prediction)
        if below_threshold:
            top = {
                INTENT_NAME_KEY: self._oos_name(),
                PREDICTED_CONFIDENCE_KEY: 1.0 - top[PREDICTED_CONFIDENCE_KEY],
            }
        message.set(INTENT, top, add_to_output=True)
        message.set("intent_ranking", ranking, add_to_output=True)
        message.set(
            EXPLANATION, self._explanation(message, prediction, below_threshold), add_to_output=True
        )

    def _explanation(
        self, message: Message, prediction: Any, below_threshold: bool
    ) -> dict[str, Any]:
        n = self.component_config["explanation_cues"]
        contributions = prediction.cue_contributions

        def top(prefix: str) -> list[dict[str, Any]]:
            chosen = [(c, e) for c, e in contributions if c.startswith(prefix)][:n]
            return [{"cue": c.removeprefix(prefix), "effect": round(e, 4)} for c, e in chosen]

        explanation: dict[str, Any] = {
            # share α of the symbolic (syntax) view in this decision; the encoder has 1 − α
            "syntax_weight": None if prediction.gate is None else round(prediction.gate, 4),
            # parse cues and words that moved the predicted intent (effect on its logit)
            "syntax_cues": top("syntax:"),
            "words": top("word:"),
            "temperature": round(self.model.temperature, 4) if self.model else None,
            "nearest_example_similarity": round(prediction.similarity, 4),
        }
        model = self.model
        if model is not None and model.joint_out_of_scope:
            # share of held-out in-scope requests less confident × share less similar
            explanation["in_scope_typicality"] = (
                None if prediction.typicality is None else round(prediction.typicality, 4)
            )
            explanation["typicality_threshold"] = round(float(model.typicality_threshold or 0), 6)
        else:
            explanation["oos_threshold"] = model.oos_threshold if model else None
            explanation["similarity_threshold"] = model.similarity_threshold if model else None
        if below_threshold:
            explanation["out_of_scope_reason"] = (
                "confidence and similarity to known requests are less typical than the "
                "calibrated share of in-scope requests"
                if model is not None and model.joint_out_of_scope
                else "confidence or similarity to known requests below its calibrated threshold"
            )
        return explanation
