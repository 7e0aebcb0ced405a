"""diffusers' HunyuanVideo VAE at FramePack's real size, measured on the same GPU as bench/vae.ts.

AutoencoderKLHunyuanVideo from diffusers 0.33.1, built from src/models/configs/vae.json (no checkpoint: random
weights of realistic scale, conv and linear weights uniform with std 1/sqrt(fan_in), biases +-0.02, norm weights ~1),
in float16 as FramePack loads it, on CUDA. The same workloads as the WebGPU bench at the 640 bucket: encode of one
640x608 frame; decode of 9 latents (a first section) and of 18 (a later one), latents 80x76; each with FramePack's
low-VRAM tiling (vae.enable_tiling() with temporal 16/12 frames and spatial 256/192 px) and its high-VRAM mode
(no enable_tiling: diffusers' default frame-wise temporal tiles only). Times are medians of --repeats runs after a
warm-up, with torch.cuda.synchronize; peak memory is torch.cuda.max_memory_allocated over one run (weights
included). Prints one JSON line for `bench/vae.ts --torch FILE`.

Usage: python3 bench/vae_reference.py [--repeats 3] [--workloads encode,decode9,decode18] [--modes low,high]
       [--device cuda|cpu --small]   (cpu and --small: a smoke run with the fixture's tiny VAE)
"""

import argparse
import json
import math
import os
import statistics
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))


def load_config(small):
    path = os.path.join(HERE, "..", "test/fixtures/reference/vae_tiny/config.json" if small else "src/models/configs/vae.json")
    with open(path) as f:
        cfg = json.load(f)
    return {k: v for k, v in cfg.items() if not k.startswith("_")}


def randomize(model, seed=1):
    """Realistic scale: weights uniform(-a, a) with a = sqrt(3 / fan_in), biases +-0.02, GroupNorm weights 1 +- 0.05."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.05 * (torch.rand(p.shape, generator=gen) * 2 - 1))
            elif name.endswith("bias"):
                p.copy_(0.02 * (torch.rand(p.shape, generator=gen) * 2 - 1))
            else:
                fan_in = math.prod(p.shape[1:]) if p.dim() > 1 else 1
                p.copy_(math.sqrt(3 / fan_in) * (torch.rand(p.shape, generator=gen) * 2 - 1))


def sync(device):
    if device == "cuda":
        torch.cuda.synchronize()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--workloads", default="encode,decode9,decode18")
    ap.add_argument("--modes", default="low,high")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--small", action="store_true")
    a = ap.parse_args()

    import diffusers
    from diffusers import AutoencoderKLHunyuanVideo

    dev = a.device
    dtype = torch.float16 if dev == "cuda" else torch.float32
    vae = AutoencoderKLHunyuanVideo(**load_config(a.small))
    randomize(vae)
    vae = vae.to(device=dev, dtype=dtype).eval()
    height, width = (96, 80) if a.small else (640, 608)
    tile = (64, 48) if a.small else (256, 192)
    s = 8
    gen = torch.Generator().manual_seed(0)

    def inputs(workload):
        if workload == "encode":
            return torch.rand((1, 3, 1, height, width), generator=gen).mul(2).sub(1).to(dev, dtype)
        frames = 9 if workload == "decode9" else 18
        return torch.randn((1, 16, frames, height // s, width // s), generator=gen).to(dev, dtype)

    def set_mode(mode):
        if mode == "low":
            vae.enable_tiling(
                tile_sample_min_height=tile[0], tile_sample_min_width=tile[0], tile_sample_min_num_frames=16,
                tile_sample_stride_height=tile[1], tile_sample_stride_width=tile[1], tile_sample_stride_num_frames=12,
            )
        else:
            vae.disable_tiling()

    def work(workload, x):
        if workload == "encode":
            return vae.encode(x).latent_dist.mode()
        return vae.decode(x).sample

    results = {}
    with torch.inference_mode():
        for workload in a.workloads.split(","):
            for mode in a.modes.split(","):
                set_mode(mode)
                x = inputs(workload)
                work(workload, x)  # warm-up (cuDNN algorithm choice, allocator)
                sync(dev)
                times = []
                for _ in range(a.repeats):
                    t0 = time.perf_counter()
                    work(workload, x)
                    sync(dev)
                    times.append(time.perf_counter() - t0)
                peak = 0
                if dev == "cuda":
                    torch.cuda.empty_cache()
                    torch.cuda.reset_peak_memory_stats()
                    work(workload, x)
                    sync(dev)
                    peak = torch.cuda.max_memory_allocated()
                results[f"{workload}/{mode}"] = {"s": statistics.median(times), "all_s": times, "peak_bytes": peak}

    print(json.dumps({
        "torch": torch.__version__,
        "diffusers": diffusers.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if dev == "cuda" else None,
        "gpu": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu",
        "dtype": str(dtype).replace("torch.", ""),
        "width": width,
        "height": height,
        "results": results,
    }))


if __name__ == "__main__":
    main()
