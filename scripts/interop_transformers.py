#!/usr/bin/env python3
"""Interop check of sfnet's video-transformer exports with the real transformers and torch (issue 16, part 4).

    python scripts/interop_transformers.py [--sfnet PATH] [--keep DIR] [--require] [--full]

For each tiny fixture made by transformers (fixtures/transformers: tiny_videomae, tiny_videomae_cls,
tiny_timesformer) the built sfnet converts the Hugging Face folder and exports it:
  - `--to huggingface`: AutoModelForVideoClassification.from_pretrained(folder, output_loading_info=True)
    loads it with no missing, unexpected or mismatched keys and no error messages, as the right class,
    and its logits on the reference clip (input.x permuted to (N, T, 3, H, W)) match the reference
    logits (relative L2 <= 1e-5; the freshly initialised model must not); the loaded model's own
    save_pretrained writes the same config.json byte for byte and the same tensor names as sfnet did
    (what transformers 5.25 writes);
  - `--to videomae-original` / `--to timesformer-original`: torch.load(weights_only=True) gives the
    container the original code loads ({"model"} / {"model_state"}) with the original fixture's keys
    in its order and its tensors bit for bit; mapped by the inverse key map of transformers' conversion
    scripts (fixtures/transformers/generate_transformers.py), it loads with load_state_dict(strict=True)
    into a fresh transformers model and reproduces the reference logits;
  - the exports convert back (`sfnet convert`) to the same native tensors, bit for bit.
Two variants of the tiny VideoMAE's native file (its sfnet.arch edited) check what has no fixture:
  - hidden_act gelu_tanh, head_activation sigmoid and class names (sfnet.classes): config.json says
    gelu_pytorch_tanh, problem_type multi_label_classification and id2label with the names;
    transformers' logits from the exported folder pass `sfnet verify --tolerance 1e-5` on the native file;
  - fc_norm eps 1e-6 (an original VideoMAE's): the export notes that transformers computes fc_norm with
    eps 1e-5; with that eps transformers' logits differ from sfnet's slightly (reported, < 1e-4), and with
    model.fc_norm.eps set to 1e-6 they pass `sfnet verify --tolerance 1e-5`.
With --full (and refs-full/ from `make fixtures-transformers FULL=1`), the full-size VideoMAE-S/B and
TimeSformer-B folders go through convert + export huggingface + from_pretrained against their references.
Prints SKIPPED loudly (exit 0, or 1 with --require) when torch or transformers is missing; never passes silently.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIX = os.path.join(ROOT, "fixtures", "transformers")
TOL = 1e-5

CASES = [
    # folder fixture, reference, original-layout fixture, its container, export target, export container
    ("tiny_videomae", "tiny_videomae_ref.safetensors", "tiny_videomae_orig.pth", "model", "videomae-original", "model"),
    ("tiny_videomae_cls", "tiny_videomae_cls_ref.safetensors", "tiny_videomae_cls_orig.pth", "module", "videomae-original", "model"),
    ("tiny_timesformer", "tiny_timesformer_ref.safetensors", "tiny_timesformer_orig.pyth", "model_state", "timesformer-original", "model_state"),
]
FULL = [("videomae_s", "videomae_s_ref.safetensors"), ("videomae_b", "videomae_b_ref.safetensors"),
        ("timesformer_b", "timesformer_b_ref.safetensors")]


def banner(text):
    line = "=" * max(60, len(text) + 4)
    print(f"{line}\n  {text}\n{line}", flush=True)


def run(cmd):
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {r.returncode}: {r.stdout[-800:]} {r.stderr[-800:]}")
    return r.stdout


def rel_l2(a, b):
    a, b = a.double(), b.double()
    return float((a - b).norm() / max(float(b.norm()), 1e-30))


def native_tensors(path):
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def same_tensors(a, b):
    import torch
    return sorted(a) == sorted(b) and all(a[k].dtype == b[k].dtype and torch.equal(a[k], b[k]) for k in a)


def load_hf(folder):
    """from_pretrained with the loading info checked: nothing missing, unexpected, mismatched or in error."""
    from transformers import AutoModelForVideoClassification
    model, info = AutoModelForVideoClassification.from_pretrained(folder, output_loading_info=True)
    bad = {k: v for k, v in info.items() if v}
    assert not bad, f"loading info not empty: {bad}"
    assert set(info) >= {"missing_keys", "unexpected_keys", "mismatched_keys"}, sorted(info)
    return model.eval()


def hf_logits(model, x):
    import torch
    with torch.no_grad():
        return model(pixel_values=x.permute(0, 2, 1, 3, 4)).logits


def verify(sfnet, native, x, logits, path, arch):
    """`sfnet verify --tolerance 1e-5` of the native file against transformers' logits; returns (ok, line)."""
    from safetensors.torch import save_file
    save_file({"input.x": x.contiguous(), "output.logits": logits.contiguous()}, path,
              metadata={"sfnet.arch": arch, "sfnet.reference": "transformers, scripts/interop_transformers.py"})
    r = subprocess.run([sfnet, "verify", native, "--reference", path, "--tolerance", str(TOL)], capture_output=True, text=True)
    line = next((l.strip() for l in r.stdout.splitlines() if l.strip().startswith("output.logits")), (r.stdout + r.stderr)[-300:])
    return r.returncode == 0, line


def check_case(gt, sfnet, work, case):
    import torch
    from safetensors.torch import load_file
    folder, ref_name, orig_fixture, orig_container, target, container = case
    ref = load_file(os.path.join(FIX, ref_name))
    x, expected = ref["input.x"], ref["output.logits"]
    native = os.path.join(work, folder + ".safetensors")
    run([sfnet, "convert", os.path.join(FIX, folder), "-o", native, "--force"])
    tensors, meta = native_tensors(native)
    arch_path = os.path.join(work, folder + ".arch.json")
    with open(arch_path, "w") as f:
        f.write(meta["sfnet.arch"])

    # 1. The Hugging Face folder.
    hf = os.path.join(work, folder + "_hf")
    run([sfnet, "export", native, "--to", "huggingface", "-o", hf, "--force"])
    assert sorted(os.listdir(hf)) == ["config.json", "model.safetensors"], os.listdir(hf)
    model = load_hf(hf)
    expected_class = "VideoMAEForVideoClassification" if "videomae" in folder else "TimesformerForVideoClassification"
    assert type(model).__name__ == expected_class, type(model).__name__
    logits = hf_logits(model, x)
    err = rel_l2(logits, expected)
    fresh = type(model)(model.config).eval()
    fresh_err = rel_l2(hf_logits(fresh, x), expected)
    assert err <= TOL and fresh_err > 1e-3, f"logits rel L2 {err:.3e} (fresh model {fresh_err:.3e})"
    resaved = os.path.join(work, folder + "_resaved")
    model.save_pretrained(resaved)
    with open(os.path.join(hf, "config.json")) as a, open(os.path.join(resaved, "config.json")) as b:
        assert a.read() == b.read(), "config.json differs from what the loaded model's save_pretrained writes"
    ours, _ = native_tensors(os.path.join(hf, "model.safetensors"))
    theirs, theirs_meta = native_tensors(os.path.join(resaved, "model.safetensors"))
    assert sorted(ours) == sorted(theirs), set(ours) ^ set(theirs)
    assert all(torch.equal(ours[k], theirs[k]) for k in ours), "tensor values differ from save_pretrained's"
    print(f"PASS  {folder} -> huggingface: from_pretrained loading info empty ({len(ours)} tensors, {expected_class}); "
          f"logits vs the reference rel L2 {err:.2e}{' (bit-exact)' if torch.equal(logits, expected) else ''} "
          f"(fresh model {fresh_err:.2e}); save_pretrained of the loaded model writes the same config.json bytes and "
          f"tensor names ({sum(k.endswith(('q_bias', 'v_bias')) for k in ours)} q_bias/v_bias)")

    # 2. The original layout.
    orig = os.path.join(work, folder + "_orig" + (".pth" if "videomae" in folder else ".pyth"))
    run([sfnet, "export", native, "--to", target, "-o", orig, "--force"])
    ck = torch.load(orig, weights_only=True, map_location="cpu")
    assert list(ck) == [container], list(ck)
    sd = ck[container]
    fixture_sd = torch.load(os.path.join(FIX, orig_fixture), weights_only=True, map_location="cpu")[orig_container]
    assert list(sd) == list(fixture_sd), "key names or order differ from the original-layout fixture"
    assert all(sd[k].dtype == v.dtype and torch.equal(sd[k], v) for k, v in fixture_sd.items()), "tensors differ from the fixture"
    from_original = gt.videomae_from_original if "videomae" in folder else gt.timesformer_from_original
    fresh = type(model)(model.config).eval()
    result = fresh.load_state_dict(from_original(sd), strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    orig_logits = hf_logits(fresh, x)
    orig_err = rel_l2(orig_logits, expected)
    assert orig_err <= TOL, f"original layout logits rel L2 {orig_err:.3e}"
    print(f"PASS  {folder} -> {target}: torch.load(weights_only=True) {{'{container}'}} with the fixture's {len(sd)} keys in order, "
          f"bit-exact; inverse-mapped into transformers with load_state_dict(strict=True): logits rel L2 {orig_err:.2e}")

    # 3. Back again: both exports convert to the same native tensors.
    for export, extra in ((hf, []), (orig, ["--arch-json", arch_path])):
        back = os.path.join(work, folder + "_back.safetensors")
        run([sfnet, "convert", export, "-o", back, "--force"] + extra)
        again, again_meta = native_tensors(back)
        assert same_tensors(tensors, again), f"{export}: convert -> export -> convert changed the tensors"
        assert json.loads(again_meta["sfnet.arch"]) == json.loads(meta["sfnet.arch"]), f"{export}: the architecture changed"
    print(f"PASS  {folder}: convert -> export (huggingface, {target}) -> convert gives the native tensors bit for bit")
    return native, meta["sfnet.arch"]


def edited_native(sfnet, work, name, source_folder, edit, classes=None):
    """The tiny folder converted with an edited sfnet.arch (and class names added); returns (path, arch JSON)."""
    from safetensors.torch import save_file
    base = os.path.join(work, name + ".base.safetensors")
    run([sfnet, "convert", os.path.join(FIX, source_folder), "-o", base, "--force"])
    tensors, meta = native_tensors(base)
    arch = json.loads(meta["sfnet.arch"])
    arch.update(edit)
    arch_path = os.path.join(work, name + ".arch.json")
    with open(arch_path, "w") as f:
        json.dump(arch, f)
    native = os.path.join(work, name + ".safetensors")
    run([sfnet, "convert", os.path.join(FIX, source_folder), "-o", native, "--force", "--arch-json", arch_path])
    if classes:
        tensors, meta = native_tensors(native)
        meta["sfnet.classes"] = json.dumps(classes)
        save_file(tensors, native, metadata=meta)
    return native, native_tensors(native)[1]["sfnet.arch"]


def check_variants(sfnet, work):
    import torch
    from safetensors.torch import load_file
    x = load_file(os.path.join(FIX, "tiny_videomae_ref.safetensors"))["input.x"]
    failures = 0

    # gelu_tanh + sigmoid head + class names.
    try:
        classes = ["walking", "eating", "Äsen \"grazing\"", "flying", "sleeping"]
        native, arch = edited_native(sfnet, work, "tanh_sigmoid", "tiny_videomae",
                                     {"hidden_act": "gelu_tanh", "head_activation": "sigmoid"}, classes)
        hf = os.path.join(work, "tanh_sigmoid_hf")
        out = run([sfnet, "export", native, "--to", "huggingface", "-o", hf, "--force"])
        assert "problem_type multi_label_classification" in out, out
        cfg = json.load(open(os.path.join(hf, "config.json")))
        assert cfg["hidden_act"] == "gelu_pytorch_tanh" and cfg["problem_type"] == "multi_label_classification", cfg
        assert cfg["id2label"] == {str(i): c for i, c in enumerate(classes)}, cfg["id2label"]
        assert cfg["label2id"] == {c: i for i, c in enumerate(classes)}, cfg["label2id"]
        model = load_hf(hf)
        assert model.config.id2label[2] == classes[2] and model.config.problem_type == "multi_label_classification"
        logits = hf_logits(model, x)
        ok, line = verify(sfnet, native, x, logits, os.path.join(work, "tanh_sigmoid_ref.safetensors"), arch)
        assert ok, line
        print(f"PASS  gelu_tanh + sigmoid + class names -> huggingface: config hidden_act gelu_pytorch_tanh, problem_type "
              f"multi_label_classification, id2label names; loading info empty; sfnet verify vs transformers' logits: {line}")
    except Exception as exc:
        failures += 1
        print(f"FAIL  gelu_tanh / sigmoid / class names variant: {type(exc).__name__}: {exc}")

    # fc_norm eps 1e-6 (an original checkpoint's): transformers computes fc_norm with 1e-5.
    try:
        native, arch = edited_native(sfnet, work, "fcnorm_1e6", "tiny_videomae", {"fc_norm_eps": 1e-6, "layer_norm_eps": 1e-6})
        hf = os.path.join(work, "fcnorm_1e6_hf")
        out = run([sfnet, "export", native, "--to", "huggingface", "-o", hf, "--force"])
        assert "eps 1e-5 whatever config.json says" in out, out
        model = load_hf(hf)
        assert model.fc_norm.eps == 1e-5 and model.config.layer_norm_eps == 1e-6
        default = hf_logits(model, x)
        model.fc_norm.eps = 1e-6
        matched = hf_logits(model, x)
        gap = rel_l2(default, matched)
        ok, line = verify(sfnet, native, x, matched, os.path.join(work, "fcnorm_ref.safetensors"), arch)
        assert ok and 0 < gap < 1e-4, f"{line}; gap {gap:.3e}"
        print(f"PASS  fc_norm eps 1e-6 -> huggingface: noted; transformers (fc_norm eps 1e-5) vs the same model with eps 1e-6: "
              f"logits rel L2 {gap:.2e}; with 1e-6, sfnet verify vs transformers: {line}")
    except Exception as exc:
        failures += 1
        print(f"FAIL  fc_norm eps variant: {type(exc).__name__}: {exc}")
    return failures


def check_full(sfnet, work):
    from safetensors.torch import load_file
    full = os.path.join(ROOT, "refs-full")
    failures = 0
    for folder, ref_name in FULL:
        src, ref_path = os.path.join(full, folder), os.path.join(full, ref_name)
        if not os.path.isdir(src) or not os.path.exists(ref_path):
            banner(f"SKIPPED: refs-full/{folder} absent (make fixtures-transformers FULL=1); its export check did NOT run")
            continue
        try:
            native, hf = os.path.join(work, folder + ".safetensors"), os.path.join(work, folder + "_hf")
            run([sfnet, "convert", src, "-o", native, "--force"])
            run([sfnet, "export", native, "--to", "huggingface", "-o", hf, "--force"])
            ref = load_file(ref_path)
            err = rel_l2(hf_logits(load_hf(hf), ref["input.x"]), ref["output.logits"])
            assert err <= TOL, f"rel L2 {err:.3e}"
            size = os.path.getsize(os.path.join(hf, "model.safetensors")) / 1e6
            print(f"PASS  refs-full/{folder} ({size:.0f} MB) -> huggingface: loading info empty; logits vs the reference rel L2 {err:.2e}")
        except Exception as exc:
            failures += 1
            print(f"FAIL  refs-full/{folder}: {type(exc).__name__}: {exc}")
    return failures


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sfnet", default=os.environ.get("SFNET", os.path.join(ROOT, ".build", "debug", "sfnet")))
    ap.add_argument("--keep", help="write the exports here (default: a temporary directory)")
    ap.add_argument("--require", action="store_true", help="fail instead of skipping when torch or transformers is missing")
    ap.add_argument("--full", action="store_true", help="also the full-size folders in refs-full/")
    args = ap.parse_args()

    missing = [m for m in ("torch", "transformers", "safetensors") if importlib.util.find_spec(m) is None]
    if missing:
        banner(f"SKIPPED: transformer export interop NOT RUN: {', '.join(missing)} not installed for {sys.executable}")
        return 1 if args.require else 0
    import torch
    import transformers
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    spec = importlib.util.spec_from_file_location("sfnet_generate_transformers", os.path.join(FIX, "generate_transformers.py"))
    gt = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gt)  # the inverse key maps of transformers' conversion scripts (nothing runs on import)

    sfnet = os.path.abspath(args.sfnet)
    if not os.path.exists(sfnet):
        raise SystemExit(f"FAILED: {sfnet} not found (swift build first)")
    work = args.keep or tempfile.mkdtemp(prefix="sfnet-tf-interop-")
    os.makedirs(work, exist_ok=True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, sfnet {sfnet}; exports in {work}")
    failures = 0
    for case in CASES:
        try:
            check_case(gt, sfnet, work, case)
        except Exception as exc:
            failures += 1
            print(f"FAIL  {case[0]}: {type(exc).__name__}: {exc}")
    failures += check_variants(sfnet, work)
    if args.full:
        failures += check_full(sfnet, work)
    else:
        banner("SKIPPED: full-size VideoMAE-S/B and TimeSformer-B exports (pass --full with refs-full/ present)")
    if failures:
        banner(f"FAILED: {failures} transformer export check(s)")
        return 1
    banner("PASSED: every transformer export loads in transformers / torch and reproduces the reference logits")
    return 0


if __name__ == "__main__":
    sys.exit(main())
