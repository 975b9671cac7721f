#!/usr/bin/env bash
# Reproduce models/gpr_default.pt from scratch on a 2-core CPU (2 h 6 min on session 15's
# AVX2 VM, plus 2 min of make setup; models/MODEL_CARD.md): the training set, the novel-object test set,
# end-to-end training with Adam from random weights (LR 1e-3, /10 on a validation plateau)
# for ADAM_EPOCHS epochs, then the stage-2 fine-tuning of the confidence on refined-grasp
# accuracy (stage C, on the first 1,200 training scenes annotated as densely as the test
# set), and the evaluation of Tables I and II. Every step is resumable: run the script again
# after an interruption and it continues where it stopped. Until session 14 the end-to-end
# part was 19 epochs of SGD (LR 0.02) followed by 30 of Adam (models/MODEL_CARD.md).
set -euo pipefail
cd "$(dirname "$0")/.."
# shellcheck disable=SC1091
source env.sh
OUT=${OUT:-runs/default}
ADAM_EPOCHS=${ADAM_EPOCHS:-30}
CONF_EPOCHS=${CONF_EPOCHS:-10}
# (both resume, and finish at once when the folder is complete)
gpr-ros dataset generate --out data/train --scenes 2000 --workers 2 --seed 0 --objects similar
# the test set with denser ground truth (annotation NMS at D = 0.01; see models/MODEL_CARD.md)
gpr-ros dataset generate --out data/test_novel --scenes 300 --workers 2 --seed 1 --objects novel \
    --grasp-nms 0.01
# the same first 1,200 training scenes with ground truth as dense as the test set's (stage C)
gpr-ros dataset generate --out data/train_n01 --scenes 1200 --workers 2 --seed 0 \
    --objects similar --grasp-nms 0.01
gpr-ros train --data data/train --out "$OUT/adam" --optimizer adam --lr 1e-3 \
    --epochs "$ADAM_EPOCHS"
# stage C: backbone and stage 1 frozen; the stage-2 confidence learns whether the refined
# grasp is within D 0.01 and 5 mm of width of a ground-truth grasp
gpr-ros train --data data/train_n01 --out "$OUT/conf" --optimizer adam --lr 3e-4 \
    --epochs "$CONF_EPOCHS" --init-from "$OUT/adam/best.pt" --train-parts stage2 \
    --confidence-target refined --proposals-train 256
gpr-ros evaluate --model "$OUT/conf/best.pt" --data data/test_novel --out "$OUT/evaluation"
echo "model: $OUT/conf/best.pt (best validation loss; copy it to models/gpr_default.pt to ship it)"
