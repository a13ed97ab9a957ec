"""Error vocabulary of the NLU components."""


class NLUComponentError(Exception):
    """Root of every error raised by FusionDesk NLU components."""


class ModelNotFoundError(NLUComponentError):
    """A pretrained model (encoder or spaCy pipeline) is not installed or not found."""


class ComponentConfigError(NLUComponentError):
    """A component's configuration in config.yml is invalid."""


class ModelLoadError(NLUComponentError):
    """A trained component could not be loaded from Rasa's model storage."""
