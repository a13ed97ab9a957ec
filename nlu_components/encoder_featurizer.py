"""`TransformerEncoderFeaturizer`: MiniLM-class sentence encoder features for Rasa.

Adds, for the `text` attribute, a dense *sequence* feature (one contextual vector per Rasa
token, the mean of its word pieces, last layer) and a dense *sentence* feature — the mean
pooling of each layer in `pooling_layers`, each L2-normalised, concatenated (lower layers keep
more of the wording, the top layer more of the meaning; [2, 4, 6] beat the top layer alone by
~0.9 points on BANKING77 dev with a linear classifier) — so stock components (DIET,
ResponseSelector) can use them as well as our fused classifier. Loads the encoder from its installed package (no model hub).
"""

from __future__ import annotations

import logging
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

import numpy as np
from rasa.engine.graph import ExecutionContext, GraphComponent
from rasa.engine.recipes.default_recipe import DefaultV1Recipe
from rasa.engine.storage.resource import Resource
from rasa.engine.storage.storage import ModelStorage
from rasa.nlu.constants import TOKENS_NAMES
from rasa.nlu.featurizers.dense_featurizer.dense_featurizer import DenseFeaturizer
from rasa.nlu.tokenizers.tokenizer import Tokenizer
from rasa.shared.nlu.constants import TEXT
from rasa.shared.nlu.training_data.message import Message
from rasa.shared.nlu.training_data.training_data import TrainingData

from nlu_components.align import pool_pieces_to_tokens
from nlu_components.encoder import (
    PRECISIONS,
    PREFETCH_WORKERS,
    SentenceEncoder,
    load_encoder,
)
from nlu_components.errors import ComponentConfigError
from nlu_components.spacy_parser import catch_up_entities

logger = logging.getLogger(__name__)

#: Per served model (its id), the components' work that needs only the parse (`add_wait_work`).
_WAIT_WORK: dict[str, list[weakref.WeakMethod[Callable[[list[Message]], None]]]] = {}
_WAIT_WORK_LOCK = threading.Lock()


def add_wait_work(model_id: str | None, method: Callable[[list[Message]], None]) -> None:
    """Have the served model `model_id`'s featurizer run the bound `method` on incoming
    messages while it waits for the transformer's early pass (call it from `load`).

    The transformer starts on each text before spaCy parses it, in a child process; after the
    parse the featurizer waits for its vectors, and this process is idle. A later component's
    work that needs only the parse (the fused classifier's symbolic view) is done in that wait
    instead of after it. The method may leave results on the messages for its component to
    take; it must not change what any other component reads. Held weakly, per model: another
    model's featurizer never runs it. One that raises is logged, and its component then does
    the work itself. Training graphs (no model id) register nothing.
    """
    if model_id is None:
        return
    with _WAIT_WORK_LOCK:
        work = [w for w in _WAIT_WORK.get(model_id, []) if w() is not None]
        if all(w() != method for w in work):
            work.append(weakref.WeakMethod(method))
        _WAIT_WORK[model_id] = work


def run_wait_work(messages: list[Message], model_id: str | None) -> None:
    """Run model `model_id`'s registered wait work on `messages` (see `add_wait_work`)."""
    if model_id is None:
        return
    with _WAIT_WORK_LOCK:
        work = list(_WAIT_WORK.get(model_id, []))
    for reference in work:
        _run_wait_work(reference, messages)


def _run_wait_work(
    reference: weakref.WeakMethod[Callable[[list[Message]], None]], messages: list[Message]
) -> None:
    method = reference()
    if method is None:
        return
    try:
        method(messages)
    except Exception:  # noqa: BLE001 - the component does the work itself later
        logger.exception("work ahead of the encoder's vectors failed; it is done later")


@DefaultV1Recipe.register(DefaultV1Recipe.ComponentType.MESSAGE_FEATURIZER, is_trainable=False)
class TransformerEncoderFeaturizer(DenseFeaturizer, GraphComponent):
    """Dense sequence and sentence features from a PyTorch transformer encoder."""

    @classmethod
    def required_components(cls) -> list[type]:
        return [Tokenizer]

    @staticmethod
    def get_default_config() -> dict[str, Any]:
        return {
            **DenseFeaturizer.get_default_config(),
            # Local transformers model directory; null = all-MiniLM-L6-v2 from its package.
            "model_path": None,
            # Word pieces per message; longer messages are truncated (the rest still gets
            # the sentence mean as its token vectors).
            "max_length": 64,
            # Messages per forward pass when featurizing training data.
            "batch_size": 64,
            # Hidden layers (0 = embeddings, 6 = last of MiniLM-L6) whose mean poolings form
            # the sentence feature; [] = the last layer's mean pooling only.
            "pooling_layers": [2, 4, 6],
            # Torch threads for one incoming message (1 avoids stalls on small machines).
            "inference_threads": 1,
            # Torch threads for featurizing training data.
            "training_threads": 2,
            # Start encoding an incoming message while ParsingSpacyNLP parses it (a worker
            # thread; same vectors, ~1 ms lower median and ~6 ms lower p95 latency here).
            "overlap_with_parser": True,
            # Where that early pass runs: `process` (a child process on the other core; the
            # parse no longer shares the GIL with it: ~3 ms lower median here) or `thread`.
            # The child starts when a trained model is loaded, not during training.
            "overlap_worker": "process",
            # While a served model waits for an early pass, Python hands the GIL between
            # threads every this many milliseconds (its default is 5): the thread that
            # receives the child's result gets it sooner. null = leave Python's setting.
            "gil_switch_interval_ms": 0.5,
            # `auto`: matrix products in bfloat16 where the CPU has native bfloat16 units
            # (AMX / AVX512-BF16; ~3x faster, vectors within cosine 0.9999 of float32), else
            # float32. `float32` or `bfloat16` force one.
            "precision": "auto",
        }

    @staticmethod
    def required_packages() -> list[str]:
        return ["torch", "transformers"]

    def __init__(
        self,
        config: dict[str, Any],
        name: str,
        encoder: SentenceEncoder,
        model_id: str | None = None,
    ) -> None:
        super().__init__(name, config)
        self.encoder = encoder
        self.model_id = model_id

    @classmethod
    def validate_config(cls, config: dict[str, Any]) -> None:
        for key in ("max_length", "batch_size", "inference_threads", "training_threads"):
            if not isinstance(config.get(key), int) or config[key] < 1:
                raise ComponentConfigError(
                    f"TransformerEncoderFeaturizer: `{key}` must be a positive integer, "
                    f"got {config.get(key)!r}"
                )
        interval = config.get("gil_switch_interval_ms")
        if interval is not None and (
            isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0
        ):
            raise ComponentConfigError(
                "TransformerEncoderFeaturizer: `gil_switch_interval_ms` must be a positive "
                f"number of milliseconds or null, got {interval!r}"
            )
        if not isinstance(config.get("overlap_with_parser"), bool):
            raise ComponentConfigError(
                "TransformerEncoderFeaturizer: `overlap_with_parser` must be true or false, "
                f"got {config.get('overlap_with_parser')!r}"
            )
        if config.get("overlap_worker") not in PREFETCH_WORKERS:
            raise ComponentConfigError(
                "TransformerEncoderFeaturizer: `overlap_worker` must be one of "
                f"{sorted(PREFETCH_WORKERS)}, got {config.get('overlap_worker')!r}"
            )
        if config.get("precision") not in PRECISIONS:
            raise ComponentConfigError(
                f"TransformerEncoderFeaturizer: `precision` must be one of {sorted(PRECISIONS)}, "
                f"got {config.get('precision')!r}"
            )
        layers = config.get("pooling_layers")
        if not isinstance(layers, list) or any(
            not isinstance(i, int) or isinstance(i, bool) or i < 0 for i in layers
        ):
            raise ComponentConfigError(
                "TransformerEncoderFeaturizer: `pooling_layers` must be a list of layer numbers, "
                f"got {layers!r}"
            )

    @classmethod
    def create(
        cls,
        config: dict[str, Any],
        model_storage: ModelStorage,
        resource: Resource,
        execution_context: ExecutionContext,
    ) -> TransformerEncoderFeaturizer:
        config = {**cls.get_default_config(), **config}
        cls.validate_config(config)
        encoder = load_encoder(
            config["model_path"],
            max_length=config["max_length"],
            batch_size=config["batch_size"],
            num_threads=config["inference_threads"],
            precision=config["precision"],
        )
        encoder.check_layers(config["pooling_layers"])
        encoder.single_path()  # pick the live-message path now, not on the first message
        if config["overlap_with_parser"]:
            # a model loaded to parse messages has an id; the training graph does not, and
            # training never prefetches, so it starts no child process
            serving = execution_context.model_id is not None
            encoder.enable_prefetch(
                config["inference_threads"],
                config["pooling_layers"],
                worker=config["overlap_worker"] if serving else "thread",
            )
        logger.info(
            "Loaded encoder %s (%d-d, live messages: %s path)",
            encoder.path,
            encoder.dim,
            encoder.single_path_name,
        )
        interval = config["gil_switch_interval_ms"]
        if config["overlap_with_parser"] and execution_context.model_id is not None and interval:
            sys.setswitchinterval(min(sys.getswitchinterval(), interval / 1000))
        return cls(config, execution_context.node_name, encoder, execution_context.model_id)

    def _featurize(self, messages: list[Message], threads: int, live: bool = False) -> None:
        messages = [m for m in messages if m.get(TEXT) is not None and m.get(TOKENS_NAMES[TEXT])]
        if not messages:
            return
        if live:  # the early pass is still running: do the parse's deferred NER meanwhile,
            # and the later components' work that needs only the parse
            catch_up_entities(messages, self.model_id)
            run_wait_work(messages, self.model_id)
        encodings = self.encoder.encode_tokens(
            [m.get(TEXT) for m in messages], threads, self._config["pooling_layers"], live=live
        )
        for message, encoding in zip(messages, encodings):
            spans = [(t.start, t.end) for t in message.get(TOKENS_NAMES[TEXT])]
            sequence = pool_pieces_to_tokens(encoding.vectors, encoding.offsets, spans)
            self.add_features_to_message(
                sequence=sequence,
                sentence=(encoding.sentence if encoding.layers is None else encoding.layers)[
                    np.newaxis, :
                ],
                attribute=TEXT,
                message=message,
            )

    def process_training_data(self, training_data: TrainingData) -> TrainingData:
        """Featurize every training example that has text."""
        self._featurize(training_data.training_examples, self._config["training_threads"])
        return training_data

    def process(self, messages: list[Message]) -> list[Message]:
        """Featurize incoming messages."""
        self._featurize(messages, self._config["inference_threads"], live=True)
        return messages
