"""FusionDesk NLU components for Rasa 3.6 (usable from config.yml as `nlu_components.<Class>`).

Components are imported lazily (PEP 562), so pure modules such as `nlu_components.encoder`
can be used without importing Rasa; importing a component registers it with Rasa's recipe.
"""

from __future__ import annotations

import importlib
from typing import Any

from bot.env import apply_process_env

apply_process_env()

_COMPONENTS: dict[str, str] = {
    "ParsingSpacyNLP": "nlu_components.spacy_parser",
    "TransformerEncoderFeaturizer": "nlu_components.encoder_featurizer",
    "SyntaxFeaturizer": "nlu_components.syntax_featurizer",
    "FusedIntentClassifier": "nlu_components.fused_classifier",
    "SemanticRoleEntityExtractor": "nlu_components.semantic_role_extractor",
}

__all__ = sorted(_COMPONENTS)


def __getattr__(name: str) -> Any:
    if name in _COMPONENTS:
        return getattr(importlib.import_module(_COMPONENTS[name]), name)
    raise AttributeError(f"module 'nlu_components' has no attribute {name!r}")
