#!/usr/bin/env bash
# The demo: convert the bundled checkpoints (made by real PyTorch in every
# naming and container sfnet reads) into native weights, inspect them, verify
# that the native network reproduces PyTorch's outputs, and time a forward pass.
set -euo pipefail
SFNET=${1:-.build/release/sfnet}
OUT=demo-out
rm -rf "$OUT"; mkdir -p "$OUT"
echo "== sfnet demo: convert published-style SlowFast checkpoints to native weights =="
for f in tiny_pyslowfast.pyth tiny_legacy.pth tiny_pytorchvideo.pyth tiny_mmaction2.pth tiny_bf16.pth; do
  echo
  echo "\$ sfnet convert fixtures/torch/$f -o $OUT/${f%.*}.safetensors"
  "$SFNET" convert "fixtures/torch/$f" -o "$OUT/${f%.*}.safetensors"
done
echo
echo "\$ sfnet convert fixtures/torch/tiny_pyslowfast.pyth -o $OUT/wildlife9.safetensors --num-classes 9"
"$SFNET" convert fixtures/torch/tiny_pyslowfast.pyth -o "$OUT/wildlife9.safetensors" --num-classes 9
echo
echo "\$ sfnet inspect $OUT/tiny_mmaction2.safetensors | head -14"
"$SFNET" inspect "$OUT/tiny_mmaction2.safetensors" | head -14
echo
echo "== verify: the native SlowFast must reproduce PyTorch's outputs on these weights =="
for pair in tiny_pyslowfast:tiny_slowfast_8x8 tiny_pytorchvideo:tiny_slowfast_8x8; do
  w=${pair%%:*}; r=${pair##*:}
  echo
  echo "\$ sfnet verify $OUT/$w.safetensors --reference fixtures/reference/${r}_ref.safetensors"
  "$SFNET" verify "$OUT/$w.safetensors" --reference "fixtures/reference/${r}_ref.safetensors"
done
for m in tiny_slowfast_4x16 tiny_slow_only tiny_resnet2d; do
  "$SFNET" convert "fixtures/reference/$m.pyth" -o "$OUT/$m.safetensors" > /dev/null
  echo
  echo "\$ sfnet verify $OUT/$m.safetensors --reference fixtures/reference/${m}_ref.safetensors | tail -2"
  "$SFNET" verify "$OUT/$m.safetensors" --reference "fixtures/reference/${m}_ref.safetensors" | tail -2
done
echo
echo "\$ sfnet bench forward --arch slowfast-r50-8x8 --size 224 --frames 32 --repeat 2"
"$SFNET" bench forward --arch slowfast-r50-8x8 --size 224 --frames 32 --repeat 2
echo
echo "\$ sfnet convert fixtures/torch/torchscript_tiny.pt   # refused: TorchScript carries code"
"$SFNET" convert fixtures/torch/torchscript_tiny.pt -o "$OUT/ts.safetensors" || echo "(exit $?, nothing written)"
echo
echo "\$ sfnet convert fixtures/hostile/files/c01_global_os_system.pkl   # a pickle that would run os.system"
"$SFNET" convert fixtures/hostile/files/c01_global_os_system.pkl -o "$OUT/evil.safetensors" || echo "(exit $?, nothing written, nothing executed)"
echo
echo "demo outputs in $OUT/:"
ls -la "$OUT"
