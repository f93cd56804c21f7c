"""The study's tables in Markdown, every cell formatted from a :class:`~ddlight.report.outputs.Measured`.

Formatting goes through a :class:`Ledger`, which records each printed number with its value and source
file; ``report.json`` is that ledger. Numbers the study published appear only in columns headed "study
reports", taken from the report config, never mixed with measured ones.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ddlight.methods import DISTILLERS
from ddlight.report.outputs import EvalOut, Measured
from ddlight.report.study import DCBENCH, STUDY, DatasetResults, set_key

DASH = "-"


class Ledger:
    """Formats measured numbers and remembers, per report section, what was printed from which file."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.section = ""

    def _record(
        self, text: str, value: float, sources: Sequence[Measured], formula: str | None = None
    ) -> str:
        self.entries.append(
            {
                "section": self.section,
                "text": text,
                "value": value,
                "formula": formula,
                "sources": [{"file": m.file, "key": m.key, "value": m.value} for m in sources],
            }
        )
        return text

    def pct(self, m: Measured) -> str:
        return self._record(f"{100 * m.value:.2f}", m.value, [m])

    def pm(self, mean: Measured, std: Measured) -> str:
        return f"{self.pct(mean)} ± {self.pct(std)}"

    def secs(self, m: Measured) -> str:
        return self._record(format_seconds(m.value), m.value, [m])

    def count(self, m: Measured) -> str:
        return self._record(f"{int(m.value):,}", m.value, [m])

    def millions(self, m: Measured) -> str:
        return self._record(f"{m.value / 1e6:.2f}M", m.value, [m])

    def double_millions(self, m: Measured) -> str:
        return self._record(f"{2 * m.value / 1e6:.2f}M", 2 * m.value, [m], formula="2 * a")

    def per_step(self, total: Measured, steps: Measured) -> str:
        value = total.value / max(steps.value, 1.0)
        return self._record(format_seconds(value), value, [total, steps], formula="a / b")

    def score(self, m: Measured) -> str:
        """A score or a difference of accuracies, both fractions (HLR, IOR, LRS, ARS)."""
        return self._record(f"{m.value:.3f}", m.value, [m])

    def megabytes(self, m: Measured) -> str:
        return self._record(f"{m.value:,.0f}", m.value, [m])

    def speedup(self, full: Measured, syn: Measured) -> str:
        ratio = full.value / syn.value
        return self._record(f"{ratio:.1f}×", ratio, [full, syn], formula="a / b")


def format_seconds(value: float) -> str:
    """One decimal, except that sub-second times (an MLP's 20 batches) keep two significant digits
    instead of reading "0.0 s"."""
    return f"{value:.1f} s" if abs(value) >= 1 else f"{value:.2g} s"


def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def study_pct(value: float | None) -> str:
    return DASH if value is None else f"{100 * value:.2f}"


def method_title(method: str) -> str:
    """The method's own display name (``Distiller.display_name``); a key no method has stays as written."""
    cls = DISTILLERS.get(method)
    return cls.display_name if cls is not None else method


def eval_cell(led: Ledger, ev: EvalOut | None, with_time: bool = True) -> str:
    if ev is None:
        return DASH
    text = led.pm(ev.mean, ev.std)
    return f"{text} ({led.secs(ev.train_seconds_per_run)})" if with_time else text


def training_desc(epochs: int, batches: Any) -> str:
    """Lightning's ``limit_train_batches`` semantics: a value in [0, 1] is a fraction, above 1 a count.

    (Saved configs hold it as a float: jsonargparse tries ``float`` first for Lightning's
    ``float | int`` annotation, so a flag of ``1`` means the whole epoch, never one batch.)
    """
    if batches is None or float(batches) == 1.0:
        return f"{epochs} epoch(s)"
    if float(batches) < 1.0:
        return f"{epochs} epoch(s) × {100 * float(batches):g} % of the batches"
    return f"{epochs} epoch(s) × {int(batches)} batches"


def eval_protocol(ev: EvalOut) -> str:
    return f"{ev.num_runs} run(s) × {ev.epochs} epochs, {ev.schedule} schedule"


# ---------------------------------------------------------------------------------------------- tables
def table_i(led: Ledger, results: Sequence[DatasetResults], refs: dict[str, dict]) -> str:
    led.section = "Table I"
    rows = []
    for r in results:
        b = r.baselines.get(r.net)
        if b is None:
            continue
        ref = refs.get(r.key, {})
        rows.append(
            [
                r.title,
                r.network,
                led.pct(b.accuracy),
                led.count(b.params),
                led.millions(b.macs),
                led.double_millions(b.macs),
                training_desc(b.epochs, b.batches),
                led.secs(b.train_seconds),
                study_pct(ref.get("full_accuracy")),
                str(ref.get("flops", DASH)),
            ]
        )
    header = [
        "dataset",
        "network",
        "full-data test acc. (%)",
        "parameters",
        "MACs / image (fvcore 'flops')",
        "≈ FLOPs (2 × MACs)",
        "training",
        "training time",
        "study reports: acc. (%)",
        "study reports: FLOPs",
    ]
    return (
        md_table(header, rows)
        + "\n\nfvcore counts one multiply-add as one 'flop', i.e. MACs; conventional FLOPs are about twice"
        " that. The study's FLOPs column is quoted as published."
    )


def table_iii_iv(led: Ledger, r: DatasetResults, refs: dict[str, Any], name: str) -> str:
    led.section = name
    net = r.net
    method = r.tables_method
    archs = [net, *r.cross_arch]
    header = ["training set", "IPC"] + [f"{a}: acc. (%) (time/run)" for a in archs]
    header += [f"study reports: {net} (%)", "study reports: MLP (%)"]
    rows = []
    orig = ["original (full data)", DASH]
    for a in archs:
        b = r.baselines.get(a)
        orig.append(DASH if b is None else f"{led.pct(b.accuracy)} ({led.secs(b.train_seconds)})")
    ref = refs.get(r.key, {})
    orig += [study_pct(ref.get("full_accuracy")), DASH]
    rows.append(orig)
    for init in ("real", "noise"):
        key = r.main_sets.get((method, init))
        if key is None:
            continue
        row = [f"{method_title(method)}, {init} init", str(r.sets[key].ipc)]
        for a in archs:
            row.append(eval_cell(led, r.evals.get((key, a, STUDY))))
        row += [
            study_pct(ref.get("sets", {}).get(key)),
            study_pct(ref.get("cross_arch", {}).get("MLP", {}).get(key)),
        ]
        rows.append(row)
    shown = {k for (m, _), k in r.main_sets.items() if m == method}
    protocols = sorted(
        {f"{a}: {eval_protocol(e)}" for (k, a, p), e in r.evals.items() if p == STUDY and k in shown}
    )
    orig_desc = sorted({f"{a}: {training_desc(b.epochs, b.batches)}" for a, b in r.baselines.items()})
    return (
        md_table(header, rows)
        + f"\n\nSynthetic rows: {'; '.join(protocols)} (mean ± std over the runs; time = training time per"
        f" run). Original rows: one network trained on the full training set ({'; '.join(orig_desc)})."
    )


def table_vi(led: Ledger, r: DatasetResults, refs: dict[str, Any]) -> str:
    led.section = f"Table VI ({r.title})"
    net = r.net
    ref = refs.get(r.key, {}).get("sets", {})
    rows = []
    for method in r.methods:
        for init in ("real", "noise"):
            key = r.main_sets.get((method, init))
            if key is None:
                continue
            s = r.sets[key]
            rows.append(
                [
                    method_title(method),
                    init,
                    str(s.ipc),
                    eval_cell(led, r.evals.get((key, net, STUDY)), with_time=False),
                    led.secs(r.evals[(key, net, STUDY)].train_seconds_per_run),
                    f"{led.secs(s.distill_seconds)} ({s.iterations} it.)",
                    study_pct(ref.get(key)),
                ]
            )
    header = [
        "method",
        "init",
        "IPC",
        f"{net} acc. (%)",
        "training time / run",
        "distillation",
        "study reports (%)",
    ]
    text = md_table(header, rows)
    if r.experts is not None and r.experts.test_acc:
        accs = sorted(r.experts.test_acc, key=float)
        text += (
            f"\n\nPAD's expert buffer: {len(accs)} expert(s) × {r.experts.epochs} epochs; test accuracy "
            f"after the last epoch {led.pct(accs[0])} to {led.pct(accs[-1])} %."
        )
    return text


def table_vii(led: Ledger, r: DatasetResults, refs: dict[str, Any]) -> str:
    led.section = f"Table VII ({r.title})"
    method, ipcs = r.sweep  # type: ignore[misc]
    net = r.net
    full = r.baselines[net]
    ref = refs.get(r.key, {})
    rows = [
        [
            "original (full data)",
            DASH,
            led.pct(full.accuracy),
            led.secs(full.train_seconds),
            led.speedup(full.train_seconds, full.train_seconds),
            DASH,
            study_pct(ref.get("full_accuracy")),
        ]
    ]
    for ipc in ipcs:
        key = set_key(method, "real", ipc)
        ev, s = r.evals[(key, net, STUDY)], r.sets[key]
        rows.append(
            [
                f"{method_title(method)} IPC {ipc}",
                str(ipc * s.num_classes),
                led.pm(ev.mean, ev.std),
                led.secs(ev.train_seconds_per_run),
                led.speedup(full.train_seconds, ev.train_seconds_per_run),
                led.secs(s.distill_seconds),
                study_pct(ref.get("sets", {}).get(key)),
            ]
        )
    header = [
        "training set",
        "images",
        f"{net} acc. (%)",
        "training time / run",
        "training speed-up",
        "distillation time",
        "study reports (%)",
    ]
    return (
        md_table(header, rows)
        + f"\n\nFull data: {training_desc(full.epochs, full.batches)}; synthetic sets: "
        + "; ".join(sorted({eval_protocol(r.evals[(set_key(method, "real", i), net, STUDY)]) for i in ipcs}))
        + ". Speed-up = full-data training time / synthetic training time per run, both measured here."
    )


def table_v(led: Ledger, r: DatasetResults) -> str:
    led.section = f"Table V ({r.title})"
    net = r.net
    key = r.dcbench_set
    rows = []
    for label, protocol in (
        ("ddlight evaluator (the study's recipe)", STUDY),
        ("DC-Bench protocol", DCBENCH),
    ):
        ev = r.evals.get((key, net, protocol))  # type: ignore[arg-type]
        if ev is None:
            continue
        rows.append(
            [
                label,
                ev.architecture,
                str(ev.num_runs),
                str(ev.epochs),
                ev.schedule,
                led.pm(ev.mean, ev.std),
                led.secs(ev.train_seconds_per_run),
            ]
        )
    header = ["evaluation", "network", "runs", "epochs", "lr schedule", "acc. (%)", "training time / run"]
    return md_table(header, rows)


def search_section(led: Ledger, r: DatasetResults) -> str:
    led.section = f"Lossless IPC search ({r.title})"
    s = r.search
    assert s is not None
    net = r.net
    full = r.baselines[net]
    rows = [
        [
            str(i + 1),
            str(p.ipc),
            led.pm(p.result.mean, p.result.std),
            led.secs(p.result.train_seconds_per_run),
        ]
        for i, p in enumerate(s.probes)
    ]
    text = (
        f"Method: {method_title(s.method)}, {s.init} init. Target: {s.target.describe()}. Doubling from IPC "
        f"{s.probes[0].ipc if s.probes else DASH}, then bisection; {s.result.evaluations} distillation + "
        "evaluation probe(s), in the order made:\n\n"
        + md_table(["probe", "IPC", f"{net} acc. (%)", "training time / run"], rows)
        + "\n\n"
    )
    if s.result.ipc is None:
        text += f"**No IPC up to {s.probes[-1].ipc} meets the target.**"
    else:
        best = next(p for p in s.probes if p.ipc == s.result.ipc)
        syn_time = best.result.train_seconds_per_run
        text += (
            f"**Smallest IPC meeting the target: {s.result.ipc}** "
            f"({led.pct(best.result.mean)} % vs full data {led.pct(full.accuracy)} %); training on it "
            f"takes {led.secs(syn_time)} per run vs {led.secs(full.train_seconds)} on the full data: a "
            f"training-time speed-up of **{led.speedup(full.train_seconds, syn_time)}**."
        )
    return text
