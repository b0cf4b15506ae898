"""The README's Python example (the first ``python`` block of "The model from Python") runs as a
user runs it -- in a fresh interpreter on the installed package -- and prints a decoded answer."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"

CHECK = """
assert out.shape[1] > inputs["input_ids"].shape[1]
assert (out[:, :inputs["input_ids"].shape[1]] == inputs["input_ids"]).all()  # the prompt, then new ids
print("ANSWER=" + repr(processor.decode(out[0, inputs["input_ids"].shape[1]:])))
"""


def test_readme_python_example_runs_on_the_nano_in_a_fresh_process():
    text = README.read_text()
    section = text[text.index("## The model from Python"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert "AutoModelForImageTextToText" in code and "generate(**inputs" in code
    run = subprocess.run([sys.executable, "-c", code + CHECK], capture_output=True, text=True, timeout=600,
                         env={"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-3000:]
    last = run.stdout.splitlines()[-1]
    assert last.startswith("ANSWER=")
    answer = ast.literal_eval(last[len("ANSWER="):])
    # the example's own print is the decoded answer, just before the check's line
    assert run.stdout.endswith(answer + "\n" + last + "\n")
