"""The docs' claims tied to the code: links and anchors resolve, the model_args table is the
adapter's signature, every LONGVA_* variable the code reads is documented (and every documented one
is read), every ``longva-plugins`` command line the docs show parses, the README stays a guide."""

from __future__ import annotations

import ast
import inspect
import re
import shlex
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]
CODE_DIRS = ("src", "scripts", "benchmarks", "tasks", "examples", ".ci", "tests")
CONSTANTS = {"LONGVA_7B"}  # names of Python constants that look like variables (the memory model's)


def _slug(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    text = re.sub(r"[`*_]|\[([^\]]*)\]\([^)]*\)", lambda m: m.group(1) or "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    anchors, seen = set(), {}
    in_code = False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        if in_code or not line.startswith("#"):
            continue
        slug = _slug(line.lstrip("#"))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _prose(path: Path) -> str:
    return re.sub(r"```.*?```", "", path.read_text(), flags=re.S)


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_and_anchor_resolves(doc):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", _prose(doc)):
        if re.match(r"^[a-z]+:", target):
            continue  # https:, mailto:
        file_part, _, anchor = target.partition("#")
        path = (doc.parent / file_part).resolve() if file_part else doc
        if not path.exists():
            broken.append(f"{target}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in _anchors(path):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, broken


def test_the_readme_is_a_guide_of_at_most_300_lines():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 300, len(lines)
    headings = [line for line in lines if line.startswith("## ")]
    assert headings[:2] == ["## Install into an lmms-eval environment", "## On a fresh clone (offline)"]


def _table_rows(text: str, header: str) -> list[list[str]]:
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def test_the_model_args_table_is_the_adapters_signature():
    from longva_plugins.lmms_eval_plugin.adapter import MODEL_ARGS, LongVA

    rows = _table_rows((ROOT / "README.md").read_text(), "| model_arg |")
    documented = {}
    for names, default, _ in rows:
        for name in re.findall(r"`([a-z_]+)`", names):
            documented[name] = default
    assert set(documented) == set(MODEL_ARGS), set(documented) ^ set(MODEL_ARGS)
    for name, parameter in inspect.signature(LongVA.__init__).parameters.items():
        if name not in MODEL_ARGS or parameter.default is None:
            continue  # None: a computed default, described in words
        value = parameter.default
        shown = str(value).lower() if isinstance(value, bool) else str(value)
        assert shown in documented[name].replace("`", ""), (name, value, documented[name])


def _read_variables() -> set[str]:
    names = set()
    for folder in CODE_DIRS:
        for path in (ROOT / folder).rglob("*"):
            if path.suffix == ".py":
                for node in ast.walk(ast.parse(path.read_text())):
                    if isinstance(node, ast.Constant) and isinstance(node.value, str) \
                            and re.fullmatch(r"LONGVA_[A-Z0-9_]+", node.value) and node.value not in CONSTANTS:
                        names.add(node.value)
            elif path.suffix == ".sh" or (path.is_file() and path.parent.name == ".ci"):
                names.update(re.findall(r"\$\{?(LONGVA_[A-Z0-9_]+)", path.read_text()))
    return names


def _documented_variables() -> set[str]:
    return {name for doc in DOCS for name in re.findall(r"\bLONGVA_[A-Z0-9_]+\b", doc.read_text())
            if name not in CONSTANTS}


def test_every_environment_variable_is_documented_and_every_documented_one_is_read():
    read, documented = _read_variables(), _documented_variables()
    assert read, "no LONGVA_* variable found in the code"
    assert not read - documented, f"read but not documented: {sorted(read - documented)}"
    assert not documented - read, f"documented but never read: {sorted(documented - read)}"


def _shell_blocks(text: str) -> list[str]:
    """The bodies of the fenced blocks marked bash/sh (or unmarked)."""
    blocks, body, language = [], None, None
    for line in text.splitlines():
        if line.startswith("```"):
            if body is None:
                body, language = [], line[3:].strip()
            else:
                if language in ("", "bash", "sh", "console"):
                    blocks.append("\n".join(body))
                body = None
        elif body is not None:
            body.append(line)
    return blocks


def _command_lines() -> list[tuple[str, list[str]]]:
    found = []
    for doc in DOCS:
        for block in _shell_blocks(doc.read_text()):
            for line in block.replace("\\\n", " ").splitlines():
                line = line.split("  #")[0].strip()
                match = re.search(r"(?:^|/|--no-python\s+)longva-plugins\s+(.*)$", line)
                if match:
                    found.append((f"{doc.relative_to(ROOT)}: {line}", shlex.split(match.group(1))))
    return found


@pytest.mark.parametrize("where,argv", _command_lines(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_command_line_the_docs_show_parses(where, argv):
    from longva_plugins.cli import build_parser

    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        pytest.fail(f"{where}: does not parse (exit {exc.code})")
    if getattr(args, "command", None) == "train":  # its overrides are TrainingArguments / LongVA keys
        from longva_plugins.training.config import _refuse_unknown

        keys = [token[2:].split("=")[0] for token in args.overrides if token.startswith("--")]
        _refuse_unknown([k for k in keys if k != "set"], where)
