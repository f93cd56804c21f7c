"""``python -m ddlight``: Lightning's CLI in subclass mode, so every stage and data module is chosen by
``class_path`` in YAML and one block or flag swaps it."""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, NoReturn

import lightning as L
import yaml
from jsonargparse import Namespace
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI
from lightning.pytorch.utilities import rank_zero_warn
from torch import nn

# Imported so short class names (e.g. ``class_path: Baseline``) resolve in configs and flags.
import ddlight.callbacks  # noqa: F401
import ddlight.data  # noqa: F401
import ddlight.methods  # noqa: F401
import ddlight.models  # noqa: F401
from ddlight.cli_errors import ConfigError, innermost, one_line, stage_error
from ddlight.utils import configure_heap

TRAINER_DEFAULTS = {
    "logger": {
        "class_path": "lightning.pytorch.loggers.TensorBoardLogger",
        "init_args": {"save_dir": "logs", "name": "ddlight"},
    },
    "enable_progress_bar": True,
}
# Arguments that describe the data rather than the architecture: they carry over when a flag swaps the
# class of a network (the images are still the same size), everything else resets to the new class's default.
DATA_SHAPE_ARGS = frozenset({"channel", "num_classes", "im_size"})
# Errors whose message is the whole story (bad input, missing files, divergence): printed without a
# traceback unless DDLIGHT_TRACEBACK=1.
USER_ERRORS = (ValueError, FileNotFoundError, FloatingPointError)
EXIT_BAD_DATA = 1  # the command was fine, what it read or computed was not
EXIT_BAD_COMMAND = 2  # argparse's convention for a command line (or config) it refuses
EXIT_INTERRUPTED = 130  # the shell's convention for "stopped by SIGINT"


def program_name() -> str:
    """What a user typed, so that ``usage:`` and the ``--help`` tip can be pasted back."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return "python -m ddlight" if getattr(spec, "name", None) == "ddlight.__main__" else "ddlight"


class DDLightParser(LightningArgumentParser):
    """Reports a refused command line in one line: jsonargparse's message is a tree of every Union branch
    it tried (with a dump of the whole parsed block) in which the one real complaint is a leaf."""

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        # Nested parsers (exit_on_error=False) raise for their parent to collect: leave those alone.
        if not self.exit_on_error or os.environ.get("DDLIGHT_TRACEBACK"):
            super().error(message, ex)
        print(f"ddlight: error: {one_line(message, self)}", file=sys.stderr)
        self.exit(EXIT_BAD_COMMAND)


class DDLightCLI(LightningCLI):
    """Seeded by default (``seed_everything: 0``) so that two identical commands give identical runs."""

    def __init__(self, args: Sequence[str] | None = None, run: bool = True, **kwargs) -> None:
        kwargs.setdefault("parser_class", DDLightParser)
        kwargs.setdefault("parser_kwargs", {"prog": program_name()})
        kwargs.setdefault("seed_everything_default", 0)
        kwargs.setdefault("trainer_defaults", TRAINER_DEFAULTS)
        kwargs.setdefault("save_config_kwargs", {"overwrite": True})
        super().__init__(
            L.LightningModule,
            L.LightningDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            args=args,
            run=run,
            **kwargs,
        )

    def add_arguments_to_parser(self, parser: Any) -> None:
        # One seed flag: a method's seed also seeds its data module (episode draws, splits); two different
        # values would also make Lightning refuse to log the two modules' hyper-parameters together.
        parser.link_arguments("model.init_args.seed", "data.init_args.seed")
        # A matching method's real images per class per step are the data module's episodes: typed once.
        # (Stages without batch_real leave episode_per_class as configured.)
        parser.link_arguments("model.init_args.batch_real", "data.init_args.episode_per_class")
        # The data decide what the network is built for (channels, classes, image size): configs say only
        # the architecture. A net class without one of these args (ResNet18 has no im_size) ignores it.
        for arg in DATA_SHAPE_ARGS:
            parser.link_arguments(
                "data",
                f"model.init_args.net.init_args.{arg}",
                compute_fn=partial(shape_arg, arg),
                apply_on="instantiate",
            )

    def instantiate_classes(self) -> None:
        config = self.config_init_for_links()
        typed = typed_shape_args(config)
        try:
            super().instantiate_classes()
        except ValueError as err:
            inner = innermost(err)
            if isinstance(inner, USER_ERRORS) and not isinstance(inner, ValueError):
                raise inner from None  # a missing file, say: the data's problem (exit 1), its message says it
            refusal = stage_error(inner, config)
            if refusal is None:
                raise
            raise refusal from err
        check_typed_shape(typed, self.datamodule)

    def config_init_for_links(self) -> Namespace:
        return self.config.get(self.config.get("subcommand")) if "subcommand" in self.config else self.config

    def parse_arguments(self, parser: Any, args: Any) -> None:
        argv = list(sys.argv[1:] if args is None else args) if not isinstance(args, (dict, Namespace)) else []
        for path in config_paths(argv):
            problem = yaml_problem(path)
            if problem:
                parser.error(problem)
        super().parse_arguments(parser, args)
        root = self.config_init_for_links()
        for note in reset_swapped_classes(root, argv):
            rank_zero_warn(note)


class ConfigOnlyCLI(DDLightCLI):
    """Parses a command's configuration (defaults, every ``--config`` overlay, flags, parse-time links)
    and instantiates nothing: what the report reads instead of raw YAML."""

    def instantiate_classes(self) -> None:
        pass


def parse_config(args: Sequence[str]) -> Namespace:
    """The parsed ``fit`` config of ``python -m ddlight fit <args>`` (``model``, ``data``, ``trainer``)."""
    return ConfigOnlyCLI(args=list(args), run=False).config


def module_class(config: Namespace, key: str = "model") -> type:
    """The class a parsed config's ``key`` block names by ``class_path``."""
    module, _, name = str(config[key]["class_path"]).rpartition(".")
    return getattr(importlib.import_module(module), name)


def shape_arg(arg: str, datamodule: Any) -> Any:
    """One of the data module's :meth:`~ddlight.data.RealDataModule.shape_args` for the net link."""
    shape = getattr(datamodule, "shape_args", None)
    if shape is None:
        raise ValueError(
            f"data module {type(datamodule).__name__} has no shape_args(); the CLI builds every net for the "
            "data's channels, classes and image size: subclass ddlight.data.RealDataModule"
        )
    return shape()[arg]


def typed_shape_args(config: Namespace) -> dict[str, Any]:
    """The net's data-shape args that a config or flag set to something other than the class default
    (the link overwrites them, so a value typed for other data must be caught, not silently replaced)."""
    net = config.get("model.init_args.net")
    if not isinstance(net, Namespace) or "class_path" not in net:
        return {}
    module, _, cls_name = str(net["class_path"]).rpartition(".")
    params = inspect.signature(getattr(importlib.import_module(module), cls_name)).parameters
    init = net.get("init_args") or Namespace()
    return {
        k: init[k]
        for k in DATA_SHAPE_ARGS
        if k in init and k in params and init[k] is not None and init[k] != params[k].default
    }


def check_typed_shape(typed: dict[str, Any], datamodule: Any) -> None:
    if not typed or not hasattr(datamodule, "shape_args"):
        return
    have = datamodule.shape_args()
    wrong = {k: v for k, v in typed.items() if _as_size(v) != _as_size(have[k])}
    if wrong:
        said = ", ".join(f"{k}={v!r} (the data: {have[k]!r})" for k, v in sorted(wrong.items()))
        raise ValueError(
            f"model.init_args.net.init_args sets {said}, which {type(datamodule).__name__} contradicts; "
            "the data decide these (linked): drop them from the config or change the data module"
        )


def _as_size(v: Any) -> Any:
    if isinstance(v, (list, tuple)):
        return tuple(v) if len(set(v)) > 1 else v[0]
    return v


def config_paths(argv: Sequence[str]) -> list[Path]:
    """The files named by ``--config X`` / ``--config=X``."""
    out = []
    for i, tok in enumerate(argv):
        if tok == "--config" and i + 1 < len(argv):
            out.append(Path(argv[i + 1]))
        elif tok.startswith("--config="):
            out.append(Path(tok.split("=", 1)[1]))
    return out


def yaml_problem(path: Path) -> str:
    """A YAML syntax error in ``path`` as one line naming the file, line and column ("" if it parses)."""
    if not path.is_file():
        return ""  # jsonargparse's own "does not exist" message names it
    try:
        yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        what = getattr(err, "problem", None) or str(err)
        return f"config file {path}: YAML syntax error{where}: {what}"
    return ""


def _swap_flags(argv: Sequence[str]) -> list[tuple[int, str]]:
    """(position, key) of every ``--key ClassName`` / ``--key=ClassName`` token that names a class."""
    out = []
    for i, tok in enumerate(argv):
        if not tok.startswith("--") or tok.startswith("--config"):
            continue
        key, _, value = tok[2:].partition("=")
        if not value and i + 1 < len(argv):
            value = argv[i + 1]
        if value and value.rpartition(".")[2][:1].isupper() and not value.startswith(("{", "[")):
            out.append((i, key))
    return out


def reset_swapped_classes(config: Namespace, argv: Sequence[str]) -> list[str]:
    """After a flag swaps a class (``--model.init_args.net ddlight.models.ResNet18``), jsonargparse keeps
    every init arg of the old block that the new class also accepts: ConvNet's ``width: 128`` silently
    becomes ResNet18's width (default 64), a non-standard, 4x costlier net. Reset those to the new class's
    defaults (except :data:`DATA_SHAPE_ARGS` and args given after the swap) and say what was reset."""
    notes = []
    for pos, key in _swap_flags(argv):
        node = config.get(key)
        if not isinstance(node, Namespace) or "class_path" not in node:
            continue
        later = " ".join(argv[pos + 1 :])
        if "--config" in later:
            continue  # a config after the swap may set anything on purpose
        module, _, cls_name = str(node["class_path"]).rpartition(".")
        cls = getattr(importlib.import_module(module), cls_name, None)
        if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
            continue  # networks only: a data module's args (data_dir, episodes) are meant to carry
        params = inspect.signature(cls).parameters
        init = node.get("init_args") or Namespace()
        reset = []
        for name, value in list(vars(init).items()):
            p = params.get(name)
            explicit = f"--{key}.init_args.{name}" in later or f"--{key}.{name}" in later
            if name in DATA_SHAPE_ARGS or explicit or p is None or p.default is inspect.Parameter.empty:
                continue
            if value != p.default:
                reset.append(f"{name} {value!r} -> {p.default!r}")
                init[name] = p.default
        if reset:
            notes.append(
                f"--{key} swapped in {cls_name}: reset {', '.join(reset)} (the previous block's values; "
                f"{cls_name}'s defaults now). Pass --{key}.init_args.NAME after the swap to set one."
            )
    return notes


def _configure_heap() -> None:
    """Keep freed activations in the heap (``DDLIGHT_MMAP_THRESHOLD`` changes it; ddlight/utils/memory.py):
    a bad value of the variable is a bad command, like a bad option."""
    try:
        configure_heap()
    except ValueError as err:
        raise ConfigError(str(err)) from err


def main(args: Sequence[str] | None = None) -> None:
    try:
        _configure_heap()
        cli = DDLightCLI(args=None if args is None else list(args))
    except ConfigError as err:
        if os.environ.get("DDLIGHT_TRACEBACK"):
            raise
        print(f"ddlight: error: {err}", file=sys.stderr)
        sys.exit(EXIT_BAD_COMMAND)
    except USER_ERRORS as err:
        if os.environ.get("DDLIGHT_TRACEBACK"):
            raise
        print(f"ddlight: error: {err} (DDLIGHT_TRACEBACK=1 shows the traceback)", file=sys.stderr)
        sys.exit(EXIT_BAD_DATA)
    if getattr(getattr(cli, "model", None), "stop_reason", None):
        sys.exit(EXIT_INTERRUPTED)
