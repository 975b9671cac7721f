#!/usr/bin/env bash
# Reproduce models/gpr_default.pt from scratch on a 2-core CPU (about 2.5-3 hours):
# the training set, the novel-object test set, SGD as the paper (LR 0.02) for SGD_EPOCHS
# epochs, then Adam (LR 1e-3, /10 on plateau) from those weights up to ADAM_EPOCHS, and the
# evaluation of Tables I and II. Every step is resumable: run the script again after an
# interruption and it continues where it stopped.
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source env.sh
OUT=${OUT:-runs/default}
SGD_EPOCHS=${SGD_EPOCHS:-19}
ADAM_EPOCHS=${ADAM_EPOCHS:-30}
# (both resume, and finish at once when the folder is complete)
gpr-ros dataset generate --out data/train --scenes 2000 --workers 2 --seed 0 --objects similar
# the test set with denser ground truth (annotation NMS at D = 0.01; see models/MODEL_CARD.md)
gpr-ros dataset generate --out data/test_novel --scenes 300 --workers 2 --seed 1 --objects novel \
    --grasp-nms 0.01
gpr-ros train --data data/train --out "$OUT/sgd" --epochs "$SGD_EPOCHS"
gpr-ros train --data data/train --out "$OUT/adam" --optimizer adam --lr 1e-3 \
    --epochs "$ADAM_EPOCHS" --init-from "$OUT/sgd/last.pt"
gpr-ros evaluate --model "$OUT/adam/best.pt" --data data/test_novel --confidence-threshold 0.3 \
    --out "$OUT/evaluation"
echo "model: $OUT/adam/best.pt (best validation loss; copy it to models/gpr_default.pt to ship it)"
