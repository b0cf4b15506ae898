"""Built-in training plugin: a progress callback for every stage (rich console)."""

from __future__ import annotations

from longva_plugins.hookspecs import hookimpl


@hookimpl
def longva_trainer_callbacks(trainer_args, stage):
    from longva_plugins.training.progress import RichProgressCallback

    return [RichProgressCallback()]
