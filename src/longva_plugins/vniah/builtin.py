"""Built-in V-NIAH plugin: the offline needle sets (``synthetic``, LongVA-nano's ``nano``), their distractor
sets and the haystack."""

from __future__ import annotations

from longva_plugins.hookspecs import hookimpl


@hookimpl
def longva_needle_sets():
    from longva_plugins.nano.scenes import nano_needles
    from longva_plugins.vniah.needles import synthetic_needles

    return {"synthetic": synthetic_needles, "nano": nano_needles}


@hookimpl
def longva_distractor_sets():
    from longva_plugins.nano.scenes import nano_distractors
    from longva_plugins.vniah.needles import synthetic_distractors

    return {"synthetic": synthetic_distractors, "nano": nano_distractors}


@hookimpl
def longva_haystacks():
    from longva_plugins.vniah.haystack import SyntheticHaystack

    return {"synthetic": SyntheticHaystack}
