"""Exception types raised to users. Each message names the offending file or value and the fix.

Two families matter to an evaluation run, and the ``longva`` adapter treats them differently:

- :class:`SettingError` — a wrong *setting* (a model_arg, a task environment variable, a V-NIAH
  grid larger than its haystack, a needle folder with unreadable images). Detected when the model
  or the task is built, before the first sample; the run stops with a message naming the setting,
  the bad value and what is allowed, and no results file is written.
- :class:`SampleError` — one *sample* cannot be used (a missing, corrupt or zero-frame video, an
  undecodable image, a prompt longer than the context). That sample is answered empty, logged by
  path and counted; the run goes on.

A third stops a run that has started: :class:`StorageError` -- a cache or result file cannot be
written (disk full, read-only or missing folder, no permission). What was already written stays
(every file is written whole or not at all); the run ends non-zero with the path as its last line.
"""

from __future__ import annotations


class LongVAError(Exception):
    """Base class of every error longva-plugins raises on purpose."""


class SettingError(LongVAError, ValueError):
    """A user-supplied setting is invalid; the run must stop before its first sample.

    ``problems`` lists every problem found (a message names them all, not only the first).
    """

    def __init__(self, message: str, problems: list[str] | None = None):
        super().__init__(message)
        self.problems = list(problems) if problems else [message]

    @classmethod
    def invalid(cls, setting: str, value, allowed: str) -> "SettingError":
        """``<setting>=<value!r> is not allowed; allowed: <allowed>``."""
        return cls(setting_problem(setting, value, allowed))


class DataError(SettingError):
    """A dataset, annotation file or needle set named by a setting is missing or malformed."""


class CheckpointError(SettingError):
    """A checkpoint directory or file is missing, corrupt or does not match the model."""


class SampleError(LongVAError):
    """One sample's input cannot be used; it is answered empty, logged and counted."""


class InputMismatchError(SampleError, ValueError):
    """Inputs disagree with each other (e.g. visual placeholders vs. visual inputs)."""


class ContextLengthError(SampleError, ValueError):
    """A sequence would exceed the model's context length."""


class VideoDecodeError(SampleError, RuntimeError):
    """A video could not be opened or decoded; the message names the file."""


class VisualInputError(SampleError, ValueError):
    """A visual input of one sample cannot be used (missing, corrupt, unsupported)."""


class StorageError(LongVAError, OSError):
    """A cache or result file cannot be written; the message names the path and the cause."""

    def __init__(self, path, cause: OSError):
        self.path = str(path)
        reason = cause.strerror or str(cause)
        import errno

        hint = {errno.ENOSPC: "the disk is full: free space or write elsewhere", errno.EROFS: "the file system is read-only",
                errno.EACCES: "no permission to write there", errno.EFBIG: "the file size limit (ulimit -f) is reached",
                errno.EDQUOT: "the disk quota is exhausted"}.get(cause.errno or 0, "")
        super().__init__(cause.errno, f"cannot write {self.path}: {reason}" + (f" ({hint})" if hint else ""))
        self.cause = cause

    def __str__(self) -> str:
        return self.strerror


def setting_problem(setting: str, value, allowed: str) -> str:
    """One line naming a setting, its bad value and what is allowed."""
    return f"{setting}={value!r} is not allowed; allowed: {allowed}"


class SettingProblems:
    """Collects setting problems so that one error lists them all.

    >>> problems = SettingProblems("longva model_args")
    >>> problems.add("max_frames_num", 0, "an integer >= 1")
    >>> problems.raise_if_any()  # raises SettingError naming every problem added
    """

    def __init__(self, where: str):
        self.where = where
        self.problems: list[str] = []

    def add(self, setting: str, value, allowed: str) -> None:
        self.problems.append(setting_problem(setting, value, allowed))

    def add_message(self, message: str) -> None:
        self.problems.append(message)

    def attempt(self, build):
        """``build()``, or ``None`` with its :class:`SettingError`'s problems added to this list."""
        try:
            return build()
        except SettingError as exc:
            self.problems.extend(exc.problems)
            return None

    def raise_if_any(self, error_type: type[SettingError] = SettingError) -> None:
        if not self.problems:
            return
        if len(self.problems) == 1:
            raise error_type(f"{self.where}: {self.problems[0]}", self.problems)
        listed = "\n".join(f"  - {p}" for p in self.problems)
        raise error_type(f"{self.where}: {len(self.problems)} problems:\n{listed}", self.problems)


__all__ = [
    "CheckpointError",
    "ContextLengthError",
    "DataError",
    "InputMismatchError",
    "LongVAError",
    "SampleError",
    "SettingError",
    "SettingProblems",
    "VideoDecodeError",
    "VisualInputError",
    "setting_problem",
]


def __getattr__(name: str):
    if name == "ConfigError":  # the 0.1 name of SettingError
        import warnings

        warnings.warn("longva_plugins.errors.ConfigError is SettingError; use SettingError", DeprecationWarning,
                      stacklevel=2)
        return SettingError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
