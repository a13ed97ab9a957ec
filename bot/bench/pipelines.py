"""The NLU pipelines `fusiondesk bench nlu` knows by name (the one source of truth).

* `fused`: the pipeline of the project's `config.yml` (the default bot's NLU), read at run time.
* `encoder-only` / `syntax-only`: `fused` with the `FusedIntentClassifier` restricted to one view.
* `fused-finetune`: `fused` with the classifier in `mode: finetune`.
* `rasa-default`: the stock pipeline a `rasa init` project trains with. Its `config.yml` leaves
  the pipeline commented out, so Rasa fills it in from
  `rasa/engine/recipes/config_files/default_config.yml`; that file is read from the installed
  Rasa at run time, so the benchmark always runs the real default.
* `rasa-crf`: a stock pipeline with Rasa's `CRFEntityExtractor` and `LogisticRegressionClassifier`.

A path to a Rasa config file (`*.yml`/`*.yaml`) is also accepted as a pipeline; it is named
after the file (e.g. `--pipeline ablations/no-roles.yml` → `no-roles`).
"""

from __future__ import annotations

import copy
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from bot.bench.errors import PipelineConfigError

#: Class name of the lead's fused classifier (configured by module path in config.yml).
FUSED_CLASSIFIER = "FusedIntentClassifier"
FUSED_CLASSIFIER_PATH = f"nlu_components.{FUSED_CLASSIFIER}"

#: Stock pipeline with a CRF entity extractor (count vectors as in Rasa's default config).
RASA_CRF_PIPELINE: list[dict[str, Any]] = [
    {"name": "WhitespaceTokenizer"},
    {"name": "LexicalSyntacticFeaturizer"},
    {"name": "CountVectorsFeaturizer"},
    {"name": "CountVectorsFeaturizer", "analyzer": "char_wb", "min_ngram": 1, "max_ngram": 4},
    {"name": "CRFEntityExtractor"},
    {"name": "LogisticRegressionClassifier"},
    {"name": "EntitySynonymMapper"},
]


@dataclass(frozen=True)
class PipelineSpec:
    """A named NLU configuration ready to be written as a Rasa `config.yml`."""

    name: str
    #: `recipe`, `language`, `assistant_id` and `pipeline` (no policies: NLU-only training).
    config: dict[str, Any]
    #: Where the pipeline came from (shown in the report).
    source: str


def _read_config(path: Path) -> dict[str, Any]:
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as e:
        raise PipelineConfigError(f"config file {path} does not exist") from e
    except (OSError, yaml.YAMLError) as e:
        raise PipelineConfigError(f"cannot read config file {path}: {e}") from e
    if not isinstance(loaded, dict) or not isinstance(loaded.get("pipeline"), list):
        raise PipelineConfigError(
            f"{path} has no NLU pipeline: it needs a top-level `pipeline:` list of components"
        )
    if not all(isinstance(c, dict) and isinstance(c.get("name"), str) for c in loaded["pipeline"]):
        raise PipelineConfigError(f"{path}: every pipeline entry needs a `name`")
    return loaded


def _nlu_config(loaded: dict[str, Any], pipeline: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "recipe": loaded.get("recipe", "default.v1"),
        "language": loaded.get("language", "en"),
        "assistant_id": "fusiondesk-bench",
        "pipeline": copy.deepcopy(pipeline),
    }


def rasa_default_config_path() -> Path:
    """`default_config.yml` of the installed Rasa (what `rasa init` projects train with)."""
    spec = importlib.util.find_spec("rasa")
    if spec is None or not spec.submodule_search_locations:
        raise PipelineConfigError("Rasa is not installed: run `make install` first")
    path = Path(next(iter(spec.submodule_search_locations)))
    return path / "engine" / "recipes" / "config_files" / "default_config.yml"


def _with_classifier_settings(
    name: str, base: dict[str, Any], config_path: Path, **settings: Any
) -> dict[str, Any]:
    config = copy.deepcopy(base)
    matches = [
        c for c in config["pipeline"] if str(c["name"]).rsplit(".", 1)[-1] == FUSED_CLASSIFIER
    ]
    if not matches:
        names = ", ".join(str(c["name"]) for c in config["pipeline"])
        raise PipelineConfigError(
            f"pipeline {name!r} changes the {FUSED_CLASSIFIER_PATH} component of {config_path}, "
            f"but that pipeline has none (it has: {names}). Add the fused classifier to "
            "config.yml, or choose another pipeline."
        )
    for component in matches:
        component.update(copy.deepcopy(settings))
    return config


def _fused(config_path: Path) -> PipelineSpec:
    loaded = _read_config(config_path)
    return PipelineSpec("fused", _nlu_config(loaded, loaded["pipeline"]), str(config_path))


def _variant(name: str, **settings: Any) -> Callable[[Path], PipelineSpec]:
    def build(config_path: Path) -> PipelineSpec:
        base = _fused(config_path)
        config = _with_classifier_settings(name, base.config, config_path, **settings)
        described = ", ".join(f"{k}: {v}" for k, v in settings.items())
        return PipelineSpec(name, config, f"{config_path} with {FUSED_CLASSIFIER} {described}")

    return build


def _rasa_default(_config_path: Path) -> PipelineSpec:
    path = rasa_default_config_path()
    loaded = _read_config(path)
    return PipelineSpec("rasa-default", _nlu_config(loaded, loaded["pipeline"]), str(path))


def _rasa_crf(_config_path: Path) -> PipelineSpec:
    config = _nlu_config({"language": "en"}, RASA_CRF_PIPELINE)
    return PipelineSpec("rasa-crf", config, "bot.bench.pipelines.RASA_CRF_PIPELINE")


#: Pipeline name → builder taking the project's config.yml path.
PIPELINES: dict[str, Callable[[Path], PipelineSpec]] = {
    "fused": _fused,
    "encoder-only": _variant("encoder-only", views=["encoder"]),
    "syntax-only": _variant("syntax-only", views=["syntax"]),
    "fused-finetune": _variant("fused-finetune", mode="finetune"),
    "rasa-default": _rasa_default,
    "rasa-crf": _rasa_crf,
}


def resolve_pipeline(name: str, project_config: Path) -> PipelineSpec:
    """The pipeline called `name`, or the Rasa config file at path `name`.

    Args:
        name: a key of `PIPELINES` or a path to a `*.yml`/`*.yaml` Rasa config.
        project_config: the project's `config.yml` (source of `fused` and its variants).

    Raises:
        PipelineConfigError: unknown name, unreadable config, or a variant whose base pipeline
            lacks the fused classifier.
    """
    if name in PIPELINES:
        return PIPELINES[name](project_config)
    if name.endswith((".yml", ".yaml")):
        path = Path(name)
        loaded = _read_config(path)
        return PipelineSpec(path.stem, _nlu_config(loaded, loaded["pipeline"]), str(path))
    raise PipelineConfigError(
        f"unknown pipeline {name!r}: choose one of {', '.join(PIPELINES)} "
        "or give the path of a Rasa config file (*.yml)"
    )
