#!/usr/bin/env bash
# Trajectory matching at paper scale inside one 10-minute GPU window, end to end on MNIST: an expert
# buffer sized to fit (EL2N 1 network x 2 epochs, then as many 15-epoch experts as 4 minutes allow),
# PAD IPC 10 at the GPU recipe (80 student steps, configs/mnist/gpu/pad_ipc10.yaml) for 4 minutes, and
# the 5-run evaluation (configs/mnist/evaluate.yaml, learned rate). Its figures go to one JSON:
#   bash scripts/gpu_trajectory.sh [OUTDIR]        (default artifacts/gpu_trajectory; OUTDIR/figures.json)
# Run it only on a lent GPU (the device tool's `status` says whether this task has one); nothing in the
# project depends on it. DRY_RUN=1 parses every command (--print_config) without running anything.
set -u
OUTDIR=${1:-artifacts/gpu_trajectory}
PY=${PYTHON:-python3}
mkdir -p "$OUTDIR"
BUF="$OUTDIR/experts"
PAD="$OUTDIR/pad_ipc10"
EXPERTS=(--config configs/mnist/experts.yaml --config configs/mnist/gpu/experts.yaml
  --trainer.max_time 00:00:04:00 --model.init_args.buffer_dir "$BUF"
  --model.init_args.el2n_models 1 --model.init_args.el2n_epochs 2 --trainer.logger.init_args.save_dir "$OUTDIR/logs")
DISTIL=(--config configs/mnist/pad_ipc10.yaml --config configs/mnist/gpu/pad_ipc10.yaml
  --trainer.max_time 00:00:04:00 --model.init_args.buffer_dir "$BUF" --model.init_args.export_dir "$PAD"
  --trainer.logger.init_args.save_dir "$OUTDIR/logs")
EVAL=(--config configs/mnist/evaluate.yaml --data.init_args.path "$PAD/synthetic.pt" --model.init_args.lr learned
  --model.init_args.results_path "$OUTDIR/eval.json" --trainer.logger.init_args.save_dir "$OUTDIR/logs")
if [ "${DRY_RUN:-0}" = 1 ]; then
  for args in EXPERTS DISTIL EVAL; do
    declare -n a=$args
    $PY -m ddlight fit "${a[@]}" --print_config > "$OUTDIR/$args.yaml" || exit 1
  done
  echo "every command parses ($OUTDIR/*.yaml)"; exit 0
fi
stage() {  # stage NAME ARGS... : one CLI run, its log and wall seconds
  local name=$1; shift; local t0=$(date +%s.%N)
  $PY -m ddlight fit "$@" > "$OUTDIR/$name.log" 2>&1; local rc=$?
  echo "$name $rc $(awk "BEGIN{print $(date +%s.%N) - $t0}")" >> "$OUTDIR/stages.txt"; return $rc
}
: > "$OUTDIR/stages.txt"
stage experts "${EXPERTS[@]}" && stage pad "${DISTIL[@]}" && stage eval "${EVAL[@]}"
$PY - "$OUTDIR" <<'PYEOF'
import json, sys
from pathlib import Path
import torch
from ddlight.data import SyntheticSet
out = Path(sys.argv[1])
stages = {n: {"rc": int(rc), "wall_s": float(s)} for n, rc, s in (l.split() for l in (out / "stages.txt").read_text().splitlines())}
fig = {"device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else "cpu", "stages": stages}
manifest = out / "experts" / "manifest.json"
if manifest.exists():
    fig["experts"] = len(json.loads(manifest.read_text()).get("completed", []))
if (out / "pad_ipc10" / "synthetic.pt").exists():
    syn = SyntheticSet.load(out / "pad_ipc10" / "synthetic.pt")
    secs = float(syn.extra.get("distill_seconds", 0.0))
    fig |= {"iterations": syn.iteration, "distill_seconds": secs, "syn_lr": syn.extra.get("syn_lr")}
    fig["iterations_per_minute"] = 60.0 * syn.iteration / secs if secs else None
if (out / "eval.json").exists():
    res = json.loads((out / "eval.json").read_text())
    fig |= {"accuracy_mean": res["mean"], "accuracy_std": res["std"], "accuracies": res["accuracies"]}
(out / "figures.json").write_text(json.dumps(fig, indent=2) + "\n")
print(json.dumps(fig, indent=2))
PYEOF
