"""Built-in V-NIAH plugin: the offline synthetic needle set and haystack."""

from __future__ import annotations

from longva_plugins.hookspecs import hookimpl


@hookimpl
def longva_needle_sets():
    from longva_plugins.vniah.needles import synthetic_needles

    return {"synthetic": synthetic_needles}


@hookimpl
def longva_haystacks():
    from longva_plugins.vniah.haystack import SyntheticHaystack

    return {"synthetic": SyntheticHaystack}
