#!/usr/bin/env python3
"""Fine-tune an sfnet PySlowFast export with PyTorch DistributedDataParallel.

    # one machine, 2 CPU processes on gloo (spawned here):
    python examples/ddp/train_ddp.py model.pyth --nproc 2 --steps 3
    # the same script under torchrun (which sets RANK/WORLD_SIZE/MASTER_*):
    torchrun --nproc_per_node 2 examples/ddp/train_ddp.py model.pyth --steps 3

model.pyth is what `sfnet export W.safetensors --to pyslowfast -o model.pyth`
writes; the YAML beside it (model.yaml, or --cfg) gives the architecture. With
--native W.safetensors the architecture is read from that file's `sfnet.arch`
metadata instead. The checkpoint is opened with torch.load(weights_only=True)
and loaded strictly into the PySlowFast-structured SlowFast module of
fixtures/generate.py (imported by path). --reference CKPT asserts that every
loaded tensor equals CKPT's (the hand-off is bit-exact).

Training: SGD (momentum 0.9), BCE-with-logits on multi-label targets, on a
seeded synthetic clip set (random normalized clips, random multi-hot labels;
the bundled demo video data does not exist yet). After the steps every rank's
parameters are gathered and asserted identical; rank 0 saves a PySlowFast
checkpoint {"epoch", "model_state", "optimizer_state", "cfg"}.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import json
import os
import socket
import sys

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
from torch.nn.parallel import DistributedDataParallel as DDP
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
STAGE_DEPTHS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


def load_generate():
    """fixtures/generate.py (the PySlowFast-mirroring SlowFast), imported by path."""
    path = os.environ.get("SFNET_GENERATE_PY", os.path.join(ROOT, "fixtures", "generate.py"))
    spec = importlib.util.spec_from_file_location("sfnet_generate", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def parse_simple_yaml(text):
    """The two-level `SECTION:\\n  KEY: value` YAML sfnet writes (no PyYAML needed).
    Values: ints, floats, True/False, [lists], else strings."""
    cfg, section = {}, None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].rstrip() if not raw.lstrip().startswith("#") else ""
        if not line.strip():
            continue
        indent = len(line) - len(line.lstrip())
        key, _, value = line.strip().partition(":")
        value = value.strip()
        if indent == 0:
            section = cfg.setdefault(key, {})
            continue
        if value in ("True", "False"):
            v = value == "True"
        else:
            try:
                v = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                v = value
        section[key] = v
    return cfg


def arch_from_yaml(path):
    cfg = parse_simple_yaml(open(path).read())
    model, sf, rn, data = cfg["MODEL"], cfg["SLOWFAST"], cfg["RESNET"], cfg["DATA"]
    if str(model.get("ARCH", "")).lower() != "slowfast":
        raise SystemExit(f"{path}: MODEL.ARCH {model.get('ARCH')!r}: this example fine-tunes SlowFast")
    depths = [b[0] for b in rn["NUM_BLOCK_TEMP_KERNEL"]] if "NUM_BLOCK_TEMP_KERNEL" in rn else STAGE_DEPTHS[rn["DEPTH"]]
    return dict(width_per_group=rn["WIDTH_PER_GROUP"], beta_inv=sf["BETA_INV"], alpha=sf["ALPHA"],
                fusion_kernel=sf["FUSION_KERNEL_SZ"], fusion_conv_channel_ratio=sf["FUSION_CONV_CHANNEL_RATIO"],
                depths=tuple(depths), num_classes=model["NUM_CLASSES"], num_groups=rn.get("NUM_GROUPS", 1),
                spatial_strides=tuple(s[0] for s in rn.get("SPATIAL_STRIDES", [[1], [2], [2], [2]])),
                num_frames=data["NUM_FRAMES"], train_crop=data["TRAIN_CROP_SIZE"],
                dropout_rate=float(model.get("DROPOUT_RATE", 0.5)), head_act=model.get("HEAD_ACT", "softmax"))


def arch_from_native(path):
    from safetensors import safe_open
    with safe_open(path, "pt") as f:
        a = json.loads(f.metadata()["sfnet.arch"])
    if a["model"] != "slowfast":
        raise SystemExit(f"{path}: sfnet.arch model {a['model']!r}: this example fine-tunes SlowFast")
    return dict(width_per_group=a["width_per_group"], beta_inv=a["beta_inv"], alpha=a["alpha"],
                fusion_kernel=a["fusion_kernel"], fusion_conv_channel_ratio=a["fusion_conv_channel_ratio"],
                depths=tuple(a["stage_depths"]), num_classes=a["num_classes"], num_groups=a["num_groups"],
                temporal_kernels=a["temporal_kernels"], spatial_strides=tuple(a["spatial_strides"]),
                num_frames=a["num_frames"], train_crop=a["train_crop"], dropout_rate=a["dropout"],
                head_act=a["head_activation"])


def synthetic_clips(n, arch, seed):
    """Seeded random normalized clips (fast pathway, N,3,T,H,W) and multi-hot labels."""
    g = torch.Generator().manual_seed(seed)
    t, s = arch["num_frames"], arch["train_crop"]
    pixels = torch.randint(0, 256, (n, 3, t, s, s), generator=g).float()
    clips = (pixels / 255.0 - 0.45) / 0.225
    labels = (torch.rand(n, arch["num_classes"], generator=g) < 0.3).float()
    return clips, labels


def pack_pathways(fast, alpha):
    """PySlowFast pack_pathway_output: slow = frames linspace(0, T-1, T // alpha)."""
    t = fast.shape[2]
    idx = torch.linspace(0, t - 1, t // alpha).long().to(fast.device)
    return [torch.index_select(fast, 2, idx), fast]


def worker(rank, world, args):
    backend = args.backend
    use_cuda = backend == "nccl"
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    device = torch.device(f"cuda:{local_rank}") if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    torch.set_num_threads(args.threads)
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        run(rank, world, device, args)
    finally:
        dist.destroy_process_group()


def run(rank, world, device, args):
    gen = load_generate()
    arch = arch_from_native(args.native) if args.native else arch_from_yaml(args.cfg)
    model = gen.SlowFast(**arch)

    ckpt = torch.load(args.checkpoint, weights_only=True, map_location="cpu")
    state = ckpt["model_state"]
    result = model.load_state_dict(state, strict=True)
    assert not result.missing_keys and not result.unexpected_keys, result
    if args.reference:
        ref = torch.load(args.reference, weights_only=True, map_location="cpu")
        ref = ref.get("model_state", ref.get("state_dict", ref))
        assert list(ref) == list(state), "key names or order differ from the reference"
        for k, v in ref.items():
            assert v.dtype == state[k].dtype and torch.equal(v, state[k]), f"{k} differs from the reference"
        if rank == 0:
            print(f"hand-off: {len(state)} tensors of {os.path.basename(args.checkpoint)} bit-exact with "
                  f"{os.path.basename(args.reference)}", flush=True)

    model.to(device).train()
    ddp = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
    opt = torch.optim.SGD(ddp.parameters(), lr=args.lr, momentum=0.9, weight_decay=args.weight_decay)
    loss_fn = nn.BCEWithLogitsLoss()

    clips, labels = synthetic_clips(args.clips, arch, args.seed)
    data = TensorDataset(clips, labels)
    sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=True, seed=args.seed, drop_last=True)
    loader = DataLoader(data, batch_size=args.batch_size, sampler=sampler, drop_last=True)

    torch.manual_seed(args.seed + rank)  # dropout differs per rank, as in real DDP training
    step, epoch = 0, 0
    while step < args.steps:
        sampler.set_epoch(epoch)
        for fast, target in loader:
            fast, target = fast.to(device), target.to(device)
            logits = ddp(pack_pathways(fast, arch["alpha"]))
            loss = loss_fn(logits, target)
            opt.zero_grad(set_to_none=True)
            loss.backward()  # DDP all-reduces (averages) the gradients here
            opt.step()
            step += 1
            reduced = loss.detach().clone()
            dist.all_reduce(reduced)
            if rank == 0:
                print(f"step {step}/{args.steps}: loss {reduced.item() / world:.6f} "
                      f"(mean over {world} ranks, batch {args.batch_size} per rank)", flush=True)
            if step >= args.steps:
                break
        epoch += 1

    # Every rank must hold the same parameters, bit for bit.
    flat = torch.cat([p.detach().reshape(-1) for p in model.parameters()]).to(device)
    gathered = [torch.empty_like(flat) for _ in range(world)]
    dist.all_gather(gathered, flat)
    for r in range(1, world):
        assert torch.equal(gathered[0], gathered[r]), f"rank {r}'s parameters differ from rank 0's"
    changed = not torch.equal(flat.cpu(), torch.cat([state[n].reshape(-1) for n, _ in model.named_parameters()]))
    assert changed, "the parameters did not change"
    if rank == 0:
        print(f"parameters identical on all {world} ranks after {step} steps ({flat.numel()} values); "
              f"changed from the export: {changed}", flush=True)
        out = {"epoch": epoch, "model_state": {k: v.detach().cpu() for k, v in model.state_dict().items()},
               "optimizer_state": opt.state_dict(), "cfg": open(args.cfg).read() if args.cfg and os.path.exists(args.cfg) else ""}
        tmp = args.output + ".tmp"
        torch.save(out, tmp)
        os.replace(tmp, args.output)
        back = torch.load(args.output, weights_only=True)
        assert all(torch.equal(back["model_state"][k], v) for k, v in out["model_state"].items())
        print(f"saved PySlowFast checkpoint {args.output} (rank 0; BN running stats are rank 0's, "
              f"as PySlowFast saves them); reloads with weights_only=True", flush=True)
    dist.barrier()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("checkpoint", help="PySlowFast checkpoint from `sfnet export --to pyslowfast`")
    ap.add_argument("--cfg", help="its YAML (default: the checkpoint with .yaml)")
    ap.add_argument("--native", help="read the architecture from this native file's sfnet.arch instead of the YAML")
    ap.add_argument("--reference", help="assert every loaded tensor equals this checkpoint's")
    ap.add_argument("-o", "--output", default="finetuned.pyth", help="checkpoint rank 0 writes (default finetuned.pyth)")
    ap.add_argument("--nproc", type=int, default=2, help="processes to spawn when not under torchrun (default 2)")
    ap.add_argument("--backend", default=None, help="gloo (CPU, default without CUDA) or nccl (GPUs)")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=2, help="clips per rank per step")
    ap.add_argument("--clips", type=int, default=16, help="size of the synthetic clip set")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=1, help="intra-op threads per process (default 1)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.cfg is None:
        args.cfg = os.path.splitext(args.checkpoint)[0] + ".yaml"
    if not args.native and not os.path.exists(args.cfg):
        ap.error(f"no config: {args.cfg} does not exist (give --cfg or --native)")
    if args.backend is None:
        args.backend = "nccl" if torch.cuda.is_available() else "gloo"

    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:  # under torchrun
        worker(int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), args)
    else:
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
        mp.spawn(worker, args=(args.nproc, args), nprocs=args.nproc, join=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
