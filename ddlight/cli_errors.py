"""The CLI's errors as one line: jsonargparse's multi-line reports and a stage's refusal reduced to the key
and the rule, with the nearest valid names for a typo."""

from __future__ import annotations

import difflib
import importlib
import inspect
import re
import traceback
from collections.abc import Iterator, Sequence
from typing import Any

from jsonargparse import Namespace


class ConfigError(ValueError):
    """A stage refused a value of its configuration (raised in its ``__init__``): the command line or a
    config file is wrong, not the data. A ``ValueError`` so that Python callers catch it as before."""


def innermost(err: BaseException) -> BaseException:
    """The exception at the bottom of a ``raise ... from`` chain: jsonargparse wraps a stage's own error."""
    while err.__cause__ is not None:
        err = err.__cause__
    return err


def stage_error(inner: BaseException, config: Namespace) -> ConfigError | None:
    """A stage's refusal during instantiation as the one line the user needs: the key and the rule.

    jsonargparse reports it as "Does not validate against any of the Union subtypes" around a dump of the
    whole block; ``inner``, the stage's own exception, is at the bottom of that chain. Its traceback says
    which configured object refused (the outermost ``__init__`` whose ``self`` is one), and the config says
    where that object's block is. None when it is neither a ``ValueError`` nor raised by such an object."""
    text = str(inner).strip()
    blocks = class_blocks(config)
    obj = next(
        (s for f, _ in traceback.walk_tb(inner.__traceback__) if type(s := f.f_locals.get("self")) in blocks),
        None,
    )
    if obj is None:
        return ConfigError(text) if isinstance(inner, ValueError) else None
    cls, key = type(obj), blocks[type(obj)]
    if not isinstance(inner, ValueError):  # a value the stage did not check for and then choked on
        return ConfigError(f"{key} ({cls.__name__}): {type(inner).__name__}: {text}")
    # Stages phrase their checks as "<arg> must be ...", sometimes "<Class>.<arg> must be ...".
    first, _, rest = text.partition(" ")
    arg = first.removeprefix(f"{cls.__name__}.").rstrip(":,")
    if rest and arg in init_arg_names(cls):
        return ConfigError(f"{key}.init_args.{arg}: {rest}")
    return ConfigError(f"{key} ({cls.__name__}): {text}")


def class_blocks(config: Namespace) -> dict[type, str]:
    """Every class a parsed config names by ``class_path``, with the key of its block."""
    out: dict[type, str] = {}
    for key, value in config.items():
        if key.rpartition(".")[2] != "class_path":
            continue
        module, _, name = str(value).rpartition(".")
        try:
            out.setdefault(getattr(importlib.import_module(module), name), key.rpartition(".")[0])
        except (ImportError, AttributeError, ValueError):
            continue
    return out


# jsonargparse's report of a refused value: which lines are the tree's structure and which are its noise.
PARSER_KEY = re.compile(r'^Parser key "([^"]+)":\s*(.*)$')
CLASS_PATH = re.compile(r"^Problem with given class_path '([^']+)':\s*(.*)$")
UNKNOWN_OPTION = re.compile(r"^Option '([^']+)' is not accepted$")
NO_CLASS = re.compile(r"^module '([\w.]+)' has no attribute '(\w+)'$")
UNRECOGNIZED = re.compile(r"^unrecognized arguments: (\S+)")
NOISE = re.compile(
    r"^(Does not validate against any of the Union subtypes|Subtypes: |Errors:|Given value(?: type)?: "
    r"|Expected a <class 'NoneType'>|Expected a path but )"
)


def report_leaves(message: str) -> Iterator[tuple[str, str | None, str]]:
    """(key, class_path or None, complaint) for each complaint in jsonargparse's indented report, the key
    built from the enclosing ``Parser key`` / ``class_path`` lines (``model.init_args.net.init_args``)."""
    stack: list[tuple[int, str, str | None]] = []  # indent, key, the class_path opened at that indent
    for raw in message.splitlines():
        text = raw.strip()
        indent = len(raw) - len(raw.lstrip())
        if text.startswith("- "):  # a bullet's own lines are indented 2 deeper than its dash
            text = text[2:].strip()
        if not text or NOISE.match(text):
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        key, cls = (stack[-1][1], stack[-1][2]) if stack else ("", None)
        if m := PARSER_KEY.match(text):
            key = f"{key}.init_args.{m[1]}" if cls else f"{key}.{m[1]}".lstrip(".")
            stack.append((indent, key, None))
            if m[2]:
                yield key, None, m[2]
        elif m := CLASS_PATH.match(text):
            stack.append((indent, key, m[1]))
            if m[2]:
                yield key, m[1], m[2]
        else:
            yield key, cls, text


def one_line(message: str, parser: Any) -> str:
    """jsonargparse's multi-line report as ``key: complaint``, with the nearest valid names for a typo."""
    leaves = list(report_leaves(message)) or [("", None, message.strip())]
    key, class_path, text = leaves[0]
    more = f" (and {len(leaves) - 1} more; DDLIGHT_TRACEBACK=1 shows them)" if len(leaves) > 1 else ""
    if class_path and (m := UNKNOWN_OPTION.match(text)):
        names = init_params(class_path)
        hint = did_you_mean(m[1], names) or f"{class_path.rpartition('.')[2]} takes {', '.join(names)}"
        return f"unknown option {key}.init_args.{m[1]}; {hint}"
    if class_path and (m := NO_CLASS.match(text)):
        module = importlib.import_module(m[1])
        classes = [n for n, v in vars(module).items() if isinstance(v, type) and not n.startswith("_")]
        hint = did_you_mean(m[2], classes) or f"{m[1]} has {', '.join(sorted(classes))}"
        return f"{key}: no class {class_path}; {hint}"
    if m := UNRECOGNIZED.match(text):
        flag = m[1].removeprefix("--").partition("=")[0]
        return f"unknown option {flag}; {did_you_mean_key(flag, parser) or 'see --help'}"
    text = re.sub(r"Expected a <class '([\w.]+)'>\. Got value: (.*)", r"expected \1, got \2", text)
    literal = r"Expected a typing\.Literal\[(.*)\]\. Got value: (.*)"
    text = re.sub(literal, r"expected one of \1, got \2", text)
    text = re.sub(r"<class '([\w.]+)'>", r"\1", text)
    text = text[:1].lower() + text[1:] if text[1:2].islower() else text
    return f"{key}: {text}{more}" if key else f"{text}{more}"


def init_params(class_path: str) -> list[str]:
    """The names a class's ``__init__`` accepts (what ``init_args`` may hold)."""
    module, _, name = class_path.rpartition(".")
    return init_arg_names(getattr(importlib.import_module(module), name))


def init_arg_names(cls: type) -> list[str]:
    """The named arguments of ``cls`` and of the bases its ``**kwargs`` reach (a method lists only its own
    and hands the shared ones to :class:`~ddlight.methods.distiller.Distiller`), subclass first."""
    names: list[str] = []
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None or klass is object:
            continue
        params = list(inspect.signature(init).parameters.values())[1:]  # without self
        names += [
            p.name for p in params if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD) and p.name not in names
        ]
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            break
    return names


def did_you_mean(name: str, options: Sequence[str]) -> str:
    """The "did you mean X?" hint: the closest ``options`` to a mistyped ``name`` ("" if none is close)."""
    close = difflib.get_close_matches(name, options, n=3)
    return f"did you mean {' or '.join(close)}?" if close else ""


def did_you_mean_key(flag: str, parser: Any) -> str:
    """The hint for an unknown top-level flag: the nearest of the parser's keys, then the nearest block
    (``modle.init_args.ipc`` -> ``model.init_args.ipc``)."""
    try:
        keys = list(parser.get_defaults().keys())
    except Exception:  # a parser that cannot even produce its defaults has no better hint to give
        return ""
    if hint := did_you_mean(flag, keys):
        return hint
    head, dot, tail = flag.partition(".")
    close = difflib.get_close_matches(head, sorted({k.partition(".")[0] for k in keys}), n=1)
    return f"did you mean {close[0]}{dot}{tail}?" if close and dot else ""
