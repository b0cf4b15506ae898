"""LongVA-nano's data and report: procedural scenes and needles (:mod:`.scenes`), text
needle-in-a-haystack samples (:mod:`.text`), accuracy tables and heatmaps (:mod:`.report`)."""
