"""Error vocabulary of the FusionDesk runtime. Messages say what to do next."""


class FusionDeskError(Exception):
    """Root of the runtime's errors; the CLI prints its message and exits with status 2."""


class ConfigError(FusionDeskError):
    """A setting or configuration file is invalid."""


class PortInUseError(FusionDeskError):
    """A port the bot needs is taken by another process."""


class MissingModelPackageError(FusionDeskError):
    """A model package (encoder or spaCy pipeline) is not installed."""


class CorruptModelError(FusionDeskError):
    """A trained Rasa model file cannot be read."""
