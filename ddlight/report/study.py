"""The study's experiments as stages: which commands each table needs, run once, read back.

A report config (``configs/report_mnist.yaml``) names, per dataset, the stage configs the study uses
(``configs/<dataset>/baseline.yaml``, ``configs/<dataset>/datadam.yaml``, ...) and, per budget, the flags
that shrink or grow them. This module turns that into :class:`~ddlight.report.runner.Stage` objects -
the same command lines a user would type - runs them through a :class:`~ddlight.report.runner.Runner`
(which skips what a previous run finished) and collects their outputs for the tables and figures.

Budget override roles (each a mapping of dotted flag -> value, merged in the order listed, later wins):

=====================  ===================================================================================
``convnet``            every stage that uses the distillation network (e.g. a narrower width for tests)
``baseline``           full-data training of every network; ``baseline_cross_arch`` adds to it for others
``<method>``           every distillation of that method (``datadam``, ``pad``); then ``<method>_<init>``
                       (``_real``/``_noise``) and ``<method>_ipc<k>`` for one IPC
``experts``            PAD's expert buffer
``eval``               evaluation with ddlight's recipe; ``eval_cross_arch`` adds to it for other networks
``eval_dcbench``       the DC-Bench protocol evaluation (``configs/<dataset>/evaluate_dcbench.yaml``)
``search``             ``start``, ``max_ipc``, ``target`` ({accuracy: x} or {within: x}) and ``distill`` /
                       ``eval`` flags for the lossless-IPC probes
=====================  ===================================================================================

A dataset's ``distill`` entry per method maps ``real``/``noise``/``ipc<k>`` to stage configs and may name
``evaluate``: the evaluation config of that method's sets (PAD's ZCA-whitened CIFAR sets need the
whitened real data of ``configs/cifar10/evaluate_zca.yaml``; the dataset's ``evaluate`` otherwise).

Budgets also hold ``cross_arch`` (which of the dataset's extra networks to run), ``cross_arch_inits`` (on
which initialisations), ``cross_arch_net`` (per network, init_args to change), ``ipcs`` (the IPC sweep),
``note`` (a sentence for the report) and the Methods section's keys (:mod:`ddlight.report.compare`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ddlight.artifacts import STAGE_BUFFER_DIR, SYNTHETIC_FILE
from ddlight.methods import DISTILLERS
from ddlight.report.compare import COMPARE, HARD, Comparison, comparison
from ddlight.report.ipc_search import SearchResult, Target, search_lossless_ipc
from ddlight.report.outputs import (
    BaselineOut,
    DistillOut,
    EvalOut,
    ExpertsOut,
    read_baseline,
    read_distill,
    read_eval,
    read_experts,
)
from ddlight.report.runner import Runner, Stage, flags
from ddlight.report.spec import budget_for, config_ipc, load_spec  # noqa: F401 (re-exported)

STUDY = "study"
DCBENCH = "dcbench"


@dataclass(frozen=True)
class Task:
    """A stage and what its output is for: ``kind`` baseline/experts/set/eval/export, ``label`` the
    network, ``set`` the synthetic set's key, ``protocol`` the evaluation protocol."""

    kind: str
    stage: Stage
    label: str = ""
    set: str = ""
    protocol: str = ""


@dataclass
class Probe:
    ipc: int
    distill: str
    eval: str
    result: EvalOut


@dataclass
class SearchOutcome:
    target: Target
    result: SearchResult
    probes: list[Probe]
    method: str
    init: str


@dataclass
class DatasetResults:
    """Everything a dataset's tables and figures show, read from the stages' outputs."""

    key: str
    title: str
    net: str  # the distillation network's short label (column headings, baseline key)
    network: str  # its description
    skipped: str | None = None
    baselines: dict[str, BaselineOut] = field(default_factory=dict)
    sets: dict[str, DistillOut] = field(default_factory=dict)
    main_sets: dict[tuple[str, str], str] = field(default_factory=dict)  # (method, init) -> set key
    evals: dict[tuple[str, str, str], EvalOut] = field(default_factory=dict)
    experts: ExpertsOut | None = None
    dcbench_export: Path | None = None
    dcbench_set: str | None = None
    search: SearchOutcome | None = None
    methods: tuple[str, ...] = ()
    tables_method: str = "datadam"
    sweep: tuple[str, list[int]] | None = None
    comparison: Comparison | None = None
    cross_arch: list[str] = field(default_factory=list)
    note: str = ""


def command_shape(stage: Stage) -> tuple:
    """A stage's command with the synthetic set's path blanked (it does not exist before the run, and
    nothing checks it at parse time)."""
    args = list(stage.args)
    for i in range(len(args) - 1):
        if args[i] == "--data.init_args.path":
            args[i + 1] = "<set>"
    return stage.kind, stage.config, tuple(args)


def needs_experts(method: str) -> bool:
    """Whether ``method``'s distillation reads expert trajectories (``Distiller.needs_experts``), so its
    stage depends on the Experts stage."""
    cls = DISTILLERS.get(method)
    return cls is not None and cls.needs_experts


def set_key(method: str, init: str, ipc: int) -> str:
    return f"{method}-{init}-ipc{ipc}"


class DatasetPlan:
    """Stage builders and the section runner for one dataset of the report."""

    def __init__(self, key: str, spec: dict[str, Any], budget: dict[str, Any], runner: Runner, data_dir: str):
        self.key, self.spec, self.budget, self.runner = key, spec, budget, runner
        self.data_dir = data_dir
        self.net_label = spec["network"]["label"]
        self.eval_configs: dict[str, str] = {}  # distillation stage name -> its method's evaluation config

    # ------------------------------------------------------------------------------------ overrides
    def roles(self, *names: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for name in names:
            out.update(self.budget.get(name) or {})
        return out

    def net_spec(self, arch: str) -> dict[str, Any]:
        net = copy.deepcopy(self.spec["cross_arch"][arch])
        net.setdefault("init_args", {}).update((self.budget.get("cross_arch_net") or {}).get(arch, {}))
        return net

    # --------------------------------------------------------------------------------------- stages
    def baseline(self, arch: str | None = None) -> Stage:
        over = {"data.init_args.data_dir": self.data_dir}
        if arch is None:
            over |= self.roles("convnet", "baseline")
        else:
            over |= {"model.init_args.net": self.net_spec(arch)} | self.roles(
                "baseline", "baseline_cross_arch"
            )
        label = arch or self.net_label
        return Stage(f"{self.key}-baseline-{label}", "baseline", self.spec["baseline"], tuple(flags(over)))

    def experts(self) -> Stage:
        over = {"data.init_args.data_dir": self.data_dir} | self.roles("convnet", "experts")
        return Stage(f"{self.key}-experts", "experts", self.spec["experts"], tuple(flags(over)))

    def distill(
        self,
        method: str,
        init: str,
        ipc: int | None = None,
        extra: dict | None = None,
        configs: dict[str, Any] | None = None,
        roles: tuple[str, ...] | None = None,
        prefix: str = "",
    ) -> Stage:
        """The distillation stage of ``method`` from ``init``; ``configs``/``roles``/``prefix`` default to
        the Tables' (``distill`` block, roles ``<method>``, ``<method>_<init>``, no name prefix)."""
        configs = configs or self.spec["distill"][method]
        entry = configs.get(f"ipc{ipc}") if init == "real" and ipc is not None else None
        entry = entry or configs[init]
        # A config path, or {config, flags} for a variant that has no YAML of its own (MHIST from noise).
        config, base = (entry["config"], entry.get("flags", {})) if isinstance(entry, dict) else (entry, {})
        over: dict[str, Any] = {"data.init_args.data_dir": self.data_dir, **base}
        deps: tuple[Stage, ...] = ()
        if needs_experts(method):
            experts = self.experts()
            deps = (experts,)
            over["model.init_args.buffer_dir"] = str(self.runner.dir_of(experts) / STAGE_BUFFER_DIR)
        key = "model.init_args.ipc"
        common = self.roles("convnet", *(roles or (method, f"{method}_{init}")))
        eff_ipc = int(ipc if ipc is not None else common.get(key, config_ipc(config)))
        over |= common | self.roles(f"{method}_ipc{eff_ipc}") | (extra or {})
        if int(over.get(key, config_ipc(config))) != eff_ipc:  # an explicit IPC beats the budget's
            over[key] = eff_ipc
        name = f"{self.key}-{prefix}{set_key(method, init, eff_ipc)}" + ("-search" if extra else "")
        if "evaluate" in configs:  # the method's sets need their own evaluation (e.g. ZCA-whitened data)
            self.eval_configs[name] = configs["evaluate"]
        return Stage(name, "distill", config, tuple(flags(over)), deps)

    def evaluate(
        self, distilled: Stage, arch: str | None = None, protocol: str = STUDY, extra: dict | None = None
    ) -> Stage:
        default = self.eval_configs.get(distilled.name, self.spec["evaluate"])
        config = self.spec["dcbench"]["config"] if protocol == DCBENCH else default
        over: dict[str, Any] = {
            "data.init_args.path": str(self.runner.dir_of(distilled) / SYNTHETIC_FILE),
            "data.init_args.real.init_args.data_dir": self.data_dir,
        }
        if arch is not None:
            over["model.init_args.net"] = self.net_spec(arch)
            over |= self.roles("eval", "eval_cross_arch")
        elif protocol == DCBENCH:
            over |= self.roles("convnet", "eval_dcbench")
        else:
            over |= self.roles("convnet", "eval")
        over = over | (extra or {})
        name = f"{distilled.name}-eval-{arch or self.net_label}-{protocol}"
        return Stage(name, "eval", config, tuple(flags(over)), (distilled,))

    def dcbench_export(self, distilled: Stage) -> Stage:
        path = str(self.runner.dir_of(distilled) / SYNTHETIC_FILE)
        return Stage(f"{distilled.name}-dcbench-export", "dcbench_export", None, (path,), (distilled,))

    # ----------------------------------------------------------------------------------------- run
    def available(self) -> str | None:
        """``None`` when the dataset's files are there, else the reason it is skipped."""
        need = Path(self.data_dir) / self.spec["requires"]
        if need.exists():
            return None
        return (
            f"{self.spec['title']}: skipped - {need} not found (no {self.spec['title']} folder at "
            f"{self.data_dir}; {self.spec.get('how_to_get', 'see README')})."
        )

    def tasks(self) -> list[Task]:
        """Every stage the tables need, in the order they run (the search's probes come later, as they
        depend on measured accuracies). Shared by :meth:`run` and :meth:`check`."""
        spec, budget = self.spec, self.budget
        out: list[Task] = []

        def add_set(method: str, init: str, ipc: int | None = None, main: bool = False) -> tuple[Stage, str]:
            stage = self.distill(method, init, ipc)
            key = stage.name[len(self.key) + 1 :]
            out.extend(self.experts_tasks(method))
            out.append(Task("set", stage, label="main" if main else "", set=key))
            return stage, key

        def add_eval(stage: Stage, key: str, arch: str | None = None, protocol: str = STUDY) -> None:
            out.append(
                Task("eval", self.evaluate(stage, arch, protocol), arch or self.net_label, key, protocol)
            )

        # Table I and the "original" rows.
        out.append(Task("baseline", self.baseline(), self.net_label))
        for arch in self.cross_arch():
            out.append(Task("baseline", self.baseline(arch), arch))
        # Tables III/IV and VI: each method from real and from noise initialisation.
        xinits = budget.get("cross_arch_inits", ["real", "noise"])
        for method in spec.get("distill", {}):
            for init in ("real", "noise"):
                stage, key = add_set(method, init, main=True)
                add_eval(stage, key)
                if method == spec.get("tables_method", "datadam") and init in xinits:
                    for arch in self.cross_arch():
                        add_eval(stage, key, arch)
        # Table VII: one method at growing IPC.
        if "ipc_sweep" in spec:
            method = spec["ipc_sweep"]["method"]
            for ipc in budget.get("ipcs", spec["ipc_sweep"]["ipcs"]):
                stage, key = add_set(method, "real", int(ipc))
                add_eval(stage, key)
        # Table V: one set, ddlight's recipe vs DC-Bench's protocol, and the export for DC-Bench itself.
        if "dcbench" in spec:
            stage, key = add_set(spec["dcbench"]["method"], spec["dcbench"]["init"])
            add_eval(stage, key, protocol=DCBENCH)
            out.append(Task("export", self.dcbench_export(stage), set=key))
        out += self.compare_tasks()  # the Methods section
        seen: set[str] = set()
        return [t for t in out if not (t.stage.name in seen or seen.add(t.stage.name))]

    def compare_tasks(self) -> list[Task]:
        """The Methods section's distillations and evaluations (:mod:`ddlight.report.compare`), in row
        order."""
        cmp = comparison(self.spec, self.budget)
        if cmp is None:
            return []
        configs = self.spec[COMPARE]["methods"]
        hard = {"data.init_args.labels": HARD} | self.roles(f"{COMPARE}_eval")
        learned = self.roles(f"{COMPARE}_eval")
        out: list[Task] = []
        for row in cmp.rows:
            entry = configs[row.method]
            stage = self.distill(
                row.method,
                "real",
                row.ipc,
                configs=entry if isinstance(entry, dict) else {"real": entry},
                roles=(COMPARE, f"{COMPARE}_{row.method}"),
                prefix=f"{COMPARE}-",
            )
            out += self.experts_tasks(row.method)
            out.append(Task("set", stage, set=row.set))
            ev = self.evaluate(stage, protocol=HARD, extra=hard)
            out.append(Task("eval", ev, self.net_label, row.set, HARD))
            if row.method in cmp.learned_labels:
                ev = self.evaluate(stage, protocol=STUDY, extra=learned)
                out.append(Task("eval", ev, self.net_label, row.set, STUDY))
        return out

    def experts_tasks(self, method: str) -> list[Task]:
        return [Task("experts", self.experts())] if needs_experts(method) else []

    def cross_arch(self) -> list[str]:
        return list(self.budget.get("cross_arch", list(self.spec.get("cross_arch", {}))))

    def run(self) -> DatasetResults:
        spec = self.spec
        res = DatasetResults(self.key, spec["title"], self.net_label, spec["network"]["description"])
        res.skipped = self.available()
        if res.skipped:
            return res
        res.note = self.budget.get("note", "")
        res.methods = tuple(spec.get("distill", {}))
        res.tables_method = spec.get("tables_method", "datadam")
        res.cross_arch = self.cross_arch()
        res.comparison = comparison(spec, self.budget)
        for task in self.tasks():
            rec = self.runner.run(task.stage)
            if task.kind == "baseline":
                res.baselines[task.label] = read_baseline(rec.dir)
            elif task.kind == "set":
                res.sets[task.set] = read_distill(rec.dir)
                if task.label == "main":
                    method, init = task.set.split("-")[:2]
                    res.main_sets[(method, init)] = task.set
            elif task.kind == "eval":
                res.evals[(task.set, task.label, task.protocol)] = read_eval(rec.dir)
            elif task.kind == "experts":
                res.experts = read_experts(rec.dir)
            elif task.kind == "export":
                res.dcbench_export = rec.dir / "distilled_results"
                res.dcbench_set = task.set
        if "ipc_sweep" in spec:
            method = spec["ipc_sweep"]["method"]
            ipcs = [int(i) for i in self.budget.get("ipcs", spec["ipc_sweep"]["ipcs"])]
            res.sweep = (method, [res.sets[set_key(method, "real", i)].ipc for i in ipcs])
        if "search" in spec and self.budget.get("search"):
            res.search = self.run_search(res)
        return res

    def check(self) -> list[Stage]:
        """Parse every command this budget would run (the search's first probe standing for all of them)
        without running any, so a typo in a flag fails in seconds rather than an hour into a run."""
        stages = [t.stage for t in self.tasks()]
        s = self.budget.get("search")
        if "search" in self.spec and s:
            method, init = self.spec["search"]["method"], self.spec["search"].get("init", "real")
            probe = self.distill(method, init, int(s.get("start", 1)), extra=s.get("distill") or {})
            stages += [probe, self.evaluate(probe, protocol="search", extra=s.get("eval") or {})]
        checked: set[tuple] = set()
        for stage in stages:
            shape = command_shape(stage)
            if shape not in checked:  # evaluations of different sets parse alike: one stands for all
                checked.add(shape)
                self.runner.check(stage)
        return stages

    def run_search(self, res: DatasetResults) -> SearchOutcome:
        s = self.budget["search"]
        method, init = self.spec["search"]["method"], self.spec["search"].get("init", "real")
        full = float(res.baselines[self.net_label].accuracy)
        target = Target(
            accuracy=s["target"].get("accuracy"),
            within=s["target"].get("within"),
            full_accuracy=full,
        )
        probes: list[Probe] = []

        def evaluate(ipc: int) -> float:
            distilled = self.distill(method, init, ipc, extra=s.get("distill") or {})
            drec = self.runner.run(distilled)
            erec = self.runner.run(self.evaluate(distilled, protocol="search", extra=s.get("eval") or {}))
            out = read_eval(erec.dir)
            probes.append(Probe(ipc, str(drec.dir), str(erec.dir), out))
            return float(out.mean)

        result = search_lossless_ipc(
            evaluate, target.threshold, start=int(s.get("start", 1)), max_ipc=s.get("max_ipc")
        )
        return SearchOutcome(target, result, probes, method, init)
