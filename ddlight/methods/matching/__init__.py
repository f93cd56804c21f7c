"""Distribution matching: synthetic sets whose per-class statistics (embeddings, attention maps) in freshly
drawn random networks match the real data's. DM (mean embeddings) and DataDAM (DM + attention maps) share
:class:`~ddlight.methods.matching.base.RandomNetworkMatching`."""

from ddlight.methods.matching.base import RandomNetworkMatching
from ddlight.methods.matching.datadam import DataDAM
from ddlight.methods.matching.dm import DM

__all__ = ["DM", "DataDAM", "RandomNetworkMatching"]
