#!/usr/bin/env python3
"""The PyTorch peer of issue 14's fine-tuning job: a plain PyTorch script that trains what
`sfnet finetune --init scratch` trains, the way it trains it, so the two jobs' wall times compare.

It reads sfnet's CSV manifests (Sources/Video/Manifest.swift: `path,labels`, optional header, labels
as names or 0-based ids, ';' for several, paths relative to the manifest's folder; classes from
classes.txt beside the train manifest, else the labels), decodes every video once with PyAV into a
uint8 RGB cache, and then per epoch makes clips as sfnet's ClipMaker does (Sources/Video/ClipSampling.swift,
ClipMaker.swift, ClipConfig.swift: PySlowFast's temporal sampling on the 30 fps timeline, short side
jittered, random crop, flip, /255, PCA lighting, mean/std, slow pathway = PySlowFast's linspace subset
of the fast frames), trains pytorchvideo's create_slowfast built from sfnet's architecture fields
(the slowfast-r50-8x8 preset of Sources/Families/Presets.swift, or an `sfnet.arch` JSON such as
examples/demo/tiny_slowfast.json) with a fresh head for the data's classes, sigmoid + BCE on multi-hot
targets, torch.optim.SGD (Nesterov momentum, weight decay on conv/linear weights only) under sfnet's
warm-up + constant/cosine schedule set per iteration, validates each epoch (one centre view per
video, mAP as sklearn computes it over classes with a positive) and torch.saves model + optimizer
each epoch (the last two kept; best weights by val mAP).

Resizing differs in kind only: sfnet scales its cached YUV frames with libswscale's bilinear fused
with the colour conversion, this script scales RGB frames with torch's bilinear interpolate.

Usage: finetune_job_peer.py --train T.csv --val V.csv --out RUN [--arch slowfast-r50-8x8|FILE.json]
       [--epochs 12 --batch 4 --frames 8 --crop 64 --jitter 64 80 --lr 0.01 --seed 0 ...]
       [--workers 1] [--threads 2] [--json OUT] [--print-config]
"""
import argparse, csv, json, math, os, sys, time

# sfnet's architecture presets (Sources/Families/Presets.swift) in the `sfnet.arch` JSON fields;
# the fields a preset leaves to ArchConfig.init's defaults are written out.
PRESETS = {
    "slowfast-r50-8x8": {
        "model": "slowfast", "depth": 50, "stage_depths": [3, 4, 6, 3], "width_per_group": 64, "num_groups": 1,
        "alpha": 4, "beta_inv": 8, "fusion_conv_channel_ratio": 2, "fusion_kernel": 7, "fusion_norm": True,
        "temporal_kernels": [[1, 5], [1, 3], [1, 3], [3, 3], [3, 3]], "spatial_strides": [1, 2, 2, 2],
        "stride_1x1": False, "dropout": 0.5,
    },
}

# ClipConfig's defaults that `sfnet finetune` has no option for (Sources/Video/ClipConfig.swift).
TARGET_FPS = 30.0
FLIP_PROBABILITY = 0.5
LIGHTING_STD = 0.1
LIGHTING_EIGENVALUES = [0.225, 0.224, 0.229]
LIGHTING_EIGENVECTORS = [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]]


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--train", required=True)
    p.add_argument("--val", required=True)
    p.add_argument("--out", required=True, help="run directory (checkpoints, metrics.json)")
    p.add_argument("--arch", default="slowfast-r50-8x8", help="slowfast-r50-8x8 or an sfnet.arch JSON file")
    # sfnet finetune's defaults (Sources/Finetune/FinetuneOptions.swift), batch-4 job values from the command line.
    p.add_argument("--epochs", type=int, default=20)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--lr", type=float, default=0.0375)
    p.add_argument("--warmup-epochs", type=float, default=5.0)
    p.add_argument("--warmup-start-lr", type=float, default=0.00085)
    p.add_argument("--schedule", choices=["constant", "cosine"], default="constant")
    p.add_argument("--cosine-end-lr", type=float, default=0.0)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--nesterov", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--weight-decay", type=float, default=1e-4)
    p.add_argument("--dropout", type=float, default=None, help="default: the architecture's (0.5)")
    p.add_argument("--loss", choices=["bce", "ce"], default="bce")
    p.add_argument("--frames", type=int, default=8)
    p.add_argument("--sampling-rate", type=int, default=2)
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--jitter", type=int, nargs=2, default=[256, 340], metavar=("MIN", "MAX"))
    p.add_argument("--mean", type=float, nargs=3, default=[0.45, 0.45, 0.45])
    p.add_argument("--std", type=float, nargs=3, default=[0.225, 0.225, 0.225])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (sfnet --threads)")
    p.add_argument("--workers", type=int, default=1,
                   help="DataLoader worker processes; 0 makes the clips in the training process")
    p.add_argument("--json", help="write the run's figures here")
    p.add_argument("--print-config", action="store_true", help="print the settings (sfnet --print-config's names) and exit")
    return p.parse_args(argv)


def load_arch(name):
    if name in PRESETS:
        return dict(PRESETS[name])
    with open(name) as f:
        arch = json.load(f)
    if arch.get("model") != "slowfast":
        sys.exit(f"peer: {name}: model {arch.get('model')!r}; this peer builds SlowFast only")
    return arch


def config_rows(a, arch):
    """The settings, named as `sfnet finetune --print-config` names them (the runner compares the two)."""
    def g(x):
        return f"{x:g}"
    return [
        ("arch", a.arch), ("epochs", str(a.epochs)), ("batch", str(a.batch)), ("lr", g(a.lr)), ("schedule", a.schedule),
        ("warmup-epochs", f"{a.warmup_epochs:.1f}"), ("warmup-start-lr", g(a.warmup_start_lr)), ("optimizer", "sgd"),
        ("momentum", g(a.momentum)), ("nesterov", str(a.nesterov).lower()), ("weight-decay", g(a.weight_decay)),
        ("dropout", g(arch["dropout"] if a.dropout is None else a.dropout)),
        ("loss", "bce (sigmoid head)" if a.loss == "bce" else "ce (softmax head)"),
        ("frames", str(a.frames)), ("sampling-rate", str(a.sampling_rate)), ("crop", str(a.crop)),
        ("jitter", f"{a.jitter[0]} {a.jitter[1]}"), ("mean", "[" + ", ".join(g(v) for v in a.mean) + "]"),
        ("std", "[" + ", ".join(g(v) for v in a.std) + "]"), ("val-views", "1x1"), ("precise-bn", "0 (off)"),
        ("seed", str(a.seed)), ("threads", str(a.threads)), ("workers", str(a.workers)),
        # ClipConfig defaults sfnet does not print (no options for them).
        ("lighting-std", g(LIGHTING_STD)), ("flip", g(FLIP_PROBABILITY)), ("slow-frames", "pyslowfast linspace"),
        ("target-fps", g(TARGET_FPS)),
    ]


# ---------------------------------------------------------------- data: manifests and the frame cache

def read_classes(train_csv):
    path = os.path.join(os.path.dirname(os.path.abspath(train_csv)), "classes.txt")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def read_manifest(path, classes):
    """Rows of `path,labels[,animals]` -> [(absolute path, [class ids])], as Manifest.loadCSV reads them."""
    folder = os.path.dirname(os.path.abspath(path))
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        for i, fields in enumerate(csv.reader(f)):
            fields = [x.strip() for x in fields]
            if not fields or not any(fields):
                continue
            if i == 0 and [x.lower() for x in fields[:2]] == ["path", "labels"]:
                continue
            labels = [x.strip() for x in fields[1].split(";") if x.strip()]
            rows.append((fields[0] if fields[0].startswith("/") else os.path.normpath(os.path.join(folder, fields[0])), labels))
    if classes is None:
        names = sorted({l for _, ls in rows for l in ls})
        classes = [str(i) for i in range(max(int(l) for l in names) + 1)] if all(l.isdigit() for l in names) else names
    index = {c: i for i, c in enumerate(classes)}
    return [(p, sorted({index[l] if l in index else int(l) for l in ls})) for p, ls in rows], classes


def decode_all(paths):
    """Every video decoded once with PyAV: path -> (uint8 [N, H, W, 3] RGB frames, fps)."""
    import av
    import numpy as np
    from av.video.reformatter import VideoReformatter
    # One reformatter for every frame: PyAV's frame.to_ndarray(format="rgb24") makes a new swscale context per
    # frame (about 5 ms each for these 64x64 frames, 18x the decode itself); a shared one keeps its context.
    reformatter = VideoReformatter()
    cache = {}
    for path in paths:
        with av.open(path) as container:
            stream = container.streams.video[0]
            fps = float(stream.average_rate or 30)
            frames = [reformatter.reformat(frame, format="rgb24").to_ndarray() for frame in container.decode(stream)]
        cache[path] = (np.stack(frames), fps)
    return cache


class Clips:
    """ClipMaker's train and validation clips from the frame cache (a torch Dataset). Each train item is
    (epoch, index) so its random draws depend on neither the worker nor the order (sfnet: per-video streams)."""

    def __init__(self, samples, cache, a, arch, classes):
        import torch
        self.samples, self.cache, self.a, self.classes = samples, cache, a, classes
        self.alpha = arch["alpha"]
        t = a.frames
        # ClipSampling.slowPositions, rule .pyslowfast: linspace(0, T-1, T/alpha), truncated.
        self.slow_positions = torch.linspace(0, t - 1, max(t // self.alpha, 1)).long()
        self.mean = torch.tensor(a.mean).view(3, 1, 1, 1)
        self.std = torch.tensor(a.std).view(3, 1, 1, 1)
        vecs, vals = torch.tensor(LIGHTING_EIGENVECTORS, dtype=torch.float64), torch.tensor(LIGHTING_EIGENVALUES, dtype=torch.float64)
        self.lighting = (vecs, vals)

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, item):
        import numpy as np
        train = isinstance(item, tuple)
        epoch, i = item if train else (None, item)
        rng = np.random.default_rng([self.a.seed, epoch, i]) if train else None
        return self.make(i, rng)

    def make(self, i, rng):
        """rng None: the validation view (temporal view 0 of 1, short side = crop, centre crop)."""
        import torch
        import torch.nn.functional as F
        a = self.a
        path, labels = self.samples[i]
        frames, fps = self.cache[path]
        n, h0, w0 = frames.shape[:3]
        # ClipSampling.clipIndices: a window of sampling_rate * T frames of the 30 fps timeline.
        clip_size = a.sampling_rate * a.frames / TARGET_FPS * fps
        delta = max(n - clip_size, 0.0)
        start = delta * rng.random() if rng is not None else 0.0
        idx = torch.linspace(start, start + clip_size - 1, a.frames).clamp(0, n - 1).long()
        short = int(round(rng.uniform(a.jitter[0], a.jitter[1]))) if rng is not None else a.crop
        # Resize.shortSideScaledSize, then at least the crop.
        w, h = (short, int(h0 / w0 * short)) if w0 < h0 else (int(w0 / h0 * short), short)
        w, h = max(w, a.crop), max(h, a.crop)
        x = torch.from_numpy(frames[idx.numpy()]).permute(0, 3, 1, 2).float()   # T, 3, H, W
        if (h, w) != (h0, w0):
            x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False)
        c = a.crop
        light = torch.zeros(3, dtype=torch.float64)
        if rng is not None:
            y0 = int(rng.integers(0, h - c)) if h > c else 0
            x0 = int(rng.integers(0, w - c)) if w > c else 0
            flip = rng.random() < FLIP_PROBABILITY
            vecs, vals = self.lighting
            alpha = torch.from_numpy(rng.normal(0, LIGHTING_STD, 3))
            rgb = vecs @ (alpha * vals)
            light = rgb.flip(0)   # PySlowFast adds rgb[2 - idx] to channel idx
        else:
            y0, x0, flip = math.ceil((h - c) / 2), math.ceil((w - c) / 2), False
        x = x[:, :, y0:y0 + c, x0:x0 + c]
        if flip:
            x = x.flip(3)
        x = x.permute(1, 0, 2, 3)   # 3, T, c, c
        x = (x / 255 + light.float().view(3, 1, 1, 1) - self.mean) / self.std
        target = torch.zeros(len(self.classes))
        target[labels] = 1
        return x.index_select(1, self.slow_positions).contiguous(), x.contiguous(), target


class EpochOrder:
    """Shuffled (epoch, index) pairs, reshuffled per epoch in the training process (sfnet's loader: shuffled, no drop_last)."""

    def __init__(self, n, seed):
        self.n, self.seed, self.epoch = n, seed, 0

    def __len__(self):
        return self.n

    def __iter__(self):
        import torch
        g = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter([(self.epoch, int(i)) for i in torch.randperm(self.n, generator=g)])


# ---------------------------------------------------------------- the network

def build_network(arch, a, classes):
    """pytorchvideo's create_slowfast with sfnet's architecture fields. Its init is sfnet's `--init scratch`
    (FreshInit.swift: PySlowFast's with ZERO_INIT_FINAL_BN): convs N(0, sqrt(2/fan_out)), BN weight 1 but
    each bottleneck's last (branch2.c_bn, pytorchvideo's norm_c) 0, head N(0, 0.01), biases 0."""
    import torch
    import pytorchvideo.models.slowfast as pvs
    if arch.get("num_groups", 1) != 1 or arch.get("stride_1x1") or not arch.get("fusion_norm", True):
        sys.exit("peer: num_groups > 1, stride_1x1 and fusion without BN are not built by this peer")
    depths = tuple(arch["stage_depths"])
    depth = next((k for k, v in pvs._MODEL_STAGE_DEPTH.items() if v == depths), None)
    if depth is None:   # create_slowfast takes stage depths only through its table
        depth = 1000 + len(pvs._MODEL_STAGE_DEPTH)
        pvs._MODEL_STAGE_DEPTH[depth] = depths
    tk = arch["temporal_kernels"]
    wpg, beta, alpha, t, s = arch["width_per_group"], arch["beta_inv"], arch["alpha"], a.frames, a.crop // 32
    torch.manual_seed(a.seed)
    net = pvs.create_slowfast(
        slowfast_channel_reduction_ratio=(beta,),
        slowfast_conv_channel_fusion_ratio=arch["fusion_conv_channel_ratio"],
        slowfast_fusion_conv_kernel_size=(arch["fusion_kernel"], 1, 1),
        slowfast_fusion_conv_stride=(alpha, 1, 1),
        model_depth=depth,
        model_num_class=len(classes),
        dropout_rate=arch["dropout"] if a.dropout is None else a.dropout,
        stem_dim_outs=(wpg, wpg // beta),
        stem_conv_kernel_sizes=((tk[0][0], 7, 7), (tk[0][1], 7, 7)),
        stage_conv_a_kernel_sizes=tuple(tuple((tk[k][p], 1, 1) for k in range(1, 5)) for p in range(2)),
        stage_spatial_strides=(tuple(arch["spatial_strides"]),) * 2,
        head_pool_kernel_sizes=((max(t // alpha, 1), s, s), (t, s, s)),
    )
    return net


def lr_at(a, e):
    """Sources/Train/Schedule.swift: linear warm-up to the policy's LR at the warm-up's end, then the policy."""
    def policy(x):
        if a.schedule == "cosine":
            o = a.warmup_epochs
            return a.cosine_end_lr + (a.lr - a.cosine_end_lr) * (math.cos(math.pi * (x - o) / (a.epochs - o)) + 1) / 2
        return a.lr
    if e >= a.warmup_epochs:
        return policy(e)
    return a.warmup_start_lr + e * (policy(a.warmup_epochs) - a.warmup_start_lr) / a.warmup_epochs


def mean_ap(scores, targets):
    """Mean of sklearn's average precision over the classes with a positive (sfnet's Metrics.meanAveragePrecision)."""
    from sklearn.metrics import average_precision_score
    aps = [average_precision_score(targets[:, k], scores[:, k]) for k in range(targets.shape[1]) if targets[:, k].sum() > 0]
    return sum(aps) / len(aps) if aps else float("nan")


def main():
    t_start = time.perf_counter()
    a = parse_args()
    arch = load_arch(a.arch)
    if a.print_config:
        for k, v in config_rows(a, arch):
            print(f"{k:<24}{v}")
        return
    import torch
    from torch import nn
    from torch.utils.data import DataLoader
    torch.set_num_threads(a.threads)
    os.makedirs(a.out, exist_ok=True)

    classes = read_classes(a.train)
    train, classes = read_manifest(a.train, classes)
    val, _ = read_manifest(a.val, classes)
    t0 = time.perf_counter()
    cache = decode_all(sorted({p for p, _ in train + val}))
    decode_s = time.perf_counter() - t0
    n_frames = sum(f.shape[0] for f, _ in cache.values())
    mib = sum(f.nbytes for f, _ in cache.values()) / 2**20
    print(f"decoded once with PyAV: {len(cache)} videos, {n_frames} frames, {mib:.1f} MiB uint8 RGB in {decode_s:.2f} s", flush=True)

    model = build_network(arch, a, classes)
    n_params = sum(p.numel() for p in model.parameters())
    decay = [p for p in model.parameters() if p.ndim > 1]      # conv and linear weights
    no_decay = [p for p in model.parameters() if p.ndim <= 1]  # BN and biases: none (sfnet WeightDecayPolicy)
    opt = torch.optim.SGD([{"params": decay, "weight_decay": a.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
                          lr=a.warmup_start_lr, momentum=a.momentum, nesterov=a.nesterov, dampening=0.0)
    loss_fn = nn.BCEWithLogitsLoss() if a.loss == "bce" else nn.CrossEntropyLoss()
    print(f"network: pytorchvideo create_slowfast ({a.arch}), {n_params:,} parameters, {len(classes)} classes; "
          f"{len(train)} train / {len(val)} val videos; torch {torch.__version__} ({torch.backends.cpu.get_cpu_capability()}), "
          f"{torch.get_num_threads()} threads, "
          f"{a.workers} loader worker{'s' if a.workers != 1 else ''}", flush=True)

    train_set, val_set = Clips(train, cache, a, arch, classes), Clips(val, cache, a, arch, classes)
    order = EpochOrder(len(train), a.seed)
    loader_kw = dict(num_workers=a.workers)
    if a.workers > 0:
        loader_kw.update(persistent_workers=True, prefetch_factor=2, multiprocessing_context="fork")
    loader = DataLoader(train_set, batch_size=a.batch, sampler=order, drop_last=False, **loader_kw)
    iters = len(loader)
    startup_s = time.perf_counter() - t_start

    epochs, totals = [], dict(data=0.0, step=0.0, validation=0.0, checkpoint=0.0)
    best, kept = None, []
    t_loop = time.perf_counter()
    for e in range(a.epochs):
        te = time.perf_counter()
        order.epoch = e
        model.train()
        ph = dict(data=0.0, step=0.0, validation=0.0, checkpoint=0.0)
        loss_sum, clips = 0.0, 0
        it = iter(loader)
        for step in range(iters):
            w0 = time.perf_counter()
            slow, fast, target = next(it)
            w1 = time.perf_counter()
            lr = lr_at(a, e + step / iters)
            for group in opt.param_groups:
                group["lr"] = lr
            opt.zero_grad(set_to_none=False)
            logits = model([slow, fast])
            loss = loss_fn(logits, target) if a.loss == "bce" else loss_fn(logits, target.argmax(1))
            if not torch.isfinite(loss):
                sys.exit(f"peer: epoch {e + 1} step {step + 1}: the loss is {loss.item()} (lr {lr:g})")
            loss.backward()
            opt.step()
            loss_sum += loss.item() * target.shape[0]
            clips += target.shape[0]
            ph["data"] += w1 - w0
            ph["step"] += time.perf_counter() - w1
        # Validation: every val video's centre view, made in this process (12 small clips).
        v0 = time.perf_counter()
        model.eval()
        scores, targets = [], []
        with torch.no_grad():
            for b in range(0, len(val_set), a.batch):
                items = [val_set[i] for i in range(b, min(b + a.batch, len(val_set)))]
                out = model([torch.stack([x[0] for x in items]), torch.stack([x[1] for x in items])])
                scores.append(torch.sigmoid(out) if a.loss == "bce" else torch.softmax(out, 1))
                targets.append(torch.stack([x[2] for x in items]))
        scores, targets = torch.cat(scores).numpy(), torch.cat(targets).numpy()
        val_map = mean_ap(scores, targets)
        top1 = float((targets[range(len(targets)), scores.argmax(1)] > 0.5).mean())
        ph["validation"] = time.perf_counter() - v0
        # Checkpoint: model + optimizer each epoch (the last two kept), best weights by val mAP (as sfnet keeps them).
        c0 = time.perf_counter()
        path = os.path.join(a.out, f"checkpoint_epoch_{e + 1:05d}.pyth")
        torch.save({"epoch": e + 1, "model_state": model.state_dict(), "optimizer_state": opt.state_dict()}, path)
        kept.append(path)
        while len(kept) > 2:
            os.remove(kept.pop(0))
        is_best = best is None or val_map > best
        if is_best:
            best = val_map
            torch.save(model.state_dict(), os.path.join(a.out, "best.pyth"))
        ph["checkpoint"] = time.perf_counter() - c0
        secs = time.perf_counter() - te
        rec = dict(epoch=e + 1, train_loss=loss_sum / clips, val_map=val_map, val_top1=top1, lr=lr, seconds=secs, phases=ph)
        epochs.append(rec)
        with open(os.path.join(a.out, "metrics.json"), "w") as f:
            json.dump({"epochs": epochs}, f)
        for k in totals:
            totals[k] += ph[k]
        print(f"epoch {e + 1}/{a.epochs}  train loss {rec['train_loss']:.4f}  val mAP {100 * val_map:.1f}%  top-1 {100 * top1:.1f}%  "
              f"lr {lr:.5f}  {secs:.1f} s  {clips / secs:.1f} clips/s (data {ph['data']:.1f} s, step {ph['step']:.1f} s, "
              f"validation {ph['validation']:.1f} s, checkpoint {ph['checkpoint']:.1f} s)" + ("  *best" if is_best else ""), flush=True)
    loop_s = time.perf_counter() - t_loop
    total_s = time.perf_counter() - t_start
    print(f"time over {a.epochs} epochs: {loop_s:.1f} s = data {totals['data']:.1f} s, step {totals['step']:.1f} s, "
          f"validation {totals['validation']:.1f} s, checkpoint {totals['checkpoint']:.1f} s; "
          f"before the loop {startup_s:.1f} s (decode {decode_s:.1f} s, model, loader); script total {total_s:.1f} s", flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(config=dict(config_rows(a, arch)), parameters=n_params, decode_s=decode_s, startup_s=startup_s,
                           loop_s=loop_s, total_s=total_s, phase_totals=totals, epochs=epochs,
                           final_val_map=epochs[-1]["val_map"], best_val_map=best), f, indent=1)


if __name__ == "__main__":
    main()
