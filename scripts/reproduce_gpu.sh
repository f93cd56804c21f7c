#!/usr/bin/env bash
# The GPU-scale runs behind the PAD figures and the study-config DataDAM figures (issues 3 and 4), as run
# on one lent H100. Everything is an ordinary ddlight CLI command; this script only orders them, runs
# independent chains side by side (small ConvNets leave most of a big GPU idle) and keeps a timeline.
#   bash scripts/reproduce_gpu.sh [OUTDIR]          (default artifacts/gpu)
# Chains:  A) DataDAM study configs (real, noise) -> evaluator: study recipe (cosine, 50 epochs) with
#             ConvNet-3 and MLP, and the field's 300-epoch protocol with ConvNet-3.
#          B) experts (configs/mnist/gpu/experts.yaml) -> PAD IPC 1/10/100 + noise in parallel -> evaluator.
set -u
OUTDIR=${1:-artifacts/gpu}
mkdir -p "$OUTDIR"
PY=${PYTHON:-python3}
log() { echo "[$(date +%H:%M:%S)] $*" | tee -a "$OUTDIR/timeline.txt"; }
stage() {  # stage NAME CMD... : run, log its output, record wall time and exit code
  local name=$1; shift
  local t0=$(date +%s.%N)
  log "start $name: $*"
  "$@" > "$OUTDIR/$name.log" 2>&1
  local rc=$?
  log "end $name rc=$rc wall=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $t0}")s"
  return $rc
}
evaluate() {  # evaluate NAME SET_DIR : the three evaluations of one synthetic set
  local name=$1 dir=$2
  stage "eval_${name}_convnet300" $PY -m ddlight fit --config configs/mnist/evaluate.yaml \
    --data.init_args.path "$dir/synthetic.pt" --model.init_args.results_path "$dir/eval_convnet_300.json" \
    --trainer.logger.init_args.name "eval_${name}"
  if [ "${3:-}" = study ]; then
    for arch in convnet mlp; do
      cfg=configs/mnist/evaluate.yaml; [ $arch = mlp ] && cfg=configs/mnist/evaluate_mlp.yaml
      stage "eval_${name}_${arch}_cosine50" $PY -m ddlight fit --config $cfg \
        --model.init_args.schedule cosine --model.init_args.epochs 50 --trainer.max_epochs 50 \
        --data.init_args.path "$dir/synthetic.pt" --model.init_args.results_path "$dir/eval_${arch}_cosine50.json" \
        --trainer.logger.init_args.name "eval_${name}"
    done
  fi
}
chain_datadam() {  # chain_datadam NAME CONFIG
  stage "distill_$1" $PY -m ddlight fit --config "$2" --model.init_args.export_dir "$OUTDIR/$1" \
    --trainer.logger.init_args.name "$1" && evaluate "$1" "$OUTDIR/$1" study
}
chain_pad() {  # chain_pad NAME STEM: configs/mnist/STEM.yaml with its GPU overlay configs/mnist/gpu/STEM.yaml
  stage "distill_$1" $PY -m ddlight fit --config "configs/mnist/$2.yaml" --config "configs/mnist/gpu/$2.yaml" \
    --model.init_args.export_dir "$OUTDIR/$1" \
    && evaluate "$1" "$OUTDIR/$1"
}

log "machine: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null || echo no GPU)"
$PY -c "import torch, lightning; print('torch', torch.__version__, 'lightning', lightning.__version__)" \
  | tee -a "$OUTDIR/timeline.txt"

chain_datadam datadam_study_real configs/mnist/datadam.yaml &
chain_datadam datadam_study_noise configs/mnist/datadam_noise.yaml &

stage experts $PY -m ddlight fit --config configs/mnist/experts.yaml --config configs/mnist/gpu/experts.yaml
for ipc in 1 10 100; do chain_pad "pad_ipc$ipc" "pad_ipc$ipc" & done
chain_pad pad_noise pad_noise &
wait
log "all done"
touch "$OUTDIR/ALL_DONE"
