"""PyTorch bf16 baseline for the FramePack transformer's block math, measured on the same GPU as our WebGPU bench.

The blocks follow framepack-reference.md §5.7 (dual-stream) and §5.8 (single-stream) at the real configuration
(3072 wide, 24 heads x 128, MLP 12288), random bf16 weights of realistic scale, PyTorch SDPA attention, RoPE on the
image tokens and RMSNorm on q/k. It prints one JSON object on the last line so `npm run bench` can merge it into its
table. Usage: python3 bench/torch_reference.py --image-tokens 17500 --text-tokens 256 --repeats 5
"""

import argparse
import json
import math
import statistics
import time

import torch
import torch.nn.functional as F

D, HEADS, HD, MLP = 3072, 24, 128, 12288


def lin(i, o, dev):
    w = (torch.randn(o, i, device=dev) / math.sqrt(i)).to(torch.bfloat16)
    b = (torch.randn(o, device=dev) * 0.02).to(torch.bfloat16)
    return w, b


def rms(x, w, eps=1e-6):
    xf = x.float()
    return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)).to(x.dtype) * w


def rope(x, cos, sin):
    # x [B, H, N, d]; pairs (2i, 2i+1) rotate: (-x1, x0)
    xf = x.float()
    x0, x1 = xf[..., 0::2], xf[..., 1::2]
    rot = torch.stack((-x1, x0), dim=-1).flatten(-2)
    return (xf * cos + rot * sin).to(x.dtype)


def heads(x):
    return x.view(1, -1, HEADS, HD).transpose(1, 2)


class Dual:
    def __init__(self, dev):
        self.mod_x = lin(D, 6 * D, dev)
        self.mod_c = lin(D, 6 * D, dev)
        self.qkv = [lin(D, D, dev) for _ in range(3)]
        self.qkv_c = [lin(D, D, dev) for _ in range(3)]
        self.out, self.out_c = lin(D, D, dev), lin(D, D, dev)
        self.norms = [torch.ones(HD, device=dev, dtype=torch.bfloat16) for _ in range(4)]
        self.ff = (lin(D, MLP, dev), lin(MLP, D, dev))
        self.ff_c = (lin(D, MLP, dev), lin(MLP, D, dev))

    def __call__(self, x, c, temb, cos, sin):
        t = F.silu(temb)
        sh1, sc1, g1, sh2, sc2, g2 = F.linear(t, *self.mod_x).chunk(6, -1)
        csh1, csc1, cg1, csh2, csc2, cg2 = F.linear(t, *self.mod_c).chunk(6, -1)
        xn = F.layer_norm(x, (D,), eps=1e-6) * (1 + sc1) + sh1
        cn = F.layer_norm(c, (D,), eps=1e-6) * (1 + csc1) + csh1
        q, k, v = (heads(F.linear(xn, *p)) for p in self.qkv)
        qc, kc, vc = (heads(F.linear(cn, *p)) for p in self.qkv_c)
        q, k = rope(rms(q, self.norms[0]), cos, sin), rope(rms(k, self.norms[1]), cos, sin)
        qc, kc = rms(qc, self.norms[2]), rms(kc, self.norms[3])
        o = F.scaled_dot_product_attention(torch.cat([q, qc], 2), torch.cat([k, kc], 2), torch.cat([v, vc], 2))
        o = o.transpose(1, 2).reshape(1, -1, D)
        n = x.shape[1]
        x = x + g1 * F.linear(o[:, :n], *self.out)
        c = c + cg1 * F.linear(o[:, n:], *self.out_c)
        xn = F.layer_norm(x, (D,), eps=1e-6) * (1 + sc2) + sh2
        x = x + g2 * F.linear(F.gelu(F.linear(xn, *self.ff[0]), approximate="tanh"), *self.ff[1])
        cn = F.layer_norm(c, (D,), eps=1e-6) * (1 + csc2) + csh2
        c = c + cg2 * F.linear(F.gelu(F.linear(cn, *self.ff_c[0]), approximate="tanh"), *self.ff_c[1])
        return x, c


class Single:
    def __init__(self, dev):
        self.mod = lin(D, 3 * D, dev)
        self.qkv = [lin(D, D, dev) for _ in range(3)]
        self.norms = [torch.ones(HD, device=dev, dtype=torch.bfloat16) for _ in range(2)]
        self.mlp = lin(D, MLP, dev)
        self.out = lin(D + MLP, D, dev)

    def __call__(self, x, c, temb, cos, sin):
        n = x.shape[1]
        s = torch.cat([x, c], 1)
        sh, sc, g = F.linear(F.silu(temb), *self.mod).chunk(3, -1)
        h = F.layer_norm(s, (D,), eps=1e-6) * (1 + sc) + sh
        mlp = F.gelu(F.linear(h, *self.mlp), approximate="tanh")
        q, k, v = (heads(F.linear(h, *p)) for p in self.qkv)
        q, k = rms(q, self.norms[0]), rms(k, self.norms[1])
        q = torch.cat([rope(q[:, :, :n], cos, sin), q[:, :, n:]], 2)
        k = torch.cat([rope(k[:, :, :n], cos, sin), k[:, :, n:]], 2)
        o = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(1, -1, D)
        s = s + g * F.linear(torch.cat([o, mlp], -1), *self.out)
        return s[:, :n], s[:, n:]


def timed(fn, repeats):
    fn()
    torch.cuda.synchronize()
    out = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(time.perf_counter() - t0)
    return statistics.median(out)


def sdpa_backend(q, k, v):
    """Which SDPA kernel serves these inputs: the first backend that accepts them when tried alone."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    for name, be in (("flash", SDPBackend.FLASH_ATTENTION), ("cudnn", SDPBackend.CUDNN_ATTENTION),
                     ("efficient", SDPBackend.EFFICIENT_ATTENTION), ("math", SDPBackend.MATH)):
        try:
            with sdpa_kernel(be):
                F.scaled_dot_product_attention(q, k, v)
            return name
        except RuntimeError:
            continue
    return "unknown"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--image-tokens", type=int, default=17500)
    ap.add_argument("--text-tokens", type=int, default=256)
    ap.add_argument("--siglip-tokens", type=int, default=729)
    ap.add_argument("--repeats", type=int, default=5)
    a = ap.parse_args()
    dev = "cuda"
    torch.manual_seed(0)
    n, m = a.image_tokens, a.siglip_tokens + a.text_tokens
    x = torch.randn(1, n, D, device=dev, dtype=torch.bfloat16)
    c = torch.randn(1, m, D, device=dev, dtype=torch.bfloat16)
    temb = torch.randn(1, 1, D, device=dev, dtype=torch.bfloat16)
    ang = torch.rand(1, 1, n, HD, device=dev) * 6.28
    cos, sin = ang.cos(), ang.sin()
    dual, single = Dual(dev), Single(dev)
    with torch.no_grad():
        t_dual = timed(lambda: dual(x, c, temb, cos, sin), a.repeats)
        t_single = timed(lambda: single(x, c, temb, cos, sin), a.repeats)
        q = torch.randn(1, HEADS, n + m, HD, device=dev, dtype=torch.bfloat16)
        t_attn = timed(lambda: F.scaled_dot_product_attention(q, q, q), a.repeats)
        a_ff = torch.randn(n + m, D, device=dev, dtype=torch.bfloat16)
        w1, w2 = lin(D, MLP, dev)[0], lin(MLP, D, dev)[0]
        t_ff = timed(lambda: F.linear(F.linear(a_ff, w1), w2), a.repeats)
        backend = sdpa_backend(q, q, q)
    torch.cuda.reset_peak_memory_stats()
    with torch.no_grad():
        dual(x, c, temb, cos, sin)
        single(x, c, temb, cos, sin)
    torch.cuda.synchronize()
    tokens = n + m
    attn_flop = 4 * tokens * tokens * D
    ff_flop = 2 * 2 * tokens * D * MLP
    result = {
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "gpu": torch.cuda.get_device_name(0),
        "sdpa_backend": backend,
        "image_tokens": n,
        "cond_tokens": m,
        "dual_block_s": t_dual,
        "single_block_s": t_single,
        "step_s_blocks_only": 20 * t_dual + 40 * t_single,
        "attention_s": t_attn,
        "attention_tflops": attn_flop / t_attn / 1e12,
        "ffn_pair_s": t_ff,
        "ffn_tflops": ff_flop / t_ff / 1e12,
        "peak_gpu_bytes_two_blocks": torch.cuda.max_memory_allocated(),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
