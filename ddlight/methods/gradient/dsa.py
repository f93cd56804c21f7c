"""DSA (Zhao & Bilen, ICML 2021) by name: DC with the released DSA defaults.

The field counts DC and DSA as two methods; in the authors' code they are one script, ``main.py``, and DSA
is ``--init real --method DSA --dsa_strategy color_crop_cutout_flip_scale_rotate`` (their README's DSA
command; the strategy flips every dataset, MNIST included). :class:`DSA` is
:class:`~ddlight.methods.gradient.dc.DC` with that initialisation and strategy as its defaults, so that
``class_path: ddlight.methods.DSA`` works, and sets, results and the report say ``dsa``. Everything else
(loops from ``get_loops``, rates, batches) is ``main.py``'s defaults, which DC and DSA share.
``dsa_strategy: auto`` is ddlight's improvement on digits (the strategy without flip: a mirrored digit
is another digit or none; ``configs/mnist/dsa.yaml``).
"""

from __future__ import annotations

from typing import Any

from torch import nn

from ddlight.methods.distiller import Init
from ddlight.methods.gradient.dc import DC
from ddlight.ops.augment import FIELD_STRATEGY, parse_strategy


class DSA(DC):
    """DC with the Siamese augmentation on (released strategy by default).

    Args:
        net: as :class:`DC`.
        init: ``real`` (the released DSA command's ``--init real``; DC's code default is noise).
        dsa_strategy: the released ``color_crop_cutout_flip_scale_rotate`` (flips digits, as released);
            ``auto`` drops flip on digits; ``none`` is refused (that is DC).
        **kwargs: every other :class:`DC` argument, with DC's (= DSA's released) defaults.
    """

    method_name = "dsa"
    display_name = "DSA"

    def __init__(
        self,
        net: nn.Module,
        init: Init = "real",
        dsa_strategy: str = FIELD_STRATEGY,
        **kwargs: Any,
    ) -> None:
        if dsa_strategy.strip().lower() != "auto" and not parse_strategy(dsa_strategy):
            raise ValueError(
                f"DSA needs an augmentation strategy, got dsa_strategy={dsa_strategy!r}: without one it is "
                "DC (class_path: ddlight.methods.DC)"
            )
        super().__init__(net, init=init, dsa_strategy=dsa_strategy, **kwargs)
