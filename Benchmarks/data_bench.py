"""Data pipeline benchmark: sfnet's Video module against PyAV + PySlowFast's transforms, side by side.

Both sides decode the same generated H.264 MP4s and make training clips the PySlowFast way:
32 frames at sampling rate 2 on the 30 fps timeline, short-side jitter [256, 340], random 256 crop,
horizontal flip, PCA lighting, mean/std normalisation, slow pathway by linspace -> NCTHW float32.

The peer is PySlowFast's own code path, transcribed: decoder.pyav_decode (seek to the clip's
window, decode it, to_rgb), decoder.temporal_sampling, utils.tensor_normalize, utils.spatial_sampling
(transform.random_short_side_scale_jitter with torch interpolate, random_crop, horizontal_flip),
transform.lighting_jitter, utils.pack_pathway_output. Runs are interleaved, repeated, medians reported.

    .venv/bin/python Benchmarks/data_bench.py [--bin .build/release/sfnet-databench] [--repeats 5]
"""
import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time

import av
import numpy as np
import torch

MEAN, STD = [0.45, 0.45, 0.45], [0.225, 0.225, 0.225]
EIGVAL = [0.225, 0.224, 0.229]
EIGVEC = [[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]]


# ---- PySlowFast slowfast/datasets/decoder.py -------------------------------------------------
def get_start_end_idx(video_size, clip_size, clip_idx, num_clips):
    delta = max(video_size - clip_size, 0)
    start_idx = random.uniform(0, delta) if clip_idx == -1 else delta * clip_idx / num_clips
    return start_idx, start_idx + clip_size - 1


def temporal_sampling(frames, start_idx, end_idx, num_samples):
    index = torch.linspace(start_idx, end_idx, num_samples)
    index = torch.clamp(index, 0, frames.shape[0] - 1).long()
    return torch.index_select(frames, 0, index)


def pyav_decode_stream(container, start_pts, end_pts, stream, stream_name, buffer_size=0):
    margin = 1024
    seek_offset = max(start_pts - margin, 0)
    container.seek(seek_offset, any_frame=False, backward=True, stream=stream)
    frames = {}
    buffer_count = 0
    for frame in container.decode(**stream_name):
        if frame.pts < start_pts:
            continue
        if frame.pts <= end_pts:
            frames[frame.pts] = frame
        else:
            buffer_count += 1
            frames[frame.pts] = frame
            if buffer_count >= buffer_size:
                break
    return [frames[pts] for pts in sorted(frames)]


def pyav_decode(container, sampling_rate, num_frames, clip_idx, num_clips, target_fps=30):
    stream = container.streams.video[0]
    fps = float(stream.average_rate)
    frames_length = stream.frames
    duration = stream.duration
    clip_size = sampling_rate * num_frames / target_fps * fps
    start_idx, end_idx = get_start_end_idx(frames_length, clip_size, clip_idx, num_clips)
    timebase = duration / frames_length
    video_frames = pyav_decode_stream(container, int(start_idx * timebase), int(end_idx * timebase), stream, {"video": 0})
    container.close()
    frames = torch.as_tensor(np.stack([f.to_rgb().to_ndarray() for f in video_frames]))
    return frames, fps


def decode(path, sampling_rate, num_frames, target_fps=30):
    container = av.open(path)
    frames, fps = pyav_decode(container, sampling_rate, num_frames, -1, 1, target_fps)
    clip_sz = sampling_rate * num_frames / target_fps * fps
    start_idx, end_idx = get_start_end_idx(frames.shape[0], clip_sz, 0, 1)
    return temporal_sampling(frames, start_idx, end_idx, num_frames)


# ---- PySlowFast slowfast/datasets/transform.py and utils.py -----------------------------------
def tensor_normalize(tensor, mean, std):
    if tensor.dtype == torch.uint8:
        tensor = tensor.float() / 255.0
    return (tensor - torch.tensor(mean)) / torch.tensor(std)


def random_short_side_scale_jitter(images, min_size, max_size):
    size = int(round(np.random.uniform(min_size, max_size)))
    height, width = images.shape[2], images.shape[3]
    if (width <= height and width == size) or (height <= width and height == size):
        return images
    new_width, new_height = size, size
    if width < height:
        new_height = int(math.floor((float(height) / width) * size))
    else:
        new_width = int(math.floor((float(width) / height) * size))
    return torch.nn.functional.interpolate(images, size=(new_height, new_width), mode="bilinear", align_corners=False)


def random_crop(images, size):
    if images.shape[2] == size and images.shape[3] == size:
        return images
    height, width = images.shape[2], images.shape[3]
    y_offset = int(np.random.randint(0, height - size)) if height > size else 0
    x_offset = int(np.random.randint(0, width - size)) if width > size else 0
    return images[:, :, y_offset:y_offset + size, x_offset:x_offset + size]


def horizontal_flip(prob, images):
    if np.random.uniform() < prob:
        images = images.flip((-1))
    return images


def lighting_jitter(images, alphastd, eigval, eigvec):
    alpha = np.random.normal(0, alphastd, size=(1, 3))
    eig_vec = np.array(eigvec)
    eig_val = np.reshape(eigval, (1, 3))
    rgb = np.sum(eig_vec * np.repeat(alpha, 3, axis=0) * np.repeat(eig_val, 3, axis=0), axis=1)
    out_images = torch.zeros_like(images)
    for idx in range(images.shape[1]):
        out_images[:, idx] = images[:, idx] + rgb[2 - idx]
    return out_images


def make_clip(path, num_frames=32, sampling_rate=2, crop=256, jitter=(256, 340), alpha=4):
    frames = decode(path, sampling_rate, num_frames)                # T H W C uint8
    frames = tensor_normalize(frames, MEAN, STD).permute(3, 0, 1, 2)  # C T H W
    frames = random_short_side_scale_jitter(frames, jitter[0], jitter[1])
    frames = random_crop(frames, crop)
    frames = horizontal_flip(0.5, frames)
    frames = lighting_jitter(frames.permute(1, 0, 2, 3), 0.1, EIGVAL, EIGVEC).permute(1, 0, 2, 3)
    slow = torch.index_select(frames, 1, torch.linspace(0, frames.shape[1] - 1, frames.shape[1] // alpha).long())
    return slow.unsqueeze(0).contiguous(), frames.unsqueeze(0).contiguous()


class ClipDataset(torch.utils.data.Dataset):
    def __init__(self, paths, frames, crop):
        self.paths, self.frames, self.crop = paths, frames, crop

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        slow, fast = make_clip(self.paths[i], self.frames, crop=self.crop)
        return slow[0], fast[0]


def python_rate(paths, clips, frames, crop, workers):
    start = time.perf_counter()
    made = 0
    if workers == 0:
        while made < clips:
            order = list(range(len(paths)))
            random.shuffle(order)
            for i in order:
                if made == clips:
                    break
                make_clip(paths[i], frames, crop=crop)
                made += 1
    else:
        while made < clips:
            loader = torch.utils.data.DataLoader(ClipDataset(paths, frames, crop), batch_size=1, shuffle=True,
                                                 num_workers=workers, prefetch_factor=2)
            for _ in loader:
                made += 1
                if made == clips:
                    break
    return clips / (time.perf_counter() - start)


def sfnet_rate(binary, manifest, clips, frames, crop, workers):
    out = subprocess.run([binary, "bench", "--manifest", manifest, "--clips", str(clips), "--frames", str(frames),
                          "--crop", str(crop), "--workers", str(workers), "--repeats", "1"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["median"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=".build/release/sfnet-databench")
    ap.add_argument("--data", default="bench-out/data")
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--frames", type=int, default=32)
    ap.add_argument("--crop", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--workers", default="1,2", help="worker counts to compare (Python: 1 = in-process, N>1 = DataLoader workers)")
    args = ap.parse_args()
    torch.set_num_threads(1)
    manifest = os.path.join(args.data, "train.csv")
    if not os.path.exists(manifest):
        out = subprocess.run([args.bin, "synth", "--out", args.data, "--per-class", "4,0,0", "--size", "320x240",
                              "--seconds", "4"], check=True, capture_output=True, text=True).stdout
        print("generated:", out.strip())
    paths = [os.path.join(args.data, line.split(",")[0]) for line in open(manifest).read().splitlines()[1:]]
    print(f"{len(paths)} videos (320x240 H.264, 4 s at 30 fps); {args.clips} clips per run of {args.frames} frames at {args.crop}; "
          f"torch {torch.__version__}, PyAV {av.__version__}; {args.repeats} interleaved repeats")
    results = {}
    for w in [int(x) for x in args.workers.split(",")]:
        s_rates, p_rates = [], []
        for _ in range(args.repeats):
            s_rates.append(sfnet_rate(args.bin, manifest, args.clips, args.frames, args.crop, w))
            p_rates.append(python_rate(paths, args.clips, args.frames, args.crop, 0 if w == 1 else w))
        s, p = statistics.median(s_rates), statistics.median(p_rates)
        results[w] = (s, p)
        print(f"workers {w}: sfnet {s:7.2f} clips/s  {['%.2f' % r for r in s_rates]}")
        print(f"workers {w}: python {p:6.2f} clips/s  {['%.2f' % r for r in p_rates]}  ratio {s / p:.2f}x")
    print(json.dumps({str(w): {"sfnet": s, "python": p, "ratio": s / p} for w, (s, p) in results.items()}))


if __name__ == "__main__":
    sys.exit(main())
