"""Error vocabulary of the NLU components."""

from __future__ import annotations

from collections.abc import Iterable


class NLUComponentError(Exception):
    """Root of every error raised by FusionDesk NLU components."""


class ModelNotFoundError(NLUComponentError):
    """A pretrained model (encoder or spaCy pipeline) is not installed or not found."""


class ComponentConfigError(NLUComponentError):
    """A component's configuration in config.yml is invalid."""


class ModelLoadError(NLUComponentError):
    """A trained component could not be loaded from Rasa's model storage."""


def reject_unknown_settings(values: Iterable[str], known: Iterable[str], what: str) -> None:
    """Raise `ComponentConfigError` naming the keys of `values` that are not in `known`."""
    known = sorted(known)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ComponentConfigError(f"unknown {what} setting(s) {unknown}; known: {known}")
