#!/usr/bin/env bash
# Regenerates Sources/CONNX/onnx.pb-c.{c,h} from the onnx Python package's onnx.proto with protoc-c
# (Debian protobuf-c-compiler). Not part of the build: the generated files are committed.
# Usage: scripts/gen_onnx_c.sh   (PYTHON=... picks the interpreter whose onnx package supplies onnx.proto;
#        default: the project's .venv, made by `make venv`)
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
py="${PYTHON:-$root/.venv/bin/python}"
command -v protoc-c >/dev/null || { echo "error: protoc-c is missing (apt-get install protobuf-c-compiler)" >&2; exit 1; }
proto="$("$py" -c 'import onnx, os; print(os.path.join(os.path.dirname(onnx.__file__), "onnx.proto"))')"
onnx_version="$("$py" -c 'import onnx; print(onnx.__version__)')"
protoc_version="$(protoc-c --version | tr '\n' ' ' | sed 's/ *$//')"
work="$(mktemp -d)"; trap 'rm -rf "$work"' EXIT
cp "$proto" "$work/onnx.proto"
(cd "$work" && protoc-c --c_out=. onnx.proto)
header="/* sfnet: generated once and committed; protoc-c is not needed to build.
 * Command: scripts/gen_onnx_c.sh (protoc-c --c_out=. onnx.proto on the onnx package's onnx.proto)
 * protoc-c: $protoc_version
 * onnx.proto: from the onnx $onnx_version Python package (package onnx, proto2).
 * Runtime: libprotobuf-c (Debian libprotobuf-c-dev), linked as -lprotobuf-c.
 */"
{ echo "$header"; cat "$work/onnx.pb-c.c"; } > "$root/Sources/CONNX/onnx.pb-c.c"
{ echo "$header"; cat "$work/onnx.pb-c.h"; } > "$root/Sources/CONNX/include/onnx.pb-c.h"
echo "wrote Sources/CONNX/onnx.pb-c.c and Sources/CONNX/include/onnx.pb-c.h (onnx $onnx_version)"
