"""A size check for IDX files (MNIST's and Fashion-MNIST's format) before torchvision reads them.

torchvision reads IDX files itself; what it does not do is say which file is wrong. A truncated
``train-images-idx3-ubyte`` (an interrupted copy or download) fails deep inside its reader with a reshape
error, which a data module can only report as "files not found". The 4 + 4 * ndim header bytes say how
large the file must be, so comparing that with the file's size names the file and what is wrong with it.
"""

from __future__ import annotations

import math
from pathlib import Path

# IDX type codes -> (name, bytes per element), from the format's definition (LeCun's MNIST page).
IDX_TYPES = {
    0x08: ("uint8", 1),
    0x09: ("int8", 1),
    0x0B: ("int16", 2),
    0x0C: ("int32", 4),
    0x0D: ("float32", 4),
    0x0E: ("float64", 8),
}


class IDXFileError(ValueError):
    """An IDX file exists but is truncated, padded or not an IDX file at all."""


def check_idx(path: str | Path, hint: str = "") -> tuple[int, ...]:
    """The dimensions an IDX file's header declares; raises :class:`IDXFileError` naming the file if the
    header is malformed or the file's size disagrees with it."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(4)
        if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_TYPES or not 1 <= head[3] <= 4:
            raise IDXFileError(
                f"{path}: not an IDX file (expected 2 zero bytes, a type code and 1-4 dimensions; "
                f"first bytes {head.hex() or 'none'}, {size} bytes in all). {hint}".rstrip()
            )
        ndim = head[3]
        raw = fh.read(4 * ndim)
    if len(raw) < 4 * ndim:
        raise IDXFileError(f"{path}: truncated inside its header ({size} bytes). {hint}".rstrip())
    dims = tuple(int.from_bytes(raw[4 * i : 4 * i + 4], "big") for i in range(ndim))
    name, width = IDX_TYPES[head[2]]
    expected = 4 + 4 * ndim + math.prod(dims) * width
    if size != expected:
        what = "truncated" if size < expected else "longer than its header says (corrupt)"
        shape = " x ".join(map(str, dims))
        raise IDXFileError(
            f"{path}: {what}: its header declares {shape} {name} ({expected:,} bytes) but the file has "
            f"{size:,} bytes. {hint}".rstrip()
        )
    return dims
