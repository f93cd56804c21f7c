"""Assemble ``reports/<name>/report.md`` (+ PNGs and ``report.json``) from one report config and budget.

Runs every dataset's stages (reusing finished ones), then writes the tables, figures, the setup the
numbers were measured on (machine, versions, seeds, budget flags) and every command that produced them.
"""

from __future__ import annotations

import os
import platform
import shlex
import subprocess
import sys
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from ddlight.report import dcbench
from ddlight.report.figures import FIGURES
from ddlight.report.methods_table import methods_table
from ddlight.report.outputs import saved_config
from ddlight.report.runner import Runner
from ddlight.report.study import DatasetPlan, DatasetResults, budget_for, load_spec
from ddlight.report.tables import (
    Ledger,
    search_section,
    table_i,
    table_iii_iv,
    table_v,
    table_vi,
    table_vii,
)
from ddlight.utils.io import atomic_json_dump, atomic_write

PACKAGES = ("torch", "torchvision", "lightning", "jsonargparse", "fvcore", "numpy", "matplotlib", "ddlight")


def machine() -> list[str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import torch

    lines = [
        f"- CPU: {cpu}; {os.cpu_count()} logical cores visible; torch threads: {torch.get_num_threads()}",
        f"- OS: {platform.platform()}",
    ]
    if torch.cuda.is_available():
        lines.append(f"- GPU: {torch.cuda.get_device_name(0)} (CUDA {torch.version.cuda})")
    else:
        lines.append("- GPU: none used (CUDA not available)")
    return lines


def versions() -> str:
    parts = [f"Python {platform.python_version()}"]
    for pkg in PACKAGES:
        try:
            parts.append(f"{pkg} {metadata.version(pkg)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{pkg} (not installed)")
    return ", ".join(parts)


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return "unknown (git not available)"
    if rev.returncode != 0:
        return "unknown (not a git checkout)"
    return rev.stdout.strip()[:12] + (" with uncommitted changes" if dirty.stdout.strip() else "")


def seeds(runner: Runner) -> str:
    """The seeds the stages ran with, read back from the configs LightningCLI saved."""
    everything, model = set(), set()
    for rec in runner.records.values():
        cfg_dir = rec.dir / "tb" / "fit"
        if (cfg_dir / "config.yaml").is_file():
            cfg = saved_config(cfg_dir)
            everything.add(cfg.get("seed_everything"))
            model.add((cfg.get("model", {}).get("init_args") or {}).get("seed"))
    fmt = lambda s: ", ".join(str(v) for v in sorted(s, key=str))  # noqa: E731
    return (
        f"seed_everything: {fmt(everything)}; model seeds: {fmt(model - {None})}. The evaluator's runs "
        "r = 0..n-1 start from seeds mix_seed(seed, 3, r) (ddlight.models.init), so 'mean ± std' is over "
        "n independently initialised and augmented networks."
    )


def _fig_lines(r: DatasetResults, out_dir: Path) -> list[str]:
    lines = []
    for key, (draw, caption) in FIGURES.items():
        name = f"{key}_{r.key}.png"
        path = draw(r, out_dir / name)
        if path is None:
            lines.append(f"- {caption}: nothing to plot for {r.title} in this report.\n")
        else:
            lines.append(f"### {r.title}: {caption}\n\n![{caption}]({name})\n")
    return lines


def check_report(config: str | Path, budget: str = "small", data_dirs: dict[str, str] | None = None) -> int:
    """Parse every command of the budget without running any; return how many were checked."""
    spec = load_spec(config)
    runner = Runner(spec.get("artifacts_dir", "artifacts/report"))
    n = 0
    for key, ds in spec["datasets"].items():
        plan = DatasetPlan(
            key, ds, budget_for(spec, budget, key), runner, (data_dirs or {}).get(key, ds["data_dir"])
        )
        if plan.available():
            print(f"[report] {plan.available()}", file=sys.stderr)
        n += len(plan.check())
    print(f"[report] {n} stage command(s) of budget {budget!r} parse", file=sys.stderr)
    return n


def build_report(
    config: str | Path,
    budget: str = "small",
    data_dirs: dict[str, str] | None = None,
    artifacts_dir: str | Path | None = None,
    reports_dir: str | Path | None = None,
    name: str | None = None,
    use_subprocess: bool = False,
    argv: list[str] | None = None,
) -> Path:
    """Run what the report needs and write it; return the path of ``report.md``."""
    t0 = time.perf_counter()
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    spec = load_spec(config)
    data_dirs = dict(data_dirs or {})
    unknown = set(data_dirs) - set(spec["datasets"])
    if unknown:
        raise ValueError(
            f"--data-dir names unknown dataset(s) {sorted(unknown)}; known: {sorted(spec['datasets'])}"
        )
    runner = Runner(artifacts_dir or spec.get("artifacts_dir", "artifacts/report"), subprocess=use_subprocess)
    out_dir = Path(reports_dir or spec.get("reports_dir", "reports")) / (name or f"{spec['name']}_{budget}")
    out_dir.mkdir(parents=True, exist_ok=True)

    budgets = {key: budget_for(spec, budget, key) for key in spec["datasets"]}
    results = [
        DatasetPlan(key, ds, budgets[key], runner, data_dirs.get(key, ds["data_dir"])).run()
        for key, ds in spec["datasets"].items()
    ]
    led = Ledger()
    body = _body(spec, results, led, out_dir)
    wall = time.perf_counter() - t0
    recs = list(runner.records.values())
    command = "python -m ddlight.report " + " ".join(shlex.quote(a) for a in (argv or []))
    head = _head(spec, budget, budgets, results, runner, recs, wall, command.strip(), started)
    text = "\n".join(head + body + _commands(recs)) + "\n"
    path = out_dir / "report.md"
    atomic_write(path, lambda fh: fh.write(text.encode()))
    atomic_json_dump(
        {
            "config": str(config),
            "budget": budget,
            "wall_seconds": wall,
            "stages": [
                {
                    "name": r.stage.name,
                    "dir": str(r.dir),
                    "executed": r.executed,
                    "wall_seconds": r.wall_seconds,
                }
                for r in recs
            ],
            "numbers": led.entries,
        },
        out_dir / "report.json",
        sort_keys=False,
    )
    print(f"[report] wrote {path} ({wall:.1f} s)", file=sys.stderr)
    return path


def _body(spec: dict[str, Any], results: list[DatasetResults], led: Ledger, out_dir: Path) -> list[str]:
    """The tables and figures, in the study's order."""
    refs = {key: ds.get("study", {}) for key, ds in spec["datasets"].items()}
    body: list[str] = [f"> {r.skipped}\n" for r in results if r.skipped]
    ran = [r for r in results if not r.skipped]
    body += ["## Table I: full-data training and model cost\n", table_i(led, ran, refs), ""]

    def table_name(r: DatasetResults) -> str:
        return f"Table {spec['datasets'][r.key].get('table', 'III')}"

    def table_v_and_export(r: DatasetResults) -> str:
        rel = os.path.relpath(r.dcbench_export, out_dir) if r.dcbench_export else "-"
        return (
            f"{table_v(led, r)}\n\nThe set ({r.dcbench_set}) is exported in DC-Bench's `distilled_results` "
            f"layout at `{rel}` (its `README.md` says how to run it in DC-Bench). DC-Bench's protocol: "
            f"{_protocol_text()}. In this budget: the runs and epochs in the table. Differences ddlight "
            "cannot remove: DC-Bench trains 1001 epochs and resets momentum at the lr decay.\n"
        )

    # (heading, whether a dataset has the section, how to render it), in the study's order.
    sections = [
        (
            lambda r: f"{table_name(r)} ({r.title}): original vs synthetic, cross-architecture",
            lambda r: bool(r.methods),  # a Methods-only report (no `distill` block) has no such rows
            lambda r: table_iii_iv(led, r, refs, f"{table_name(r)} ({r.title})"),
        ),
        (
            lambda r: f"Table V ({r.title}): ddlight's evaluator vs the DC-Bench protocol",
            lambda r: r.dcbench_set is not None,
            table_v_and_export,
        ),
        (
            lambda r: f"Table VI ({r.title}): DataDAM vs PAD, real vs noise initialisation",
            lambda r: len(r.methods) > 1,
            lambda r: table_vi(led, r, refs),
        ),
        (
            lambda r: f"Table VII ({r.title}): accuracy and training time vs IPC",
            lambda r: r.sweep is not None,
            lambda r: table_vii(led, r, refs),
        ),
        (
            lambda r: f"Methods ({r.title}): every method at every IPC under one protocol",
            lambda r: r.comparison is not None and bool(r.comparison.rows),
            lambda r: methods_table(led, r),
        ),
        (
            lambda r: f"Lossless IPC search ({r.title})",
            lambda r: r.search is not None,
            lambda r: search_section(led, r),
        ),
    ]
    for heading, applies, render in sections:
        body += [part for r in ran if applies(r) for part in (f"## {heading(r)}\n", render(r), "")]
    body.append("## Figures\n")
    for r in ran:
        body += _fig_lines(r, out_dir)
    return body


def _head(
    spec: dict[str, Any],
    budget: str,
    budgets: dict[str, Any],
    results: list[DatasetResults],
    runner: Runner,
    recs: list[Any],
    wall: float,
    command: str,
    started: str,
) -> list[str]:
    """Title, how it was produced and what it cost, the machine and the budget."""
    executed = [rec for rec in recs if rec.executed]
    ran_s = sum(r.wall_seconds for r in executed)
    reused_s = sum(r.wall_seconds for r in recs if not r.executed)
    head = [
        f"# ddlight reproduction report: {spec['name']} (budget `{budget}`)\n",
        f"Produced by `{command}` (started {started}).\n",
        f"**Wall time of this invocation: {wall:.1f} s ({wall / 60:.1f} min)**; it ran "
        f"{len(executed)} stage(s) ({ran_s:.1f} s) and reused {len(recs) - len(executed)} finished "
        f"one(s) ({reused_s:.1f} s when they ran). Every number below is read from the files these "
        "stages wrote (`report.json` lists each with its source); columns headed 'study reports' quote "
        "the study's published numbers.\n",
        "## Setup\n",
        *machine(),
        f"- Software: {versions()}; ddlight revision {git_revision()}",
        f"- Seeds: {seeds(runner)}",
        f"- Budget `{budget}`: {spec['budgets'][budget].get('description', '').strip()}",
        "",
        "Budget flags per dataset (added to each stage's command; see 'Commands'):\n",
        "```yaml\n" + yaml.safe_dump(budgets, sort_keys=False, width=110).strip() + "\n```\n",
    ]
    return head + [f"{r.title}: {r.note}\n" for r in results if not r.skipped and r.note]


def _commands(recs: list[Any]) -> list[str]:
    cmds = [
        "## Commands\n",
        "Each stage in the order it was needed, with the command(s) a user would type:\n",
    ]
    for rec in recs:
        status = "ran" if rec.executed else "reused"
        cmds.append(f"- `{rec.stage.name}` ({status}; {rec.wall_seconds:.1f} s; `{rec.dir}`)\n")
        cmds.append("  ```bash\n" + "\n".join(f"  {c}" for c in rec.commands) + "\n  ```")
    return cmds


def _protocol_text() -> str:
    p = dcbench.PROTOCOL
    return (
        f"{p['num_runs']} runs × {p['epochs']} epochs, SGD lr {p['lr']} momentum {p['momentum']} "
        f"weight decay {p['weight_decay']}, batch {p['batch_size']}, "
        "lr ×0.1 after epoch 501 with a fresh SGD, "
        f"DSA {p['dsa_strategy']}, ConvNet width {p['net']['width']} depth {p['net']['depth']} "
        f"{p['net']['norm']}"
    )
