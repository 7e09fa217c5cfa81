# sfnet: `make demo` runs the main job on bundled data, `make test` runs the tests.
# Both install missing Debian packages first (as root, or through sudo).

SWIFT        ?= swift
APT_PACKAGES := libopenblas-dev zlib1g-dev libssl-dev libdeflate-dev libprotobuf-c-dev libhdf5-dev pkg-config chromium libavformat-dev libavcodec-dev libavutil-dev libswscale-dev
SFNET_RELEASE = .build/release/sfnet
# Python for fixtures, peers and real-client checks: the project's own environment (`make venv`),
# from the pinned requirements/*.txt; PYTHON=... overrides. Targets fall back to python3 (and the
# scripts then print SKIPPED where a client is missing) when .venv does not exist.
VENV         := .venv
PYTHON       ?= $(VENV)/bin/python
REQUIREMENTS := requirements/fixtures.txt requirements/interop.txt requirements/bench.txt

PHONY_EXTRA := check-eval faults
.PHONY: $(PHONY_EXTRA) venv test-deps test-kernels hdf5-mutations check-map deps build test demo check-python interop interop-onnx bench-convert bench-forward fixtures hostile clean ddp-example bench-onnx bench-data bench-train-step bench-job fixtures-train fixtures-transformers fuzz fuzz-deep

deps:
	@sh scripts/deps.sh $(APT_PACKAGES)

# The project's Python environment: torch (CPU use; PyPI's wheel brings ~5 GB of CUDA libraries),
# onnx, onnxruntime, h5py, keras, scikit-learn, pytorchvideo, av... pinned per purpose in requirements/.
venv: $(VENV)/.installed
$(VENV)/.installed: $(REQUIREMENTS)
	@[ -x $(VENV)/bin/python ] || python3 -m venv $(VENV)
	$(VENV)/bin/pip install -q $(foreach r,$(REQUIREMENTS),-r $(r))
	@touch $@

build: deps
	$(SWIFT) build -c release --product sfnet

test: deps
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --disable-swift-testing

demo: build
	@bash scripts/demo.sh $(SFNET_RELEASE)

# Opens converted native files with Python's safetensors package (skips loudly without it).
check-python: build
	@bash scripts/check_python.sh $(SFNET_RELEASE)

# Exports loaded by the real torch (torch.load(weights_only=True), strict load_state_dict), and the
# VideoMAE / TimeSformer exports by the real transformers (from_pretrained with empty loading info, the
# reference logits; original layouts strictly into transformers' models; FULL=1 adds refs-full/);
# prints SKIPPED loudly when torch or transformers is missing. PYTHON=... picks the interpreter.
interop: deps
	$(SWIFT) build --build-tests
	@PY=$(PYTHON); [ -x "$$PY" ] || PY=python3; "$$PY" scripts/interop_torch.py
	@PY=$(PYTHON); [ -x "$$PY" ] || PY=python3; "$$PY" scripts/interop_transformers.py $${FULL:+--full}

# ONNX exports checked by onnx.checker (full_check) and run in onnxruntime against the
# PyTorch references (relative L2 <= 1e-5); prints SKIPPED loudly when onnxruntime is missing.
interop-onnx: build
	@PY=$(PYTHON); [ -x "$$PY" ] || PY=python3; "$$PY" scripts/interop_onnx.py --sfnet $(SFNET_RELEASE)

# Full-size R50 conversion against cp and the Python path (needs torch: make venv).
bench-convert: build
	@bash Benchmarks/convert_bench.sh $(SFNET_RELEASE)

# SlowFast R50 8x8 forward against PyTorch and onnxruntime (needs torch, onnx, onnxruntime).
bench-forward: build
	@bash Benchmarks/forward_bench.sh $(SFNET_RELEASE)

# sfnet export -> PyTorch DistributedDataParallel fine-tuning (2 processes, gloo, CPU) -> sfnet convert;
# prints SKIPPED loudly when torch is missing. PYTHON=... picks the interpreter.
ddp-example: build
	@bash examples/ddp/run_example.sh $(SFNET_RELEASE)

# sfnet's ONNX export vs torch.onnx.export of the same SlowFast R50 8x8 in onnxruntime (same threads,
# interleaved); needs torch, onnx, onnxruntime. THREADS=... (default 2).
bench-onnx: build
	@PY=$(PYTHON); [ -x "$$PY" ] || PY=python3; "$$PY" Benchmarks/onnx_bench.py --sfnet $(SFNET_RELEASE) --threads $${THREADS:-2}

# Data pipeline (decode + sample + augment, 32 frames at 256) vs PyAV + PySlowFast's transforms on the same
# generated MP4s (needs torch and av: pip install av). REPEATS=... (default 5).
bench-data: deps
	$(SWIFT) build -c release --product sfnet-databench
	@PY=$(PYTHON); [ -x "$$PY" ] || PY=python3; "$$PY" Benchmarks/data_bench.py --bin .build/release/sfnet-databench --repeats $${REPEATS:-5}

fixtures:
	$(PYTHON) fixtures/generate.py

# Train-step gradient references (fixtures/train/; FULL=1 adds fixtures/full/slowfast_r50_8x8_train_ref.safetensors).
fixtures-train:
	@PY=$(PYTHON); [ -x "$$PY" ] || PY=python3; "$$PY" fixtures/generate_train_grads.py $${FULL:+--full}

# VideoMAE and TimeSformer fixtures made by transformers (fixtures/transformers/; ~30 s). FULL=1 writes
# instead full-size VideoMAE-S/B and TimeSformer-B folders and references to the git-ignored refs-full/
# (MODELS=videomae-s,videomae-b,timesformer-b picks some; VideoMAE-S ~40 s, VideoMAE-B ~2 min here).
fixtures-transformers:
	$(PYTHON) fixtures/transformers/generate_transformers.py $${FULL:+--full} $${MODELS:+--models $$MODELS}

# One SlowFast R50 8x8 training step (batch 2, 32x224x224) against PyTorch's (needs torch). THREADS=... ROUNDS=...
bench-train-step: build
	@bash Benchmarks/train_step_bench.sh $(SFNET_RELEASE)

# Issue 14's whole fine-tuning job (SlowFast R50 8x8 from scratch, 36 train / 12 val synthetic clips, 12 epochs,
# batch 4, 8x64²) against a plain PyTorch script doing the same job (Benchmarks/finetune_job_peer.py; needs torch,
# pytorchvideo, av, scikit-learn), interleaved. ROUNDS=... (default 2), ARCH=examples/demo/tiny_slowfast.json.
bench-job: build
	@PY=$(PYTHON); [ -x "$$PY" ] || PY=python3; "$$PY" Benchmarks/finetune_job_bench.py --sfnet $(SFNET_RELEASE) --rounds $${ROUNDS:-2} $${ARCH:+--arch $$ARCH} --json bench-out/finetune_job.json

# The hostile corpus (fixtures/hostile): generate.py needs only Python; generate_hdf5.py needs h5py
# (skipped loudly without it, leaving the committed HDF5 cases in place). PYTHON=...
hostile:
	@PY=$(PYTHON); [ -x "$$PY" ] || PY=python3; \
	if "$$PY" -c "import h5py" 2>/dev/null; then "$$PY" fixtures/hostile/generate_hdf5.py; \
	else echo "SKIPPED fixtures/hostile/generate_hdf5.py: no h5py for $$PY (pip install h5py); the committed HDF5 cases stay"; fi
	python3 fixtures/hostile/generate.py

# The `deps` recipe as root (no sudo), as a user with sudo, and as a user without: stand-in
# id/dpkg/apt-get/sudo on PATH record what would run (tests/deps_test.sh).
test-deps:
	@bash tests/deps_test.sh

# The numerics-sensitive tests under every OpenBLAS kernel this CPU runs (unset, Haswell, SkylakeX,
# Cooperlake, Zen), each a labelled step (scripts/test_kernels.sh). .ci/run runs it after `make test`.
test-kernels: deps
	$(SWIFT) build --build-tests
	@bash scripts/test_kernels.sh

clean:
	rm -rf .build demo-out bench-out

# Truncated, bit-flipped and smashed copies of the Keras fixtures through `sfnet convert --from keras`:
# each must convert or end in "malformed HDF5 file"; never a crash or a hang. COUNT=... per fixture.
hdf5-mutations: build
	@python3 scripts/hdf5_mutations.py --sfnet $(SFNET_RELEASE) --count $${COUNT:-300}

# sfnet's mAP (Train/Metrics) against scikit-learn's average_precision_score on seeded random cases
# (ties, classes without positives); prints SKIPPED loudly when scikit-learn is missing. PYTHON=...
check-map: deps
	@PY=$(PYTHON); [ -x "$$PY" ] || PY=python3; "$$PY" scripts/check_map_sklearn.py

# libFuzzer + AddressSanitizer on every parser (Fuzz/), SECS per target (default 600), JOBS in parallel;
# findings are copied to Fuzz/regressions/<target>/, which `make test` replays.
fuzz: deps
	@JOBS=$${JOBS:-1} bash scripts/fuzz.sh $${SECS:-600}

# The depth budget (issue 18): every target (byte formats and text formats) for SECS of wall time each
# (default 600), JOBS at a time (default: one per core), optimised + ASan; prints per target the
# executions, exec/s, coverage (cov/ft) and findings, which go to Fuzz/regressions/<target>/ as above.
# RUNS=BYTE:TEXT stops each target at that many executions instead (e.g. RUNS=10000000:1000000, with
# SECS as the cap). FORK=N runs each target on N workers (libFuzzer's fork mode; with JOBS=1, how one
# slow target gets every core: `make fuzz-deep JOBS=1 FORK=2 RUNS=10000000:1000000 SECS=14400 TARGETS=onnx`).
fuzz-deep: deps
	@JOBS=$${JOBS:-$$(nproc)} FORK="$(FORK)" RUNS="$(RUNS)" bash scripts/fuzz.sh $${SECS:-600} $(TARGETS)

# `sfnet eval`'s mAP against scikit-learn on the scores it wrote, for every run of the demo
# (run `make demo` first); prints SKIPPED loudly without scikit-learn. PYTHON=...
check-eval: build
	@PY=$(PYTHON); [ -x "$$PY" ] || PY=python3; "$$PY" scripts/check_eval_sklearn.py --sfnet $(SFNET_RELEASE) --demo

# kill -9 at random moments of convert, export and finetune (RUNS per job, default 100).
faults: build
	@python3 scripts/fault_inject.py --sfnet $(SFNET_RELEASE) --runs $${RUNS:-100} --write-kills $${WRITE_KILLS:-100}
