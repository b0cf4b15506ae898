"""The README's Python example (the first ``python`` block of "The model from Python") runs as
written on the shipped nano and prints a decoded answer."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_python_example_runs_on_the_nano():
    text = README.read_text()
    section = text[text.index("## The model from Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "AutoModelForImageTextToText" in code and "generate(**inputs" in code
    printed = io.StringIO()
    namespace: dict = {}
    with contextlib.redirect_stdout(printed):
        exec(compile(code, str(README), "exec"), namespace)  # noqa: S102 -- the README's own example
    out, prompt = namespace["out"], namespace["inputs"]["input_ids"]
    assert out.shape[1] > prompt.shape[1] and (out[:, :prompt.shape[1]] == prompt).all()  # prompt, then new ids
    assert printed.getvalue() == namespace["processor"].decode(out[0, prompt.shape[1]:]) + "\n"
