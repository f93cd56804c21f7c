"""One-command reproduction report: ``python -m ddlight.report --config configs/report_mnist.yaml``.

Runs the study's stages through ddlight's own CLI (reusing finished ones by the content hash of their
configuration), then writes ``reports/<name>/report.md`` with Tables I, III/IV, V, VI, VII, the
lossless-IPC search and figures, every number read from the stages' outputs.
"""

from ddlight.report.ipc_search import SearchResult, Target, search_lossless_ipc

__all__ = ["SearchResult", "Target", "search_lossless_ipc"]
