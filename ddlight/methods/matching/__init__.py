"""Distribution matching: synthetic sets whose per-class statistics (embeddings, attention maps) in freshly
drawn random networks match the real data's. DataDAM now; DM belongs here too."""

from ddlight.methods.matching.datadam import DataDAM

__all__ = ["DataDAM"]
