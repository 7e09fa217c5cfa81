#!/usr/bin/env bash
# The demo (`make demo`): convert the bundled checkpoints (made by real PyTorch, Caffe2-style
# pickles, ONNX and Keras) into native weights, verify that the native network reproduces
# their producers' outputs, make a small synthetic video data set with sfnet's own code
# (objects moving across, bouncing, spinning, resting; real MP4s), fine-tune from the
# K400-style checkpoint and from scratch at reduced resolution on two training-set sizes,
# evaluate, predict, write the reports, and print the study's Table 1 for this data.
set -euo pipefail
SFNET=${1:-.build/release/sfnet}
OUT=demo-out
rm -rf "$OUT"; mkdir -p "$OUT"
start=$(date +%s)
say() { echo; echo "\$ $*"; }

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
# The K400-style start: the tiny SlowFast, converted and verified above (its record gates finetune).
cp "$OUT/tiny_pyslowfast.safetensors" "$OUT/k400.safetensors"
"$SFNET" verify "$OUT/k400.safetensors" --reference fixtures/reference/tiny_slowfast_8x8_ref.safetensors > /dev/null

echo; echo "== 3. a synthetic data set: 4 kinds of motion as real MP4 files =="
say sfnet data synth -o $OUT/data --train-per-class 24 --val-per-class 6 --test-per-class 8 --size 64 --object-scale 3 --noise 2 --seed 1
"$SFNET" data synth -o "$OUT/data" --train-per-class 24 --val-per-class 6 --test-per-class 8 --size 64 --object-scale 3 --noise 2 --seed 1

echo; echo "== 4. fine-tune: K400-style start vs scratch, 12 and 24 clips per class (64x64 crops, 8 frames) =="
say sfnet experiment --starts scratch,k400=$OUT/k400.safetensors --per-class 12,24 ... --out $OUT/study
"$SFNET" experiment --train "$OUT/data/train.csv" --val "$OUT/data/val.csv" --test "$OUT/data/test.csv" \
  --starts "scratch,k400=$OUT/k400.safetensors" --per-class 12,24 --arch examples/demo/tiny_slowfast.json \
  --out "$OUT/study" --epochs 12 --batch 8 --lr 0.05 --warmup-epochs 1 --dropout 0.2 --crop 64 --jitter 64 72 \
  --sampling-rate 4 --seed 1 | grep -v '^\[.*\] note' > "$OUT/experiment.log"
grep -E 'epoch 12/12' "$OUT/experiment.log" || true

echo; echo "== 5. evaluate and predict with the best K400-style model =="
say sfnet eval --weights $OUT/study/k400-24/best.safetensors --data $OUT/data/test.csv --views 3x2
"$SFNET" eval --weights "$OUT/study/k400-24/best.safetensors" --data "$OUT/data/test.csv" --views 3x2 --sampling-rate 4
say sfnet predict --weights $OUT/study/k400-24/best.safetensors "(two test videos)" --top-k 2
"$SFNET" predict --weights "$OUT/study/k400-24/best.safetensors" --sampling-rate 4 --top-k 2 \
  "$OUT/data/$(sed -n 2p "$OUT/data/test.csv" | cut -d, -f1)" "$OUT/data/$(sed -n 20p "$OUT/data/test.csv" | cut -d, -f1)"

echo; echo "== 6. hostile input is refused, nothing is executed =="
say sfnet convert fixtures/hostile/files/c01_global_os_system.pkl
"$SFNET" convert fixtures/hostile/files/c01_global_os_system.pkl -o "$OUT/evil.safetensors" || echo "(exit $?, nothing written, nothing executed)"

echo; echo "== Table 1 on the synthetic data: test mAP per start and training clips per class =="
sed -n '/^test mAP per start/,$p' "$OUT/experiment.log"
echo "reports: $OUT/study/experiment.html and $OUT/study/*/report.html"
echo "demo finished in $(( $(date +%s) - start )) s"
