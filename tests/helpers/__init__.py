"""What the test modules share: builders, CLI fragments, the MHIST look-alike and probe callbacks.

Test modules import from here (``from tests.helpers.builders import TinyDigits``), never from each other.
Subprocess tests put ``ROOT`` on the child's ``PYTHONPATH`` so class paths such as
``tests.helpers.probes.RecordRanks`` resolve there too.
"""

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"
