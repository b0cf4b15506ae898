"""Exception types raised to users. Each message names the offending file or value and the fix."""

from __future__ import annotations


class LongVAError(Exception):
    """Base class of every error longva-plugins raises on purpose."""


class CheckpointError(LongVAError, ValueError):
    """A checkpoint directory or file is missing, corrupt or does not match the model."""


class InputMismatchError(LongVAError, ValueError):
    """Inputs disagree with each other (e.g. visual placeholders vs. visual inputs)."""


class ContextLengthError(LongVAError, ValueError):
    """A sequence would exceed the model's context length."""


class VideoDecodeError(LongVAError, RuntimeError):
    """A video could not be opened or decoded; the message names the file."""


class ConfigError(LongVAError, ValueError):
    """A user-supplied option or configuration value is invalid."""


class DataError(LongVAError, ValueError):
    """A dataset, annotation file or sample is missing or malformed."""


__all__ = [
    "CheckpointError",
    "ConfigError",
    "ContextLengthError",
    "DataError",
    "InputMismatchError",
    "LongVAError",
    "VideoDecodeError",
]
