#!/usr/bin/env bash
# The demo (`make demo`): convert the bundled checkpoints (made by real PyTorch, Caffe2-style
# pickles, ONNX and Keras) into native weights, verify that the native network reproduces
# their producers' outputs, make a small synthetic target task with sfnet's own code (objects
# moving across, bouncing, spinning, resting; real MP4s), pretrain the network on a larger,
# different synthetic source task (standing in for K400, which cannot be downloaded here),
# fine-tune from that start, from an inflated 2D start and from scratch on two training-set
# sizes, evaluate, predict, write the reports, and print the study's Table 1 for this data.
#
# Every random choice follows from SEED (default 1): `make demo SEED=2` repeats it with others.
# The pretrained weights are kept in demo-out/pretrain/ and reused by a rerun with the same
# request (same source task, architecture, recipe and seed); delete that folder to pretrain again.
set -euo pipefail
SFNET=${1:-.build/release/sfnet}
OUT=demo-out
SEED=${SEED:-1}
SOURCE_SEED=$((SEED + 100))
SIZES=12,24          # target training clips per class (the pool has 24)
BIG=${SIZES##*,}
SRC_TRAIN=30         # source-task training clips per class (8 classes: 240 clips, 2.5x the target's pool)
SRC_EPOCHS=30        # cosine to 0 (14 constant-LR epochs learned the source task too weakly to transfer for every seed)
# Everything but the pretraining cache starts afresh.
mkdir -p "$OUT"; find "$OUT" -mindepth 1 -maxdepth 1 ! -name pretrain -exec rm -rf {} +
start=$(date +%s)
say() { echo; echo "\$ $*"; }
echo "seeds: target data and fine-tuning $SEED, source task and pretraining $SOURCE_SEED (rerun: make demo SEED=$SEED)"

echo "== 1. convert published-style checkpoints to native weights =="
for f in torch/tiny_pyslowfast.pyth torch/tiny_pytorchvideo.pyth torch/tiny_mmaction2.pth caffe2/tiny_slowfast_c2.pkl onnx/tiny_slowfast_8x8.onnx; do
  n=$(basename "${f%.*}")
  say sfnet convert fixtures/$f -o $OUT/$n.safetensors
  "$SFNET" convert "fixtures/$f" -o "$OUT/$n.safetensors" | head -3
done
say sfnet convert fixtures/keras/tiny_resnet50_keras3.weights.h5 -o $OUT/keras_resnet50.safetensors
"$SFNET" convert fixtures/keras/tiny_resnet50_keras3.weights.h5 -o "$OUT/keras_resnet50.safetensors" | tail -3

echo; echo "== 2. verify: the native network must reproduce each producer's outputs =="
for w in tiny_pyslowfast tiny_slowfast_c2 tiny_slowfast_8x8; do
  say sfnet verify $OUT/$w.safetensors --reference fixtures/reference/tiny_slowfast_8x8_ref.safetensors
  "$SFNET" verify "$OUT/$w.safetensors" --reference fixtures/reference/tiny_slowfast_8x8_ref.safetensors | tail -2
done
say sfnet verify $OUT/keras_resnet50.safetensors --reference fixtures/keras/tiny_resnet50_keras3_ref.safetensors
"$SFNET" verify "$OUT/keras_resnet50.safetensors" --reference fixtures/keras/tiny_resnet50_keras3_ref.safetensors | tail -2
# The inflated 2D start: the tiny Keras ResNet-50 inflated into a SlowFast, gated by the boring-video check.
say sfnet convert fixtures/keras/tiny_resnet50_keras3.weights.h5 --arch-json examples/demo/tiny_inflated_slowfast.json -o $OUT/inflated2d.safetensors
"$SFNET" convert fixtures/keras/tiny_resnet50_keras3.weights.h5 --arch-json examples/demo/tiny_inflated_slowfast.json -o "$OUT/inflated2d.safetensors" | tail -2
say sfnet verify $OUT/inflated2d.safetensors --reference fixtures/boring/tiny_keras3_boring_ref.safetensors
"$SFNET" verify "$OUT/inflated2d.safetensors" --reference fixtures/boring/tiny_keras3_boring_ref.safetensors | tail -1

echo; echo "== 3. the target task: 4 kinds of motion as real MP4 files =="
say sfnet data synth -o $OUT/data --train-per-class 24 --val-per-class 6 --test-per-class 8 --size 64 --object-scale 3 --noise 2 --seed $SEED
"$SFNET" data synth -o "$OUT/data" --train-per-class 24 --val-per-class 6 --test-per-class 8 --size 64 --object-scale 3 --noise 2 --seed "$SEED"

echo; echo "== 4. a pretrained start: a larger, different synthetic source task, standing in for K400 =="
# 8 other classes (striped shapes on textured backgrounds drifting sideways or vertically, orbiting, swinging,
# shaking, flashing, growing, darting), more clips: the same low-level structure as the target, none of its classes.
say sfnet data synth -o $OUT/source --task source --train-per-class $SRC_TRAIN --val-per-class 4 --test-per-class 0 --size 64 --object-scale 1.5 --noise 0 --seed $SOURCE_SEED
"$SFNET" data synth -o "$OUT/source" --task source --train-per-class "$SRC_TRAIN" --val-per-class 4 --test-per-class 0 --size 64 \
  --object-scale 1.5 --noise 0 --seed "$SOURCE_SEED" | head -1
say sfnet pretrain --train $OUT/source/train.csv --val $OUT/source/val.csv --arch examples/demo/tiny_slowfast.json -o $OUT/pretrain/source-seed$SOURCE_SEED.safetensors --reuse ...
mkdir -p "$OUT/pretrain"
"$SFNET" pretrain --train "$OUT/source/train.csv" --val "$OUT/source/val.csv" --arch examples/demo/tiny_slowfast.json \
  -o "$OUT/pretrain/source-seed$SOURCE_SEED.safetensors" --reuse --epochs "$SRC_EPOCHS" --batch 8 --lr 0.05 --warmup-epochs 1 --schedule cosine \
  --dropout 0.2 --crop 64 --jitter 64 72 --sampling-rate 4 --seed "$SOURCE_SEED" | grep -v '^note: ' | tee "$OUT/pretrain.log"
cp "$OUT/pretrain/source-seed$SOURCE_SEED.safetensors" "$OUT/pretrained.safetensors"

echo; echo "== 5. fine-tune: pretrained vs inflated 2D vs scratch, $SIZES clips per class (64x64 crops, 8 frames) =="
# --skip-verify: the pretrained start was trained by sfnet itself, there is no producer to verify it against
# (the inflated start passed the boring-video check above).
say sfnet experiment --starts scratch,pretrained=$OUT/pretrained.safetensors,inflated2d=$OUT/inflated2d.safetensors --per-class $SIZES --skip-verify ... --out $OUT/study
"$SFNET" experiment --train "$OUT/data/train.csv" --val "$OUT/data/val.csv" --test "$OUT/data/test.csv" \
  --starts "scratch,pretrained=$OUT/pretrained.safetensors,inflated2d=$OUT/inflated2d.safetensors" --per-class "$SIZES" \
  --arch examples/demo/tiny_slowfast.json --skip-verify \
  --out "$OUT/study" --epochs 12 --batch 8 --lr 0.05 --warmup-epochs 1 --dropout 0.2 --crop 64 --jitter 64 72 \
  --sampling-rate 4 --seed "$SEED" | grep -v '^\[.*\] note' > "$OUT/experiment.log"
grep -E 'epoch 12/12' "$OUT/experiment.log" || true

echo; echo "== 6. evaluate and predict with the best pretrained model =="
say sfnet eval --weights $OUT/study/pretrained-$BIG/best.safetensors --data $OUT/data/test.csv --views 3x2
"$SFNET" eval --weights "$OUT/study/pretrained-$BIG/best.safetensors" --data "$OUT/data/test.csv" --views 3x2 --sampling-rate 4
say sfnet predict --weights $OUT/study/pretrained-$BIG/best.safetensors "(two test videos)" --top-k 2
"$SFNET" predict --weights "$OUT/study/pretrained-$BIG/best.safetensors" --sampling-rate 4 --top-k 2 \
  "$OUT/data/$(sed -n 2p "$OUT/data/test.csv" | cut -d, -f1)" "$OUT/data/$(sed -n 20p "$OUT/data/test.csv" | cut -d, -f1)"

echo; echo "== 7. hostile input is refused, nothing is executed =="
say sfnet convert fixtures/hostile/files/c01_global_os_system.pkl
"$SFNET" convert fixtures/hostile/files/c01_global_os_system.pkl -o "$OUT/evil.safetensors" || echo "(exit $?, nothing written, nothing executed)"

echo; echo "== Table 1 on the synthetic target task: test mAP per start and training clips per class =="
echo "starts: scratch = the tiny SlowFast (examples/demo/tiny_slowfast.json), PySlowFast init;"
echo "        pretrained = the same network pretrained on a synthetic source task, standing in for K400 ($(grep -o 'source val mAP [0-9.]*%' "$OUT/pretrain.log" || echo 'see pretrain.log'));"
echo "        inflated2d = the bundled tiny Keras ResNet-50 (width 2, random weights made by Keras) inflated to SlowFast:"
echo "                     the form of an ImageNet start, not its content."
sed -n '/^test mAP per start/,$p' "$OUT/experiment.log"
echo "seeds: target data and fine-tuning $SEED, source task and pretraining $SOURCE_SEED; repeat with: make demo SEED=$SEED"
echo "reports: $OUT/study/experiment.html and $OUT/study/*/report.html"
echo "demo finished in $(( $(date +%s) - start )) s"
