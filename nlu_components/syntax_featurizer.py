"""`SyntaxFeaturizer`: syntax cues from the dependency parse.

Reads the parse `ParsingSpacyNLP` put on each message and stores the message attribute the
fused classifier reads: `syntax_cues` (list of str; see `syntax.syntax_cues`).
"""

from __future__ import annotations

from typing import Any

from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.constants import SPACY_DOCS
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from nlu_components.spacy_parser import ParsingSpacyNLP
from nlu_components.syntax import syntax_cues

#: Message attributes written by this component.
SYNTAX_CUES = "syntax_cues"


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=False)
class SyntaxFeaturizer(GraphComponent):
    """Turns each message's dependency parse into symbolic cues and token features."""

    @classmethod
    def required_components(cls) -> list[type]:
        return [ParsingSpacyNLP]

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {}

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> SyntaxFeaturizer:
        return cls()

    @staticmethod
    def _featurize(message: Message) -> None:
        doc = message.get(SPACY_DOCS[TEXT])
        if doc is None:
            return
        message.set(SYNTAX_CUES, syntax_cues(doc))

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        for message in training_data.training_examples:
            self._featurize(message)
        return training_data

    def process(self, messages: list[Message]) -> list[Message]:
        for message in messages:
            self._featurize(message)
        return messages
