"""The contract between stages: the names of the files each stage writes and of the TensorBoard tags it
logs, in one place, so that a writer and its readers (the next stage, the report) cannot drift apart.

It imports nothing from ddlight: every layer, from ``data/`` to ``report/``, may read it.
"""

from __future__ import annotations

# Files of a distiller's export directory (``export_dir``, default the logger's version folder).
SYNTHETIC_FILE = "synthetic.pt"  # ddlight.data.SyntheticSet: the distilled set
GRID_FILE = "grid.png"  # one row per class
EVALS_FILE = "evals.json"  # EvaluateSyntheticCallback's history, beside the set it describes
CHECKPOINT_DIR = "checkpoints"  # RunGuard's periodic checkpoint lives here
LAST_CHECKPOINT = "last.ckpt"
LATEST_LINK = "latest"  # logs/<name>/latest -> the newest version_N that exported a set

# Files of the evaluator and the report's stages.
RESULTS_FILE = "results.json"  # SyntheticEvaluator(results_path=...) as the report names it
STAGE_BUFFER_DIR = "buffer"  # an experts stage's buffer, inside the stage directory
BUFFER_MANIFEST = "manifest.json"  # an expert buffer's index (ddlight.methods.trajectory.buffer)

# Keys of results.json (SyntheticEvaluator.finish writes them, the report reads them).
RES_ARCHITECTURE = "architecture"
RES_NUM_RUNS = "num_runs"
RES_EPOCHS = "epochs"
RES_SCHEDULE = "schedule"
RES_MEAN = "mean"
RES_STD = "std"
RES_SECONDS_PER_RUN = "train_seconds_per_run"
RES_LABELS = "labels"  # "soft" or "hard": what the runs trained on

# Keys of a synthetic set's ``extra`` dict that the report reads.
EXTRA_DISTILL_SECONDS = "distill_seconds"

# The init arg through which each kind of stage module is told where to write; the module class names it
# as ``OUTPUT_ARG`` (Distiller: its export directory, SyntheticEvaluator: results.json, Experts: the buffer),
# so the report finds it from the parsed config instead of knowing each module's argument names.
OUTPUT_ARG_ATTR = "OUTPUT_ARG"

# TensorBoard tags read back by the report.
TAG_DISTILL_LOSS = "distill/loss"
TAG_TEST_ACC = "test/acc"  # the baseline's test accuracy
TAG_DISTILL_SECONDS = "time/distill_seconds"
TAG_PEAK_MB = "memory/peak_mb"  # process peak so far: CUDA allocator on a GPU, resident set on CPU
TAG_TRAIN_SECONDS = "time/train_seconds"
TAG_PARAMS = "model/params"
TAG_MACS = "model/macs_fvcore"  # fvcore counts a multiply-add as one "flop": these are MACs
TAG_EVAL_MEAN = "eval/test_acc_mean"
TAG_EVAL_STD = "eval/test_acc_std"
TAG_EVAL_SECONDS = "eval/train_seconds_per_run"
TAG_GRID = "synthetic/grid"
