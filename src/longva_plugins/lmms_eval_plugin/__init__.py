"""longva-plugins in lmms-eval: the ``longva`` model (:mod:`.adapter`, its model-args checks in
:mod:`.settings`, visuals in :mod:`.visuals`, the V-NIAH contract in :mod:`.protocols`), the task
functions behind the shipped task folders (:mod:`.task_utils`), the mini-benchmark generator
(:mod:`.minibench`), the entry point (:mod:`.entry_point`) and the compatibility workarounds, one
module each (:mod:`.compat`: the only code that imports lmms-eval's internals).

Importing this package is cheap: it imports neither lmms-eval nor torch.
"""
