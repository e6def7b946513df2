#!/usr/bin/env bash
# A lent GPU's few minutes for a training campaign (the device tool; campaigns/README.md, "On a lent GPU").
#
#   here, first:   bash campaigns/gpu.sh prepare flow|brenier      # the data into runs/gpu_data (git-ignored)
#   on the GPU:    bash campaigns/gpu.sh flow|brenier [MINUTES]    # weights, checkpoint and log into $OUT
#   here, after:   bash campaigns/gpu.sh join FOLDER               # puts the split files back together
#
# DEVICE=cpu runs the same commands here on the CPU (to test the script before a lent GPU's time is spent).
# The device copies the tracked tree plus the carried runs/gpu_data (64 MiB together) and returns files of
# at most 16 MiB from $OUT, so "prepare" fills what the tree leaves of that budget and the run splits every
# file it returns into 15 MiB parts. Only torch, typer, rich, pillow, scikit-image and safetensors are
# there: both training paths import neither deepinv nor POT.
set -euo pipefail
cd "$(dirname "$0")/.."

TRAVEL_BUDGET=$((63 * 1024 * 1024))  # bytes: the device's 64 MiB, less a margin for untracked files
DATA=runs/gpu_data
SHARED=${SHARED:-../shared/data}
DEVICE=${DEVICE:-cuda}

prepare() {
    [[ $1 == flow || $1 == brenier ]] || { echo "prepare flow or brenier" >&2; exit 2; }
    rm -rf "$DATA" && mkdir -p "$DATA"
    case $1 in
    flow)
        # the flow trainer holds out the last 6 images (sorted by name) for validation: keep those, then
        # the first training images that fit
        local tree room
        tree=$(git ls-files -z | xargs -0 du -cb | tail -1 | cut -f1)
        room=$((TRAVEL_BUDGET - tree))
        mkdir -p "$DATA/train_natural"
        mapfile -t images < <(ls "$SHARED/train_natural" | grep -iE "\.(jpg|jpeg|png)$" | LC_ALL=C sort)
        local count=${#images[@]} used=0 kept=0
        for name in "${images[@]:count-6}" "${images[@]:0:count-6}"; do
            local size
            size=$(stat -c %s "$SHARED/train_natural/$name")
            ((used + size <= room)) || break
            cp "$SHARED/train_natural/$name" "$DATA/train_natural/" && used=$((used + size)) && kept=$((kept + 1))
        done
        echo "train_natural: $kept of $count images ($((used / 1024 / 1024)) MiB; tree $((tree / 1024 / 1024)) MiB)"
        ;;
    brenier)
        cp -r "$SHARED/mnist" "$DATA/mnist"
        echo "mnist: $(du -sh "$DATA/mnist" | cut -f1)"
        ;;
    esac
}

ship() {  # copy $1 into $OUT, in 15 MiB parts when it is larger than the device returns
    if (($(stat -c %s "$1") > 15 * 1024 * 1024)); then
        split -b 15M -d "$1" "$OUT/$(basename "$1").part-"
    else
        cp "$1" "$OUT/"
    fi
}

train() {
    local what=$1 minutes=$2 work=/tmp/otmap_gpu
    : "${OUT:?OUT must name the folder whose files come back}"
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
    [[ $DEVICE == cpu ]] || python3 -c "import torch; assert torch.cuda.is_available(), 'no CUDA'; print(torch.cuda.get_device_name())"
    rm -rf "$work" && mkdir -p "$work"
    local command weights returned
    case $what in
    flow)  # warm start from the shipped prior; 8x the CPU batch (a GPU step costs about the same)
        weights=$work/flow_natural.safetensors
        returned=("$weights")  # (its checkpoint, 150 MB, stays there)
        command=(flow --data "$DATA/train_natural" --init models/flow_natural.safetensors --lr 2e-4
                 --schedule-steps 20000 --batch-pixels $((8 * 32 * 64 * 64))) ;;
    brenier)  # resume the committed campaign checkpoint with its own recipe (campaigns/README.md)
        cp campaigns/brenier_pS/checkpoint.safetensors campaigns/brenier_pS/log.jsonl "$work/"
        weights=$work/brenier_mnist.safetensors
        returned=("$weights" "$work/checkpoint.safetensors")
        command=(brenier --data "$DATA/mnist" --code 32 --noise-scale 0.5 --pca-source --penalty-every 4
                 --lr 5e-5 --resume) ;;
    esac
    python3 -m otmap_cli train "${command[@]}" --run-dir "$work" --out "$weights" --device "$DEVICE" \
        --minutes "$minutes" --checkpoint-minutes 1.5 2>&1 | tee "$OUT/train.out" || true  # ship what there is
    for file in "${returned[@]}"; do
        if [[ -f $file ]]; then ship "$file"; fi
    done
    [[ -f $work/log.jsonl ]] && cp "$work/log.jsonl" "$OUT/"
    ls -l "$OUT"
}

join_parts() {  # the parts of every split file in $1, back into one file each
    for first in "$1"/*.part-00; do
        [[ -e $first ]] || continue
        cat "${first%-00}"-* > "runs/$(basename "${first%.part-00}")"
        echo "runs/$(basename "${first%.part-00}")"
    done
}

case ${1:-} in
prepare) prepare "${2:-}" ;;
flow | brenier) train "$1" "${2:-9}" ;;
join) join_parts "${2:?the folder the device returned}" ;;
*) sed -n 2,14p "$0" >&2; exit 2 ;;
esac
