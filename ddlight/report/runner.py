"""Stages of a report and their execution, cached by the content hash of their configuration.

A stage is one command a user could type (``python -m ddlight fit --config X <flags>``, or the DC-Bench
exporter) plus where it writes. Its directory is ``<artifacts>/<name>-<hash>``, the hash covering the
YAML file's text, the flags and the hashes of the stages it reads from: change any of them and the stage
(and everything downstream, whose flags name the upstream directory) gets a new directory and runs again;
change nothing and a rerun finds ``stage.json`` - written atomically as the stage's last act - and skips
it. A directory without ``stage.json`` is a crashed attempt and is wiped before the stage reruns, so no
half-written output is ever read.

Stages run in this process through :class:`ddlight.cli.DDLightCLI` by default (no interpreter start-up
per stage, which dominates a tiny report), or as subprocesses with ``subprocess=True``; either way the
command recorded is the one a user would type.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import hashlib
import io
import json
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ddlight.artifacts import OUTPUT_ARG_ATTR, RESULTS_FILE, STAGE_BUFFER_DIR
from ddlight.cli import module_class, parse_config
from ddlight.utils.io import atomic_json_dump

MARKER = "stage.json"
# Flags every stage gets: quiet, reproducible logs; not part of the hash (they change no result).
QUIET = ("--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false")


@functools.cache
def config_alone(config: str, class_flags: tuple[str, ...] = ()) -> Any:
    """The parsed config of a stage YAML (resolved path) with only the flags that can re-select its
    module class. Memoised: a report asks every stage's module class and IPC, each parse costs a
    LightningCLI (~0.25 s), and configs do not change while one report runs. Read it, do not modify it."""
    return parse_config(["--config", config, *class_flags])


def stage_module(config: str, class_flags: tuple[str, ...]) -> type:
    """The module class a stage config (plus any flags that re-select it) names."""
    return module_class(config_alone(config, class_flags))


def class_flags(args: Sequence[str]) -> tuple[str, ...]:
    """The flags among ``args`` that can change the module's class (``--model`` or
    ``--model.class_path``, each followed by its value); no other flag can."""
    picked: list[str] = []
    for flag, value in zip(args, args[1:], strict=False):
        if flag in ("--model", "--model.class_path"):
            picked += [flag, value]
    return tuple(picked)


def output_arg(stage: Stage) -> str:
    """The init arg of the stage's module that says where it writes, read from the parsed config."""
    cls = stage_module(str(Path(stage.config).resolve()), class_flags(stage.args))
    name = getattr(cls, OUTPUT_ARG_ATTR, None)
    if name is None:
        raise ValueError(
            f"stage {stage.name}: {cls.__name__} declares no {OUTPUT_ARG_ATTR}; it cannot be a {stage.kind}"
        )
    return name


def flag_value(value: Any) -> str:
    """A YAML/JSON value as jsonargparse reads it on the command line."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value, separators=(", ", ": "))
    return str(value)


def flags(overrides: dict[str, Any]) -> list[str]:
    """``{"trainer.max_steps": 300}`` -> ``["--trainer.max_steps", "300"]`` (insertion order kept)."""
    out: list[str] = []
    for key, value in overrides.items():
        out += [f"--{key}", flag_value(value)]
    return out


@dataclass(frozen=True)
class Stage:
    """One cached unit of work.

    Args:
        name: unique, readable (``mnist-datadam-real-ipc10``); the directory is ``<name>-<hash>``.
        kind: ``baseline`` (fit, then test the checkpoint), ``distill``, ``experts``, ``eval`` (fit), or
            ``dcbench_export`` (``python -m ddlight.report.dcbench``).
        config: the YAML given to ``--config`` (``None`` for the exporter).
        args: the flags after the config; for the exporter its positional arguments.
        deps: stages whose outputs ``args`` refer to.
    """

    name: str
    kind: str
    config: str | None
    args: tuple[str, ...] = ()
    deps: tuple[Stage, ...] = field(default=(), compare=False, hash=False)

    @property
    def digest(self) -> str:
        text = Path(self.config).read_text() if self.config else ""
        blob = json.dumps(
            {
                "name": self.name,
                "kind": self.kind,
                "config_text": text,
                "args": list(self.args),
                "deps": [d.digest for d in self.deps],
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


@dataclass
class StageRecord:
    """What ``stage.json`` holds, plus whether this invocation ran the stage or reused it."""

    stage: Stage
    dir: Path
    commands: list[str]
    wall_seconds: float
    finished: str
    executed: bool


def shell(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


class StageFailed(RuntimeError):
    pass


class Runner:
    """Runs stages once per content hash under ``root`` and remembers what happened, in order."""

    def __init__(
        self,
        root: str | Path,
        subprocess: bool = False,
        log: Callable[[str], None] = print,
    ) -> None:
        self.root = Path(root)
        self.subprocess = subprocess
        self.log = log
        self.records: dict[str, StageRecord] = {}

    def dir_of(self, stage: Stage) -> Path:
        return self.root / f"{stage.name}-{stage.digest}"

    # ------------------------------------------------------------------------------------------ API
    def run(self, stage: Stage) -> StageRecord:
        """Run ``stage`` (and, first, its dependencies) unless a finished run with its hash exists."""
        if stage.name in self.records:
            rec = self.records[stage.name]
            if rec.stage.digest != stage.digest:
                raise ValueError(f"two different stages named {stage.name!r} in one report")
            return rec
        for dep in stage.deps:
            self.run(dep)
        out = self.dir_of(stage)
        marker = out / MARKER
        if marker.is_file():
            saved = json.loads(marker.read_text())
            if saved.get("hash") == stage.digest:
                self.log(f"[report] reuse  {stage.name} ({out})")
                rec = StageRecord(
                    stage, out, saved["commands"], float(saved["wall_seconds"]), saved["finished"], False
                )
                self.records[stage.name] = rec
                return rec
        if out.exists():  # an interrupted attempt: never read its partial outputs
            shutil.rmtree(out)
        out.mkdir(parents=True)
        self.log(f"[report] run    {stage.name} -> {out}")
        t0 = time.perf_counter()
        commands = self._execute(stage, out)
        wall = time.perf_counter() - t0
        finished = datetime.now(timezone.utc).isoformat(timespec="seconds")
        atomic_json_dump(
            {
                "name": stage.name,
                "kind": stage.kind,
                "hash": stage.digest,
                "config": stage.config,
                "args": list(stage.args),
                "commands": commands,
                "wall_seconds": round(wall, 3),
                "finished": finished,
            },
            marker,
            sort_keys=False,
        )
        rec = StageRecord(stage, out, commands, wall, finished, True)
        self.records[stage.name] = rec
        return rec

    def check(self, stage: Stage) -> None:
        """Parse and instantiate ``stage``'s command without running it (``LightningCLI(run=False)``)."""
        if stage.kind == "dcbench_export":  # two positional paths; nothing to parse before they exist
            return
        from ddlight.cli import DDLightCLI

        args = ["--config", str(stage.config), *stage.args, *self.output_flags(stage, self.dir_of(stage))]
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                DDLightCLI(args=args, run=False)
        except SystemExit as err:
            raise StageFailed(
                f"stage {stage.name}: `python -m ddlight fit {shell(args)}` does not parse (exit {err.code})"
            ) from err
        self.log(f"[report] ok     {stage.name}")

    # ------------------------------------------------------------------------------------ execution
    def _execute(self, stage: Stage, out: Path) -> list[str]:
        if stage.kind == "dcbench_export":
            argv = ["ddlight.report.dcbench", *stage.args, str(out / "distilled_results")]
            self._call(argv, out)
            return [shell(["python", "-m", *argv])]
        fit = ["ddlight", "fit", "--config", str(stage.config), *stage.args, *self.output_flags(stage, out)]
        self._call(fit, out)
        commands = [shell(["python", "-m", *fit])]
        if stage.kind == "baseline":
            ckpts = sorted((out / "tb" / "fit" / "checkpoints").glob("*.ckpt"))
            if not ckpts:
                raise StageFailed(f"stage {stage.name}: fit wrote no checkpoint under {out / 'tb' / 'fit'}")
            test = [
                "ddlight",
                "test",
                "--config",
                str(stage.config),
                *stage.args,
                *self.output_flags(stage, out, version="test"),
                "--ckpt_path",
                str(ckpts[-1]),
            ]
            self._call(test, out)
            commands.append(shell(["python", "-m", *test]))
        return commands

    @staticmethod
    def output_flags(stage: Stage, out: Path, version: str = "fit") -> list[str]:
        """Where a stage writes: TensorBoard under ``out/tb/<version>``, artefacts directly in ``out``."""
        f = [
            "--trainer.logger.init_args.save_dir",
            str(out),
            "--trainer.logger.init_args.name",
            "tb",
            "--trainer.logger.init_args.version",
            version,
            *QUIET,
        ]
        where = {"distill": out, "eval": out / RESULTS_FILE, "experts": out / STAGE_BUFFER_DIR}.get(
            stage.kind
        )
        if where is not None:
            # The module class says which of its init args is its output (ddlight.artifacts.OUTPUT_ARG_ATTR).
            f += [f"--model.init_args.{output_arg(stage)}", str(where)]
        if stage.kind == "distill":
            f += ["--trainer.enable_checkpointing", "false"]
        elif stage.kind == "baseline":
            # Validation would run on the test set (val_fraction 0) inside the timed training; the test
            # command measures it once instead.
            f += ["--trainer.limit_val_batches", "0", "--trainer.num_sanity_val_steps", "0"]
        return f

    def _call(self, argv: list[str], out: Path) -> None:
        log_path = out / "log.txt"
        if self.subprocess:
            with open(log_path, "a") as fh:
                fh.write(f"$ python -m {shell(argv)}\n")
                fh.flush()
                proc = subprocess.run([sys.executable, "-m", *argv], stdout=fh, stderr=subprocess.STDOUT)
            if proc.returncode != 0:
                tail = log_path.read_text()[-3000:]
                raise StageFailed(f"`python -m {shell(argv)}` failed ({proc.returncode}); log tail:\n{tail}")
            return
        buf = io.StringIO()
        try:
            with contextlib.redirect_stdout(buf):
                if argv[0] == "ddlight":
                    from ddlight.cli import DDLightCLI

                    DDLightCLI(args=argv[1:])
                else:
                    from ddlight.report import dcbench

                    dcbench.main(argv[1:])
        except SystemExit as err:  # jsonargparse exits on a bad flag; say which command had it
            if err.code not in (0, None):
                raise StageFailed(f"`python -m {shell(argv)}` exited with {err.code}") from err
        except Exception as err:
            raise StageFailed(f"`python -m {shell(argv)}` failed: {type(err).__name__}: {err}") from err
        finally:
            with open(log_path, "a") as fh:
                fh.write(f"$ python -m {shell(argv)}\n{buf.getvalue()}")
            gc.collect()
