"""A report config: reading it, the budget sections and their role names (listed in
:mod:`ddlight.report.study`), and what a stage config runs with."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from ddlight.report.compare import is_compare_role
from ddlight.report.runner import config_alone

FLAG_ROLES = {
    "convnet",
    "baseline",
    "baseline_cross_arch",
    "experts",
    "eval",
    "eval_cross_arch",
    "eval_dcbench",
}
OTHER_KEYS = {"search", "cross_arch", "cross_arch_inits", "cross_arch_net", "ipcs", "note"}
METHOD_ROLE = re.compile(r"^[a-z]+(_(real|noise|ipc\d+))?$")


def load_spec(path: str | Path) -> dict[str, Any]:
    spec = yaml.safe_load(Path(path).read_text())
    for key in ("name", "datasets", "budgets"):
        if key not in spec:
            raise ValueError(f"report config {path}: missing top-level key {key!r}")
    return spec


def budget_for(spec: dict[str, Any], budget: str, dataset: str) -> dict[str, Any]:
    """The budget's section for ``dataset``, with every role name checked (a typo would silently change
    nothing, and the report would claim a budget it did not run)."""
    if budget not in spec["budgets"]:
        raise ValueError(f"unknown budget {budget!r}; the config defines {sorted(spec['budgets'])}")
    section = (spec["budgets"][budget] or {}).get(dataset) or {}
    methods = set(spec["datasets"][dataset].get("distill", {}))
    for key in section:
        if key in FLAG_ROLES or key in OTHER_KEYS or is_compare_role(key, spec["datasets"][dataset]):
            continue
        if METHOD_ROLE.match(key) and key.split("_")[0] in methods:
            continue
        raise ValueError(f"budget {budget!r}, dataset {dataset!r}: unknown key {key!r}")
    return section


def config_ipc(config: str) -> int:
    """The IPC the config runs with, defaults included (the parsed config, not the YAML text)."""
    return int(config_alone(str(Path(config).resolve()), ()).model.init_args.ipc)
