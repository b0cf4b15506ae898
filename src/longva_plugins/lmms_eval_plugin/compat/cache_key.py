"""Workaround 5: ``--use_cache`` keys on what the checkpoint holds.

lmms-eval's response cache keys every answer on the model name and the ``--model_args`` *string*:
a checkpoint retrained or a PEFT adapter replaced at the same path would be answered from the
stale cache. The ``longva`` model records an identity of what it loaded
(:func:`record_model_identity`: every checkpoint and adapter file's name, size and modification
time, the package version) and the wrapped ``ResponseCache.create`` adds it to the model arguments
it fingerprints -- only for the ``longva`` model ids; any other model's key is unchanged.
"""

from __future__ import annotations

import functools

from longva_plugins.lmms_eval_plugin.compat._common import MARK, unwrapped
from longva_plugins.lmms_eval_plugin.compat.registry import MODEL_ALIASES, MODEL_ID

#: The identity of what the ``longva`` model of this process loaded (workaround 5).
_MODEL_IDENTITY: dict[str, str] = {}
#: The model argument the identity is added as, in the response cache's fingerprint only.
IDENTITY_ARG = "longva_identity"


def record_model_identity(identity: str) -> None:
    """Called by the ``longva`` model once loaded: ``--use_cache`` keys then include ``identity``."""
    _MODEL_IDENTITY["identity"] = identity


def _with_identity(model, model_args):
    identity = _MODEL_IDENTITY.get("identity")
    if identity is None or model not in (MODEL_ID, *MODEL_ALIASES):
        return model_args
    if isinstance(model_args, dict):
        return {**model_args, IDENTITY_ARG: identity}
    text = str(model_args or "")
    return f"{text},{IDENTITY_ARG}={identity}" if text else f"{IDENTITY_ARG}={identity}"


def _wrap_response_cache_create(original):
    @functools.wraps(original)
    def create(cls, *args, **kwargs):
        if "model_args" in kwargs:
            kwargs["model_args"] = _with_identity(kwargs.get("model"), kwargs["model_args"])
        return original(cls, *args, **kwargs)

    setattr(create, MARK, True)
    return create


def patch_response_cache() -> bool:
    """Make ``ResponseCache.create`` fingerprint the loaded checkpoint (workaround 5). Idempotent;
    ``False`` when already applied or when this lmms-eval has no response cache."""
    found = unwrapped("lmms_eval.caching.response_cache", "ResponseCache", "create")
    if found is None:
        return False
    cache_cls, original = found
    cache_cls.create = classmethod(_wrap_response_cache_create(original.__func__))
    return True



def model_identity() -> str | None:
    """The identity the ``longva`` model of this process recorded, if it loaded one."""
    return _MODEL_IDENTITY.get("identity")


__all__ = ["IDENTITY_ARG", "model_identity", "patch_response_cache", "record_model_identity"]
