"""Crash-safe file writes shared by every stage that produces an artifact.

Synthetic sets, expert trajectories, buffer manifests and evaluation results are all read later by another
stage (or by a rerun of the same one, which trusts what it finds). A crash mid-write must therefore leave
either the previous file or the complete new one, never a truncated file that looks valid.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

import torch


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a fresh temporary path beside ``path``; move it over ``path`` only if the body finished.

    Same directory so that ``os.replace`` is a rename on one filesystem (atomic), never a copy; a name
    unique to this process and call so that two writers never share a temporary file. The body creates the
    file itself, so it gets the permissions of any other file the user writes (``mkstemp`` would make it
    private). ``suffix`` lets writers that infer the format from the name (e.g. PNG) see the extension.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}{suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], Any]) -> Path:
    """Call ``write`` on a binary file handle, fsync, then publish the file under ``path``.

    The fsync comes before the rename so that after a power loss the name never points at data the disk
    has not received.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        with open(tmp, "xb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
    return path


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    # torch.save is looked up at call time, so tests can make it fail midway.
    return atomic_write(path, lambda fh: torch.save(obj, fh))


def atomic_json_dump(obj: Any, path: str | os.PathLike, *, sort_keys: bool = True, indent: int = 2) -> Path:
    """JSON with a trailing newline; ``sort_keys`` keeps manifests diffable between runs."""
    text = json.dumps(obj, indent=indent, sort_keys=sort_keys) + "\n"
    return atomic_write(path, lambda fh: fh.write(text.encode()))


def point_link(link: str | os.PathLike, target: str) -> Path | None:
    """Make ``link`` a symlink to ``target`` (relative to the link's folder), replacing any old link in
    one rename; where symlinks are not allowed, leave a note and return None rather than fail an export."""
    link = Path(link)
    tmp = link.with_name(f".{link.name}.{os.getpid()}.{secrets.token_hex(4)}")
    try:
        os.symlink(target, tmp)
        os.replace(tmp, link)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        import warnings

        warnings.warn(f"could not point {link} at {target}: {err}", stacklevel=2)
        return None
    return link
