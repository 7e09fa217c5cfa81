#!/usr/bin/env python3
"""Interop check of sfnet's PyTorch exports with the real torch (issue 5, part 4).

    python scripts/interop_torch.py [--exports DIR] [--require-torch]

DIR holds the exports of the tiny fixtures (pyslowfast.pyth + pyslowfast.yaml,
pytorchvideo.pyth, mmaction2.pth). Without --exports they are made first by
running the Swift round-trip tests with SFNET_EXPORT_KEEP=DIR
(`swift test --skip-build --filter ExportTests`; build the tests first).

For each export: the zip is read by Python's zipfile (CRCs checked, every
entry stored, data 64-byte aligned); torch.load(path, weights_only=True)
succeeds; the container is what the ecosystem expects; every tensor equals
the source fixture's tensor of the same name (dtype, shape, values, order).
The PySlowFast export then loads into fixtures/generate.py's SlowFast
(build_tiny) with load_state_dict(strict=True) and computes the same logits
as the model loaded from the original fixture. When pytorchvideo is installed,
the pytorchvideo export loads with strict=True into the real
pytorchvideo.models.hub.slowfast_r50(pretrained=False) built at the tiny
fixture's widths, and its eval logits (head_activation None, so
pre-activation) match fixtures/reference/tiny_slowfast_8x8_ref.safetensors
(relative L2 <= 1e-5, same top-1); with fixtures/full present, that R50 is
converted and exported for pytorchvideo by the built sfnet and loaded strictly
into the default slowfast_r50(pretrained=False), whose logits must match the
full reference the same way. The tiny X3D (fixtures/x3d) is converted and exported to
PySlowFast's layout by the built sfnet (SFNET=..., default .build/debug/sfnet),
loaded with strict=True into pytorchvideo's X3D in PySlowFast's structure, and
its logits must match the reference (relative L2 <= 1e-5, same top-1). pytorchvideo's own tiny X3D
(no BN on the first res2 shortcut) is converted and exported back to pytorchvideo's layout: the export
holds the source's tensors bit for bit, loads with strict=True into pytorchvideo's create_x3d built from
the weights' sfnet.arch, reproduces the reference logits, and converts back to the same native tensors;
with refs-full/ (fixtures/x3d/generate_x3d.py --full) the full-size X3D-S and X3D-M go the same way into
the hub's x3d_s / x3d_m(pretrained=False). A shortcut BN that only scales is folded into the conv: that
export, loaded into create_x3d, computes what pytorchvideo's X3D in PySlowFast's structure computes with
the BN (relative L2 <= 1e-5). fixtures/x3d's mmaction2 X3D (names from mmaction2's source) is converted and
exported back to mmaction2: bit-exact with the source, and through the generator's name table it loads
strictly into pytorchvideo's X3D in PySlowFast's structure and reproduces its reference logits.
Without pytorchvideo these print SKIPPED. Prints SKIPPED loudly (exit 0,
or 1 with --require-torch) when torch is missing; never passes silently.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import struct
import subprocess
import sys
import tempfile
import zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "fixtures", "torch")

EXPORTS = [
    # export file, source fixture, container key of both, other top-level keys of the export
    ("pyslowfast.pyth", "tiny_pyslowfast.pyth", "model_state", ["epoch"]),
    ("pytorchvideo.pyth", "tiny_pytorchvideo.pyth", "model_state", []),
    ("mmaction2.pth", "tiny_mmaction2.pth", "state_dict", ["meta"]),
]


def banner(text):
    line = "=" * max(60, len(text) + 4)
    print(f"{line}\n  {text}\n{line}", flush=True)


def make_exports(dest):
    env = dict(os.environ, SFNET_EXPORT_KEEP=dest)
    cmd = ["swift", "test", "--skip-build", "--disable-swift-testing", "--filter",
           "ExportTests.test.*RoundTrip|TorchWriterTests.testZip64"]  # includes testFullR50RoundTripIsBitExact
    print("making exports:", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        print(r.stdout[-4000:], r.stderr[-4000:])
        raise SystemExit("FAILED: the Swift export tests did not pass (build them with `swift build --build-tests`)")


def check_zip(path):
    """Every entry stored, CRCs valid, data 64-byte aligned; returns the archive prefix."""
    with zipfile.ZipFile(path) as zf:
        bad = zf.testzip()
        assert bad is None, f"CRC error in {bad}"
        raw = open(path, "rb").read()
        names = []
        for info in zf.infolist():
            assert info.compress_type == zipfile.ZIP_STORED, f"{info.filename} is compressed"
            sig, = struct.unpack_from("<I", raw, info.header_offset)
            assert sig == 0x04034B50
            name_len, extra_len = struct.unpack_from("<HH", raw, info.header_offset + 26)
            data = info.header_offset + 30 + name_len + extra_len
            assert data % 64 == 0, f"{info.filename}: data at offset {data} is not 64-byte aligned"
            names.append(info.filename)
        prefixes = {n.split("/", 1)[0] for n in names}
        assert len(prefixes) == 1, prefixes
        prefix = prefixes.pop()
        for required in ("data.pkl", "byteorder", "version", ".format_version", ".storage_alignment"):
            assert f"{prefix}/{required}" in names, f"missing {required}"
        assert zf.read(f"{prefix}/byteorder") == b"little"
        return prefix, len(names)


def check_pytorchvideo(torch, loaded):
    """The pytorchvideo export, strictly into the real pytorchvideo.models.hub.slowfast_r50 built at the
    tiny fixture's widths, against the PyTorch reference logits. Returns the number of failures."""
    import pytorchvideo
    from pytorchvideo.models.hub import slowfast_r50
    from safetensors.torch import load_file
    ref_path = os.path.join(ROOT, "fixtures", "reference", "tiny_slowfast_8x8_ref.safetensors")
    # The hub entry point passes these on to pytorchvideo.models.slowfast.create_slowfast: the tiny
    # fixture is width 4 (stem 4 slow / 4 // beta_inv = 1 fast), beta_inv 4, alpha 4, fusion kernel 7,
    # depth 50, 5 classes; its clip is 8 fast frames at crop 32, so the head pools (2,1,1) and (8,1,1).
    # head_activation stays None (the hub default): pytorchvideo's eval output is then the logits.
    # (slowfast_r50 itself fixes model_depth 50 and the fusion kernel (7, 1, 1); the fusion stride
    # (alpha 4) and channel fusion ratio 2 are create_slowfast's defaults.)
    model = slowfast_r50(pretrained=False, slowfast_channel_reduction_ratio=(4,), stem_dim_outs=(4, 1), model_num_class=5, head_pool_kernel_sizes=((2, 1, 1), (8, 1, 1)),
                         dropout_rate=0.5).eval()
    ref = load_file(ref_path)
    with torch.no_grad():  # negative control: the freshly initialised model must not already match
        fresh = model([ref["input.slow"], ref["input.fast"]])
    sd = loaded["pytorchvideo.pyth"]
    assert list(model.state_dict()) == list(sd), "pytorchvideo's state_dict keys (or their order) differ from the export's"
    result = model.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    with torch.no_grad():
        logits = model([ref["input.slow"], ref["input.fast"]])
    expected = ref["output.logits"]
    assert logits.shape == expected.shape, f"output shape {tuple(logits.shape)} vs {tuple(expected.shape)}"
    rel = ((logits.double() - expected.double()).norm() / expected.double().norm()).item()
    top1 = logits.argmax(-1).tolist() == expected.argmax(-1).tolist()
    fresh_rel = ((fresh.double() - expected.double()).norm() / expected.double().norm()).item()
    ok = rel <= 1e-5 and top1 and fresh_rel > 1e-3
    print(f"{'PASS' if ok else 'FAIL'}  pytorchvideo.pyth: pytorchvideo {pytorchvideo.__version__} "
          f"models.hub.slowfast_r50(pretrained=False, tiny widths) load_state_dict(strict=True) ok ({len(sd)} entries); "
          f"eval forward on the reference clip (slow {tuple(ref['input.slow'].shape)}, fast {tuple(ref['input.fast'].shape)}): "
          f"logits (pre-activation; head_activation None) vs the PyTorch reference relative L2 {rel:.2e}, top-1 {'equal' if top1 else 'DIFFERS'} "
          f"(before the load: relative L2 {fresh_rel:.2e})")
    return 0 if ok else 1


def check_pytorchvideo_full(torch, sfnet, full_src, full_ref, work):
    """fixtures/full's R50 8x8 converted and exported by sfnet for pytorchvideo, strictly into the
    hub's slowfast_r50(pretrained=False) with its default settings, against the reference logits."""
    from pytorchvideo.models.hub import slowfast_r50
    from safetensors.torch import load_file
    native = os.path.join(work, "full_r50_for_ptv.safetensors")
    export = os.path.join(work, "full_pytorchvideo.pyth")
    for cmd in ([sfnet, "convert", full_src, "-o", native, "--force"],
                [sfnet, "export", native, "--to", "pytorchvideo", "-o", export, "--force"]):
        r = subprocess.run(cmd, capture_output=True, text=True)
        assert r.returncode == 0, f"{' '.join(cmd)}: {r.stdout[-500:]} {r.stderr[-500:]}"
    check_zip(export)
    sd = torch.load(export, weights_only=True)["model_state"]
    model = slowfast_r50(pretrained=False).eval()  # the hub's SlowFast R50 8x8 as is (head_activation None)
    assert list(model.state_dict()) == list(sd), "pytorchvideo's state_dict keys (or their order) differ from the export's"
    result = model.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    ref = load_file(full_ref)
    with torch.no_grad():
        logits = model([ref["input.slow"], ref["input.fast"]])
    expected = ref["output.logits"]
    rel = ((logits.double() - expected.double()).norm() / expected.double().norm()).item()
    top1 = logits.argmax(-1).tolist() == expected.argmax(-1).tolist()
    ok = rel <= 1e-5 and top1
    print(f"{'PASS' if ok else 'FAIL'}  full_pytorchvideo.pyth ({os.path.getsize(export) / 1e6:.1f} MB, sfnet convert + export of "
          f"fixtures/full): strict load into the default models.hub.slowfast_r50(pretrained=False) ({len(sd)} entries); "
          f"logits (pre-activation) vs the R50 reference relative L2 {rel:.2e}, top-1 {'equal' if top1 else 'DIFFERS'}")
    return 0 if ok else 1


def x3d_kwargs(arch):
    """pytorchvideo.models.x3d.create_x3d's arguments for an sfnet.arch X3D config (the export's own note says the same)."""
    import torch.nn as nn
    kw = dict(input_clip_length=arch["num_frames"], input_crop_size=arch["train_crop"], model_num_class=arch["num_classes"],
              dropout_rate=arch["dropout"], width_factor=arch["width_factor"], depth_factor=arch["depth_factor"],
              stem_dim_in=arch["dim_c1"], bottleneck_factor=arch["bottleneck_factor"], se_ratio=arch["se_ratio"],
              head_dim_out=arch["dim_c5"], head_bn_lin5_on=arch["bn_lin5"], head_activation=None,
              stem_conv_kernel_size=(arch["stem_temporal_kernel"], 3, 3),
              stage_conv_kernel_size=((arch["block_temporal_kernel"], 3, 3),) * 4)
    if not arch["swish_inner"]:
        kw["inner_act"] = nn.ReLU
    return kw


def sfnet_run(*cmd):
    r = subprocess.run(list(cmd), capture_output=True, text=True)
    assert r.returncode == 0, f"{' '.join(cmd[:3])}: {r.stdout[-800:]} {r.stderr[-800:]}"
    return r.stdout


def check_x3d_pytorchvideo(torch, sfnet, work, source, ref_path, hub=None):
    """An X3D in pytorchvideo's own layout (no BN on the first res2 shortcut) converted and exported to pytorchvideo by
    the built sfnet: the export holds the source's tensors bit for bit in its order, loads with strict=True into
    pytorchvideo's X3D (create_x3d from the weights' sfnet.arch, or the hub builder `hub`) and reproduces the
    reference logits; convert -> export -> convert gives the same native tensors. Returns the number of failures."""
    import json
    import pytorchvideo
    from pytorchvideo.models.x3d import create_x3d
    from safetensors import safe_open
    from safetensors.numpy import load_file
    name = os.path.basename(source)
    native, exported, back = (os.path.join(work, f"{name}.{ext}") for ext in ("safetensors", "pytorchvideo.pyth", "back.safetensors"))
    with safe_open(ref_path, "np") as f:
        ref_arch = f.metadata()["sfnet.arch"]
    arch_file = os.path.join(work, name + ".arch.json")
    open(arch_file, "w").write(ref_arch)
    sfnet_run(sfnet, "convert", source, "-o", native, "--arch-json", arch_file, "--force")
    out = sfnet_run(sfnet, "export", native, "--to", "pytorchvideo", "-o", exported, "--force")
    assert "branch1_bn left out: it is the identity" in out, out
    check_zip(exported)
    sd = torch.load(exported, weights_only=True)["model_state"]
    src = torch.load(source, weights_only=True)
    src = src.get("model_state", src)
    assert list(sd) == list(src), "the export's keys (or their order) differ from the pytorchvideo source's"
    assert all(sd[k].dtype == v.dtype and torch.equal(sd[k], v) for k, v in src.items()), "tensors differ from the source"
    with safe_open(native, "np") as f:
        arch = json.loads(f.metadata()["sfnet.arch"])
    model = (hub(pretrained=False, head_activation=None) if hub else create_x3d(**x3d_kwargs(arch))).eval()
    ref = load_file(ref_path)
    x = torch.from_numpy(ref["input.x"])
    with torch.no_grad():  # negative control: the freshly initialised model must not already match
        fresh = model(x).double()
    assert list(model.state_dict()) == list(sd), "pytorchvideo's state_dict keys (or their order) differ from the export's"
    result = model.load_state_dict(sd, strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    with torch.no_grad():
        logits = model(x).double()
    want = torch.from_numpy(ref["output.logits"]).double()
    rel = ((logits - want).norm() / want.norm()).item()
    fresh_rel = ((fresh - want).norm() / want.norm()).item()
    top1 = bool((logits.argmax(1) == want.argmax(1)).all())
    sfnet_run(sfnet, "convert", exported, "-o", back, "--arch-json", arch_file, "--force")
    a, b = load_file(native), load_file(back)
    same = list(a) == list(b) and all(a[k].dtype == b[k].dtype and a[k].tobytes() == b[k].tobytes() for k in a)
    ok = rel <= 1e-5 and top1 and fresh_rel > 1e-3 and same
    builder = f"models.hub.{hub.__name__}(pretrained=False)" if hub else "models.x3d.create_x3d(<the weights' sfnet.arch>)"
    print(f"{'PASS' if ok else 'FAIL'}  {name} -> sfnet convert -> export --to pytorchvideo: {len(sd)} tensors bit-exact with the source, "
          f"in its order; strict load into pytorchvideo {pytorchvideo.__version__} {builder}; logits vs the reference relative L2 "
          f"{rel:.2e}, top-1 {'equal' if top1 else 'DIFFERS'} (before the load {fresh_rel:.2e}); convert -> export -> convert "
          f"{'bit-exact' if same else 'DIFFERS'}")
    return 0 if ok else 1


def check_x3d_folded_shortcut(torch, sfnet, work):
    """A shortcut BN that only scales (bias and running mean 0, weight != sqrt(var + eps)) is folded into pytorchvideo's
    bias-free shortcut conv: the export loads strictly into create_x3d and computes what pytorchvideo's X3D in PySlowFast's
    structure (fixtures/x3d/generate_x3d.py) computes with the unfolded BN. Returns the number of failures."""
    import json
    import numpy as np
    from pytorchvideo.models.x3d import create_x3d
    from safetensors import safe_open
    from safetensors.numpy import load_file, save_file
    spec = importlib.util.spec_from_file_location("sfnet_x3d", os.path.join(ROOT, "fixtures", "x3d", "generate_x3d.py"))
    gx = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gx)
    x3d_dir = os.path.join(ROOT, "fixtures", "x3d")
    native, scaled, exported = (os.path.join(work, n) for n in ("fold.safetensors", "fold_scaled.safetensors", "fold.pyth"))
    ref_path = os.path.join(x3d_dir, "tiny_x3d_pytorchvideo_ref.safetensors")
    with safe_open(ref_path, "np") as f:
        arch_file = os.path.join(work, "fold.arch.json")
        open(arch_file, "w").write(f.metadata()["sfnet.arch"])
    sfnet_run(sfnet, "convert", os.path.join(x3d_dir, "tiny_x3d_pytorchvideo.pyth"), "-o", native, "--arch-json", arch_file, "--force")
    tensors = load_file(native)
    with safe_open(native, "np") as f:
        meta = f.metadata()
    bn = "s2.pathway0_res0.branch1_bn"
    rng = np.random.Generator(np.random.PCG64(7))
    tensors[bn + ".weight"] = rng.uniform(0.5, 2.0, tensors[bn + ".weight"].shape).astype(np.float32)
    tensors[bn + ".running_var"] = rng.uniform(0.5, 2.0, tensors[bn + ".running_var"].shape).astype(np.float32)
    save_file(tensors, scaled, metadata=meta)
    out = sfnet_run(sfnet, "export", scaled, "--to", "pytorchvideo", "-o", exported, "--force")
    assert f"{bn} folded into" in out, out
    arch = json.loads(meta["sfnet.arch"])
    model = create_x3d(**x3d_kwargs(arch)).eval()
    result = model.load_state_dict(torch.load(exported, weights_only=True)["model_state"], strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    unfolded = gx.pyslowfast_structure(create_x3d(**x3d_kwargs(arch))).eval()
    names = {gx.canonical(k): k for k in unfolded.state_dict()}
    result = unfolded.load_state_dict({names[k]: torch.from_numpy(v) for k, v in tensors.items()}, strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    x = torch.from_numpy(load_file(ref_path)["input.x"])
    with torch.no_grad():
        got, want = model(x).double(), unfolded(x).double()
    rel = ((got - want).norm() / want.norm()).item()
    ok = rel <= 1e-5 and bool((got.argmax(1) == want.argmax(1)).all())
    print(f"{'PASS' if ok else 'FAIL'}  {bn} scaled (weight and running_var random, bias and mean 0) -> export --to pytorchvideo "
          f"folds it into the shortcut conv: strict load into create_x3d; logits vs pytorchvideo's X3D in PySlowFast's structure "
          f"with the BN relative L2 {rel:.2e}")
    return 0 if ok else 1


def check_x3d_mmaction2(torch, sfnet, work):
    """fixtures/x3d's mmaction2 X3D (names from mmaction2's source; mmaction2 itself is not installable here) converted
    and exported back to mmaction2 by the built sfnet: the export holds the source's tensors bit for bit in its order;
    mapped by the generator's documented name table onto pytorchvideo's X3D in PySlowFast's structure (the computation
    mmaction2's X3D is), it loads with strict=True and reproduces the reference logits. Returns the number of failures."""
    from pytorchvideo.models.x3d import create_x3d
    from safetensors.numpy import load_file
    spec = importlib.util.spec_from_file_location("sfnet_x3d_mm", os.path.join(ROOT, "fixtures", "x3d", "generate_x3d_mmaction2.py"))
    gm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gm)
    x3d_dir = os.path.join(ROOT, "fixtures", "x3d")
    source = os.path.join(x3d_dir, "tiny_x3d_mmaction2.pth")
    native, exported = os.path.join(work, "x3d_mm.safetensors"), os.path.join(work, "x3d_mmaction2.pth")
    sfnet_run(sfnet, "convert", source, "-o", native, "--dtype", "keep", "--force")
    sfnet_run(sfnet, "export", native, "--to", "mmaction2", "-o", exported, "--force")
    check_zip(exported)
    ckpt = torch.load(exported, weights_only=True)
    assert sorted(ckpt) == ["meta", "state_dict"] and ckpt["meta"]["backbone"] == "X3D", sorted(ckpt)
    sd, src = ckpt["state_dict"], torch.load(source, weights_only=True)["state_dict"]
    assert list(sd) == list(src), "the export's keys (or their order) differ from the mmaction2 source's"
    assert all(sd[k].dtype == v.dtype and torch.equal(sd[k], v) for k, v in src.items()), "tensors differ from the source"
    model = gm.gx.pyslowfast_structure(create_x3d(**gm.CONFIG)).eval()
    names = {gm.mmaction2_name(k): k for k in model.state_dict()}
    mine = model.state_dict()
    state = {names[k]: v.reshape(mine[names[k]].shape).to(mine[names[k]].dtype) for k, v in sd.items()}
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    ref = load_file(os.path.join(x3d_dir, "tiny_x3d_mmaction2_ref.safetensors"))
    with torch.no_grad():
        logits = model(torch.from_numpy(ref["input.x"])).double()
    want = torch.from_numpy(ref["output.logits"]).double()
    rel = ((logits - want).norm() / want.norm()).item()
    ok = rel <= 1e-5 and bool((logits.argmax(1) == want.argmax(1)).all())
    print(f"{'PASS' if ok else 'FAIL'}  tiny_x3d_mmaction2.pth -> sfnet convert -> export --to mmaction2: {{state_dict, meta}}, {len(sd)} "
          f"tensors bit-exact with the source in its order; by the generator's name table, strict load into pytorchvideo's X3D in "
          f"PySlowFast's structure; logits vs the reference relative L2 {rel:.2e}")
    return 0 if ok else 1


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--exports", help="directory holding the exports (default: make them in a temp directory)")
    ap.add_argument("--require-torch", action="store_true", help="fail instead of skipping when torch is missing")
    args = ap.parse_args(argv)

    try:
        import torch
    except ImportError:
        banner("SKIPPED: torch is not installed; the PyTorch interop check did NOT run")
        return 1 if args.require_torch else 0

    work = args.exports or tempfile.mkdtemp(prefix="sfnet-interop-")
    if not args.exports:
        make_exports(work)
    print(f"torch {torch.__version__}; exports in {work}")

    failures = 0
    loaded = {}
    for export, source, container, others in EXPORTS:
        path = os.path.join(work, export)
        try:
            prefix, entries = check_zip(path)
            ckpt = torch.load(path, weights_only=True, map_location="cpu")
            mapped = torch.load(path, weights_only=True, mmap=True)  # needs the aligned, stored layout
            assert all(torch.equal(mapped[container][k], v) for k, v in ckpt[container].items())
            assert isinstance(ckpt, dict), type(ckpt)
            assert sorted(ckpt) == sorted([container] + others), f"top-level keys {sorted(ckpt)}"
            sd = ckpt[container]
            ref = torch.load(os.path.join(FIXTURES, source), weights_only=True, map_location="cpu")[container]
            assert list(sd) == list(ref), "key names or order differ"
            max_diff = 0.0
            for k, t in ref.items():
                e = sd[k]
                assert e.dtype == t.dtype and e.shape == t.shape, f"{k}: {e.dtype} {tuple(e.shape)} vs {t.dtype} {tuple(t.shape)}"
                assert e.is_contiguous(), k
                if not torch.equal(e, t):
                    max_diff = max(max_diff, (e.double() - t.double()).abs().max().item())
            assert max_diff == 0.0, f"values differ (max abs diff {max_diff})"
            if "epoch" in others:
                assert ckpt["epoch"] == -1
            if "meta" in others:
                assert isinstance(ckpt["meta"], dict)
            loaded[export] = sd
            print(f"PASS  {export}: zip ok (prefix '{prefix}', {entries} entries, stored, 64-byte aligned, CRCs ok); "
                  f"torch.load(weights_only=True, also mmap=True) ok; {len(sd)} tensors bit-exact with {source} (max diff 0)")
        except Exception as exc:  # report every export, then fail
            failures += 1
            print(f"FAIL  {export}: {type(exc).__name__}: {exc}")

    # zip64 extra fields on every entry (what a > 4 GiB export has): torch and zipfile read it.
    z64 = os.path.join(work, "zip64_everywhere.pth")
    try:
        check_zip(z64)
        sd = torch.load(z64, weights_only=True)
        assert list(sd) == ["w", "b"] and sd["w"].shape == (3, 7) and sd["b"].dtype == torch.int64, {k: v.shape for k, v in sd.items()}
        mm = torch.load(z64, weights_only=True, mmap=True)
        assert all(torch.equal(sd[k], mm[k]) for k in sd)
        print("PASS  zip64_everywhere.pth: zip64 local/central extra fields on every entry; torch.load (also mmap=True) ok")
    except Exception as exc:
        failures += 1
        print(f"FAIL  zip64_everywhere.pth: {type(exc).__name__}: {exc}")

    # The PySlowFast export in the PySlowFast-layout model, strict.
    try:
        spec = importlib.util.spec_from_file_location("sfnet_generate", os.path.join(ROOT, "fixtures", "generate.py"))
        gen = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gen)
        model = gen.build_tiny().eval()
        result = model.load_state_dict(loaded["pyslowfast.pyth"], strict=True)
        assert not result.missing_keys and not result.unexpected_keys, result
        reference = gen.build_tiny().eval()
        reference.load_state_dict(torch.load(os.path.join(FIXTURES, "tiny_pyslowfast.pyth"), weights_only=True)["model_state"], strict=True)
        g = torch.Generator().manual_seed(0)
        fast = torch.randn(2, 3, 8, 32, 32, generator=g)
        slow = fast[:, :, ::4].contiguous()
        with torch.no_grad():
            out, ref = model([slow, fast]), reference([slow, fast])
        diff = (out - ref).abs().max().item()
        assert diff == 0.0, f"logits differ by {diff}"
        yaml_path = os.path.join(work, "pyslowfast.yaml")
        yaml_text = open(yaml_path).read()
        for line in ("ARCH: slowfast", "NUM_CLASSES: 5", "ALPHA: 4", "BETA_INV: 4", "FUSION_KERNEL_SZ: 7",
                     "WIDTH_PER_GROUP: 4", "NUM_FRAMES: 8", "TRAIN_CROP_SIZE: 32"):
            assert f"  {line}\n" in yaml_text, f"YAML lacks {line}"
        try:
            import yaml
            cfg = yaml.safe_load(yaml_text)
            assert cfg["MODEL"]["NUM_CLASSES"] == 5 and cfg["SLOWFAST"]["ALPHA"] == 4
            yaml_note = "YAML parses"
        except ImportError:
            yaml_note = "YAML checked as text (PyYAML not installed)"
        print(f"PASS  pyslowfast.pyth: load_state_dict(strict=True) into generate.py's SlowFast (build_tiny); "
              f"logits equal the original fixture's (max diff {diff}); {yaml_note}")
    except Exception as exc:
        failures += 1
        print(f"FAIL  pyslowfast.pyth in SlowFast: {type(exc).__name__}: {exc}")

    # X3D: the tiny pytorchvideo-made X3D converted and exported by the built sfnet to PySlowFast's layout, loaded
    # strictly into pytorchvideo's model in PySlowFast's structure (generate_x3d.py), logits against the reference.
    try:
        import subprocess
        from safetensors.numpy import load_file
        spec = importlib.util.spec_from_file_location("sfnet_x3d", os.path.join(ROOT, "fixtures", "x3d", "generate_x3d.py"))
        gx = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(gx)
        sfnet = os.environ.get("SFNET", os.path.join(ROOT, ".build", "debug", "sfnet"))
        ref_path = os.path.join(FIXTURES, "..", "x3d", "tiny_x3d_ref.safetensors")
        from safetensors import safe_open
        with safe_open(ref_path, "np") as f:
            arch = f.metadata()["sfnet.arch"]
        arch_file = os.path.join(work, "x3d_arch.json")
        open(arch_file, "w").write(arch)
        native, exported = os.path.join(work, "x3d.safetensors"), os.path.join(work, "x3d_pyslowfast.pyth")
        for cmd in ([sfnet, "convert", os.path.join(FIXTURES, "..", "x3d", "tiny_x3d.pyth"), "-o", native, "--arch-json", arch_file],
                    [sfnet, "export", native, "--to", "pyslowfast", "-o", exported]):
            r = subprocess.run(cmd, capture_output=True, text=True)
            assert r.returncode == 0, f"{' '.join(cmd[:2])}: {r.stderr.strip()}"
        sd = torch.load(exported, weights_only=True)["model_state"]
        model = gx.tiny_model().eval()
        names = {gx.canonical(k): k for k in model.state_dict()}
        result = model.load_state_dict({names[k]: v for k, v in sd.items()}, strict=True)
        assert not result.missing_keys and not result.unexpected_keys, result
        ref = load_file(ref_path)
        with torch.no_grad():
            out = model(torch.from_numpy(ref["input.x"])).double()
        want = torch.from_numpy(ref["output.logits"]).double()
        rel = ((out - want).norm() / want.norm()).item()
        assert rel <= 1e-5 and bool((out.argmax(1) == want.argmax(1)).all()), f"logits rel L2 {rel:.3g}"
        print(f"PASS  x3d_pyslowfast.pyth: {len(sd)} tensors load_state_dict(strict=True) into pytorchvideo's X3D in PySlowFast's "
              f"structure; logits vs the reference rel L2 {rel:.2e}")
    except Exception as exc:
        failures += 1
        print(f"FAIL  x3d_pyslowfast.pyth: {type(exc).__name__}: {exc}")

    # X3D in pytorchvideo's own layout, exported back to it (and, with refs-full/, the full-size X3D-S and X3D-M).
    if importlib.util.find_spec("pytorchvideo") is None:
        banner("SKIPPED: pytorchvideo is not installed; the X3D pytorchvideo export check did NOT run")
    else:
        sfnet = os.environ.get("SFNET", os.path.join(ROOT, ".build", "debug", "sfnet"))
        x3d_dir = os.path.join(ROOT, "fixtures", "x3d")
        cases = [(os.path.join(x3d_dir, "tiny_x3d_pytorchvideo.pyth"), os.path.join(x3d_dir, "tiny_x3d_pytorchvideo_ref.safetensors"), None)]
        full_dir = os.path.join(ROOT, "refs-full")
        from pytorchvideo.models import hub as ptv_hub
        for size in ("x3d_s", "x3d_m"):
            src, ref = os.path.join(full_dir, size + ".pyth"), os.path.join(full_dir, size + "_ref.safetensors")
            if os.path.exists(src) and os.path.exists(ref):
                cases.append((src, ref, getattr(ptv_hub, size)))
            else:
                banner(f"SKIPPED: refs-full/{size}.pyth absent (fixtures/x3d/generate_x3d.py --full); the full-size {size} pytorchvideo export check did NOT run")
        for src, ref, hub in cases:
            try:
                failures += check_x3d_pytorchvideo(torch, sfnet, work, src, ref, hub)
            except Exception as exc:
                failures += 1
                print(f"FAIL  {os.path.basename(src)} pytorchvideo export: {type(exc).__name__}: {exc}")
        try:
            failures += check_x3d_folded_shortcut(torch, sfnet, work)
        except Exception as exc:
            failures += 1
            print(f"FAIL  X3D folded shortcut BN: {type(exc).__name__}: {exc}")
        try:
            failures += check_x3d_mmaction2(torch, sfnet, work)
        except Exception as exc:
            failures += 1
            print(f"FAIL  X3D mmaction2 export: {type(exc).__name__}: {exc}")

    # The full R50 8x8 (when fixtures/full exists): strict load and the reference logits.
    full = os.path.join(work, "full_pyslowfast.pyth")
    full_ref = os.path.join(ROOT, "fixtures", "full", "slowfast_r50_8x8_ref.safetensors")
    if not os.path.exists(full) or not os.path.exists(full_ref):
        banner("SKIPPED: fixtures/full absent (generate.py --full); the full R50 export check did NOT run")
    else:
        try:
            from safetensors.torch import load_file
            check_zip(full)
            sd = torch.load(full, weights_only=True)["model_state"]
            src = torch.load(os.path.join(ROOT, "fixtures", "full", "slowfast_r50_8x8.pyth"), weights_only=True)["model_state"]
            assert list(sd) == list(src) and all(torch.equal(sd[k], v) for k, v in src.items()), "tensors differ from the source"
            model = gen.build_full().eval()
            model.load_state_dict(sd, strict=True)
            model.head.act = torch.nn.Identity()  # the reference logits are pre-activation
            ref = load_file(full_ref)
            with torch.no_grad():
                logits = model([ref["input.slow"], ref["input.fast"]])
            expected = ref["output.logits"]
            rel = ((logits.double() - expected.double()).norm() / expected.double().norm()).item()
            assert rel <= 1e-5, f"relative L2 {rel:.3e}"
            assert logits.argmax(-1).tolist() == expected.argmax(-1).tolist(), "top-1 differs"
            size = os.path.getsize(full) / 1e6
            print(f"PASS  full_pyslowfast.pyth ({size:.1f} MB): weights_only load, {len(sd)} tensors bit-exact with the source, "
                  f"strict load into SlowFast R50 8x8, logits vs reference relative L2 {rel:.2e}, top-1 equal")
        except Exception as exc:
            failures += 1
            print(f"FAIL  full_pyslowfast.pyth: {type(exc).__name__}: {exc}")

    if importlib.util.find_spec("pytorchvideo") is None:
        banner("SKIPPED: pytorchvideo is not installed; the hub slowfast_r50 strict load did NOT run")
    else:
        try:
            failures += check_pytorchvideo(torch, loaded)
        except Exception as exc:
            failures += 1
            print(f"FAIL  pytorchvideo.pyth in pytorchvideo's slowfast_r50: {type(exc).__name__}: {exc}")
        full_src = os.path.join(ROOT, "fixtures", "full", "slowfast_r50_8x8.pyth")
        sfnet = next((p for p in (os.path.join(ROOT, ".build", d, "sfnet") for d in ("release", "debug")) if os.path.exists(p)), None)
        if not os.path.exists(full_src) or not os.path.exists(full_ref):
            banner("SKIPPED: fixtures/full absent (generate.py --full); the full R50 pytorchvideo check did NOT run")
        elif sfnet is None:
            banner("SKIPPED: no built sfnet (.build/release or .build/debug); the full R50 pytorchvideo check did NOT run")
        else:
            try:
                failures += check_pytorchvideo_full(torch, sfnet, full_src, full_ref, work)
            except Exception as exc:
                failures += 1
                print(f"FAIL  full R50 pytorchvideo export in the default slowfast_r50: {type(exc).__name__}: {exc}")

    if failures:
        banner(f"FAILED: {failures} check(s)")
        return 1
    banner("PASSED: every export loads in torch with weights_only=True and matches its source bit for bit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
