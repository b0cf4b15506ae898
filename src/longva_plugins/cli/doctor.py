"""``longva-plugins doctor``: what is installed, what is wired, and what to do about each problem."""

from __future__ import annotations

import importlib
import importlib.metadata
from dataclasses import dataclass

from longva_plugins.lmms_eval_plugin.compat import SUPPORTED_LMMS_EVAL


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""
    required: bool = True


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _check_package(dist: str, module: str, fix: str, required: bool = True) -> Check:
    version = _version(dist)
    if version is None:
        return Check(dist, False, "not installed", fix, required)
    try:
        importlib.import_module(module)
    except Exception as exc:  # report, do not crash: that is the point of doctor
        return Check(dist, False, f"{version} installed but import fails: {type(exc).__name__}: {exc}", fix, required)
    return Check(dist, True, version, required=required)


def _torch_checks() -> list[Check]:
    checks = [_check_package("torch", "torch", "pip install torch (the CPU build is enough for tests)")]
    if not checks[0].ok:
        return checks
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        checks.append(Check("CUDA", True, f"{torch.cuda.device_count()} device(s): {names}", required=False))
        bf16 = torch.cuda.is_bf16_supported()
        checks.append(
            Check("bfloat16", bf16, "supported" if bf16 else "not supported",
                  "use torch_dtype=float32; float16 overflows in Qwen2 ('!!!!' outputs)", required=False)
        )
    else:
        checks.append(Check("CUDA", False, "no CUDA device: CPU only (float32)", "nothing to do for CPU use", required=False))
    checks.append(
        _check_package("flash-attn", "flash_attn", "optional, GPU only: pip install 'longva-plugins[gpu]'", required=False)
    )
    return checks


def _video_checks() -> list[Check]:
    checks = [
        _check_package("av", "av", "pip install av", required=True),
        _check_package("decord", "decord", "optional: pip install 'longva-plugins[decord]'", required=False),
        _check_package("torchcodec", "torchcodec", "optional: pip install torchcodec", required=False),
    ]
    try:
        from longva_plugins.plugins import get_plugin_manager

        backends: dict[str, bool] = {}
        for contribution in get_plugin_manager().hook.longva_video_backends():
            backends.update(contribution or {})
        if backends:
            usable = [name for name, ok in backends.items() if ok]
            checks.append(
                Check("video backends", bool(usable), ", ".join(f"{n}{'' if ok else ' (unavailable)'}" for n, ok in backends.items()),
                      "install av (PyAV) or decord")
            )
    except Exception as exc:
        checks.append(Check("video backends", False, f"{type(exc).__name__}: {exc}", "reinstall longva-plugins"))
    return checks


def _wiring_checks() -> list[Check]:
    checks: list[Check] = []
    try:
        from longva_plugins.lmms_eval_plugin.compat import filelock_problem

        problem = filelock_problem()
    except Exception as exc:
        problem = f"{type(exc).__name__}: {exc}"
    checks.append(
        Check("filelock", problem is None, problem or _version("filelock") or "?",
              "pip install 'filelock>=3.16,<4.3' (lmms-eval 0.7.3 imports filelock._api)")
    )
    eps = [ep for ep in importlib.metadata.entry_points(group="lmms_eval.models") if ep.value.startswith("longva_plugins.")]
    checks.append(
        Check("lmms-eval entry point", bool(eps), ", ".join(f"{ep.name} -> {ep.value}" for ep in eps) or "not registered",
              "reinstall longva-plugins (pip install --force-reinstall --no-deps longva-plugins)")
    )
    try:
        from longva_plugins.lmms_eval_plugin import compat

        folders = compat.plugin_task_folders()
        checks.append(Check("task folders", bool(folders), "; ".join(folders) or "none", "reinstall longva-plugins"))
        class_path = compat.registered_model_class_path()
        ours = class_path == compat.MODEL_CLASS_PATH
        checks.append(
            Check("--model longva", ours, class_path or "?",
                  "another plugin overrides 'longva'; check `pip list` for lmms-eval plugins")
        )
        wrapped = compat.task_discovery_active()
        checks.append(
            Check("zero-flag task discovery", wrapped, "active" if wrapped else "inactive",
                  f"pass --include_path {compat.task_folder_hint()}")
        )
        fixed = not compat.loglikelihood_bug_present()
        checks.append(
            Check("loglikelihood results", fixed, "ok" if fixed else "lmms-eval stringifies (float, bool) results",
                  "use lmms-eval 0.7.3..0.7.x with longva-plugins installed")
        )
    except Exception as exc:
        checks.append(Check("lmms-eval wiring", False, f"{type(exc).__name__}: {exc}", f"pip install 'lmms-eval{SUPPORTED_LMMS_EVAL}'"))
    from longva_plugins.plugins import FAILED_PLUGINS

    for name, dist, message in FAILED_PLUGINS:
        checks.append(Check(f"plugin {name}", False, f"from {dist}: {message}", "fix or uninstall that package", required=False))
    return checks


def run_checks() -> list[Check]:
    """All doctor checks, in display order."""
    checks = [
        Check("longva-plugins", True, _version("longva-plugins") or "source checkout"),
        _check_package("lmms-eval", "lmms_eval", f"pip install 'lmms-eval{SUPPORTED_LMMS_EVAL}'"),
        _check_package("transformers", "transformers", "pip install 'transformers>=5,<6'"),
        _check_package("peft", "peft", "pip install peft"),
    ]
    checks += _torch_checks()
    checks += _video_checks()
    checks += _wiring_checks()
    return checks


def _run(args) -> int:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    checks = run_checks()
    table = Table(title="longva-plugins doctor", show_lines=False)
    table.add_column("check")
    table.add_column("status")
    table.add_column("detail")
    table.add_column("what to do")
    for check in checks:
        status = "[green]ok[/]" if check.ok else ("[red]problem[/]" if check.required else "[yellow]optional[/]")
        table.add_row(escape(check.name), status, escape(check.detail), "" if check.ok else escape(check.fix))
    Console().print(table)
    problems = [c for c in checks if c.required and not c.ok]
    return 1 if problems else 0


def register(subparsers) -> None:
    parser = subparsers.add_parser("doctor", help="check versions, devices, video backends and lmms-eval wiring")
    parser.set_defaults(func=_run)


__all__ = ["Check", "register", "run_checks"]
