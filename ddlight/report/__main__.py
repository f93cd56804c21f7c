"""``python -m ddlight.report --config configs/report_mnist.yaml --budget small``."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path


def parse_data_dir(text: str) -> tuple[str, str]:
    name, sep, path = text.partition("=")
    if not sep or not name or not path:
        raise argparse.ArgumentTypeError(f"expected NAME=PATH (e.g. mnist=../shared/data), got {text!r}")
    return name, path


def main(argv: Sequence[str] | None = None) -> Path:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(
        prog="python -m ddlight.report",
        description="Run the study's stages (reusing finished ones) and write reports/<name>/report.md.",
    )
    parser.add_argument("--config", required=True, help="report config, e.g. configs/report_mnist.yaml")
    parser.add_argument("--budget", default="small", help="a budget of the config: tiny, small or paper")
    parser.add_argument(
        "--data-dir",
        action="append",
        type=parse_data_dir,
        default=[],
        metavar="NAME=PATH",
        help="where a dataset lives, replacing the config's data_dir (repeatable)",
    )
    parser.add_argument("--artifacts-dir", default=None, help="stage outputs (default: the config's)")
    parser.add_argument("--reports-dir", default=None, help="parent of the report folder (default: reports)")
    parser.add_argument("--name", default=None, help="report folder name (default: <config name>_<budget>)")
    parser.add_argument(
        "--subprocess", action="store_true", help="run each stage as `python -m ddlight ...` in a new process"
    )
    parser.add_argument(
        "--check", action="store_true", help="only parse every stage's command (seconds), run nothing"
    )
    args = parser.parse_args(argv)
    from ddlight.report.build import build_report, check_report

    if args.check:
        check_report(args.config, args.budget, dict(args.data_dir))
        return Path(args.config)

    return build_report(
        args.config,
        budget=args.budget,
        data_dirs=dict(args.data_dir),
        artifacts_dir=args.artifacts_dir,
        reports_dir=args.reports_dir,
        name=args.name,
        use_subprocess=args.subprocess,
        argv=argv,
    )


if __name__ == "__main__":
    main()
