"""Environment every FusionDesk process runs with: offline models, no telemetry, calm threads."""

from __future__ import annotations

import os

#: Set (unless the user already set them) in every process the project starts.
PROCESS_ENV: dict[str, str] = {
    "HF_HUB_OFFLINE": "1",  # never reach a model hub: models come from installed packages
    "TRANSFORMERS_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "USE_TF": "0",  # transformers must not import TensorFlow for our torch encoder
    "RASA_TELEMETRY_ENABLED": "false",
    "SQLALCHEMY_SILENCE_UBER_WARNING": "1",
    "OMP_WAIT_POLICY": "PASSIVE",  # avoids multi-second thread stalls on 2 busy cores
    "TF_CPP_MIN_LOG_LEVEL": "2",
    "TOKENIZERS_PARALLELISM": "false",
}


def apply_process_env() -> None:
    """Apply `PROCESS_ENV` to this process (and so to every child it starts)."""
    for key, value in PROCESS_ENV.items():
        os.environ.setdefault(key, value)
