#!/usr/bin/env bash
# A study grid as a SLURM job array: one array task per run, keyed by its config hash.
#
#   bash examples/slurm_array.sh submit experiments/paper.toml [--set model.lm=qwen3-8b ...]
#
# submits three jobs: (1) --prepare (build images, cache encoder features once), (2) the
# array, one task per run, after (1), at most $MAX_PARALLEL at a time, and (3) --aggregate
# (LM-only test, table, report, figures) after every task of (2) succeeded.
# Re-submitting is safe: finished runs are skipped, interrupted ones resume from their last
# checkpoint (so --requeue after preemption loses at most checkpoint_every steps).
#
# Each array task runs `python -m interp.sweep CONFIG --run-index $SLURM_ARRAY_TASK_ID`, or,
# with GPUS_PER_RUN > 1, the same under torchrun (DDP over the node's GPUs; SHARD_LM=1 adds
# FSDP sharding of the frozen LM when it does not fit on one GPU).
#
# Environment: PYTHON (default .venv/bin/python), MAX_PARALLEL (8), GPUS_PER_RUN (1),
# SHARD_LM (0), SBATCH_EXTRA (more sbatch options, e.g. "--partition=gpu --account=abc"),
# LOG_DIR (logs). Adjust the #SBATCH lines below to your cluster.
#
#SBATCH --job-name=interp-sweep
#SBATCH --gres=gpu:1
#SBATCH --cpus-per-task=8
#SBATCH --mem=64G
#SBATCH --time=08:00:00
#SBATCH --requeue
set -euo pipefail

PYTHON=${PYTHON:-.venv/bin/python}
MAX_PARALLEL=${MAX_PARALLEL:-8}
GPUS_PER_RUN=${GPUS_PER_RUN:-1}
SHARD_LM=${SHARD_LM:-0}
LOG_DIR=${LOG_DIR:-logs}
SBATCH_EXTRA=${SBATCH_EXTRA:-}

usage() {
    echo "usage: bash $0 submit CONFIG [interp.sweep options]   (on a login node)" >&2
    echo "       sbatch --array=0-N $0 CONFIG [options]          (what submit does for the array)" >&2
    exit 2
}

if [[ ${1:-} == "submit" ]]; then
    shift
    [[ $# -ge 1 ]] || usage
    config=$1
    shift
    n=$("$PYTHON" -m interp.sweep "$config" --count "$@" | tail -n 1)
    [[ $n =~ ^[0-9]+$ && $n -gt 0 ]] || { echo "could not count the runs of $config (got '$n')" >&2; exit 1; }
    mkdir -p "$LOG_DIR"
    # shellcheck disable=SC2086
    prep=$(sbatch --parsable $SBATCH_EXTRA --job-name=interp-prepare --output="$LOG_DIR/%x-%j.out" \
        --wrap="$PYTHON -m interp.sweep $config --prepare $*")
    # shellcheck disable=SC2086
    array=$(sbatch --parsable $SBATCH_EXTRA --dependency="afterok:$prep" --array="0-$((n - 1))%$MAX_PARALLEL" \
        --gres="gpu:$GPUS_PER_RUN" --output="$LOG_DIR/%x-%A_%a.out" "$0" "$config" "$@")
    # shellcheck disable=SC2086
    agg=$(sbatch --parsable $SBATCH_EXTRA --dependency="afterok:$array" --job-name=interp-aggregate \
        --output="$LOG_DIR/%x-%j.out" --wrap="$PYTHON -m interp.sweep $config --aggregate $*")
    echo "submitted: prepare $prep, array $array (tasks 0-$((n - 1)), $MAX_PARALLEL at a time), aggregate $agg"
    exit 0
fi

# ---- inside one array task
[[ $# -ge 1 ]] || usage
[[ -n ${SLURM_ARRAY_TASK_ID:-} ]] || { echo "SLURM_ARRAY_TASK_ID is not set: submit with '$0 submit CONFIG'" >&2; exit 2; }
config=$1
shift
cd "${SLURM_SUBMIT_DIR:-.}"
extra=()
[[ $SHARD_LM == 1 ]] && extra+=(--shard-lm)
if [[ $GPUS_PER_RUN -gt 1 ]]; then
    exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$GPUS_PER_RUN" \
        -m interp.sweep "$config" --run-index "$SLURM_ARRAY_TASK_ID" --no-progress "${extra[@]}" "$@"
fi
exec "$PYTHON" -m interp.sweep "$config" --run-index "$SLURM_ARRAY_TASK_ID" --no-progress "${extra[@]}" "$@"
