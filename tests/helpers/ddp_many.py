"""Several ``ddlight fit`` commands in one two-rank DDP launch: one process start-up and one process group
for all of them (Lightning's launcher re-runs this script for rank 1, which runs the same list)."""

import json
import sys

from ddlight.cli import DDLightCLI

if __name__ == "__main__":
    for args in json.loads(open(sys.argv[1]).read()):
        DDLightCLI(args=args)
