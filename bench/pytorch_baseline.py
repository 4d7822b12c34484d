#!/usr/bin/env python3
"""PyTorch baseline for bench_forward on the same machine: GEMM GFLOP/s and the same Llama-shaped
models (random weights, fp32 and bf16) for prefill and KV-cache decode tokens/s.

  /usr/bin/python3 bench/pytorch_baseline.py [--quick]
"""
import math
import sys
import time

import torch
import torch.nn.functional as F

torch.set_grad_enabled(False)

SHAPES = {
    "SmolLM2-135M shape": dict(h=576, f=1536, L=30, H=9, KV=3, V=49152, bias=False),
    "Qwen2.5-0.5B shape": dict(h=896, f=4864, L=24, H=14, KV=2, V=151936, bias=True),
}


def median_time(reps, fn):
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def gemm(m, n, k, dtype):
    a, b = torch.randn(m, k).to(dtype), torch.randn(n, k).to(dtype)
    a @ b.T
    s = median_time(5, lambda: a @ b.T)
    print(f"| torch gemm {m}x{n}x{k} | {str(dtype).replace('torch.', '')} | {2 * m * n * k / s / 1e9:.1f} GFLOP/s |")


class Model:
    def __init__(self, c, dtype):
        g = torch.Generator().manual_seed(0)
        r = lambda *s: (torch.randn(*s, generator=g) * 0.02).to(dtype)
        self.c, self.d = c, c["h"] // c["H"]
        h, f, kv = c["h"], c["f"], c["KV"] * (c["h"] // c["H"])
        self.emb = r(c["V"], h)
        self.layers = [dict(wq=r(h, h), wk=r(kv, h), wv=r(kv, h), wo=r(h, h), wg=r(f, h), wu=r(f, h), wd=r(h, f),
                            bq=r(h) if c["bias"] else None, bk=r(kv) if c["bias"] else None,
                            bv=r(kv) if c["bias"] else None, n1=torch.ones(h, dtype=dtype), n2=torch.ones(h, dtype=dtype))
                       for _ in range(c["L"])]
        self.norm = torch.ones(h, dtype=dtype)
        inv = 1e4 ** (-torch.arange(0, self.d, 2).float() / self.d)
        ang = torch.arange(4096).float()[:, None] * inv[None]
        self.cos, self.sin = torch.cos(ang).to(dtype), torch.sin(ang).to(dtype)

    def rope(self, x, pos):
        c, s = self.cos[pos][None, :, None], self.sin[pos][None, :, None]
        x1, x2 = x[..., : self.d // 2], x[..., self.d // 2:]
        return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], -1)

    def forward(self, tokens, cache):
        c, d = self.c, self.d
        T = tokens.shape[1]
        p0 = cache[0][0].shape[1] if cache[0] else 0
        pos = torch.arange(p0, p0 + T)
        x = self.emb[tokens]
        for i, L in enumerate(self.layers):
            hN = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * L["n1"]
            q = F.linear(hN, L["wq"], L["bq"]).view(1, T, c["H"], d)
            k = F.linear(hN, L["wk"], L["bk"]).view(1, T, c["KV"], d)
            v = F.linear(hN, L["wv"], L["bv"]).view(1, T, c["KV"], d)
            q, k = self.rope(q, pos), self.rope(k, pos)
            if cache[i]:
                k, v = torch.cat([cache[i][0], k], 1), torch.cat([cache[i][1], v], 1)
            cache[i] = (k, v)
            rep = c["H"] // c["KV"]
            kk = k.transpose(1, 2).repeat_interleave(rep, 1)
            vv = v.transpose(1, 2).repeat_interleave(rep, 1)
            att = F.scaled_dot_product_attention(q.transpose(1, 2), kk, vv, is_causal=T > 1) \
                if hasattr(F, "scaled_dot_product_attention") else self.attn(q.transpose(1, 2), kk, vv, T)
            x = x + F.linear(att.transpose(1, 2).reshape(1, T, -1), L["wo"])
            hN = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * L["n2"]
            x = x + F.linear(F.silu(F.linear(hN, L["wg"])) * F.linear(hN, L["wu"]), L["wd"])
        x = x[:, -1:] * torch.rsqrt(x[:, -1:].pow(2).mean(-1, keepdim=True) + 1e-6) * self.norm
        return F.linear(x, self.emb)

    @staticmethod
    def attn(q, k, v, T):
        s = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        if T > 1:
            S = k.shape[2]
            s = s + torch.full((T, S), float("-inf")).triu(S - T + 1).to(s.dtype)
        return torch.softmax(s.float(), -1).to(q.dtype) @ v


def bench_model(name, c, dtype, prompt_len, decode_len):
    m = Model(c, dtype)
    tokens = (torch.arange(prompt_len) * 7919 + 1).remainder(c["V"])[None]
    m.forward(tokens, [None] * c["L"])
    prefill = median_time(3, lambda: m.forward(tokens, [None] * c["L"]))
    cache = [None] * c["L"]
    m.forward(tokens, cache)
    one = torch.tensor([[1]])
    t = time.perf_counter()
    for _ in range(decode_len):
        m.forward(one, cache)
    decode = time.perf_counter() - t
    print(f"| torch {name} ({str(dtype).replace('torch.', '')}) | {prompt_len / prefill:.0f} | {decode_len / decode:.1f} |")


def main():
    quick = "--quick" in sys.argv
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    print("| GEMM | dtype | throughput |\n|---|---|---|")
    for dt in (torch.float32, torch.bfloat16):
        gemm(512, 896, 896, dt)
        gemm(2048, 2048, 2048, dt)
    prompt_len, decode_len = (64, 16) if quick else (256, 64)
    print(f"\nprompt {prompt_len} tokens, decode {decode_len} tokens, batch 1\n")
    print("| model | prefill tok/s | decode tok/s |\n|---|---|---|")
    for dt in (torch.float32, torch.bfloat16):
        for name, c in SHAPES.items():
            bench_model(name, c, dt, prompt_len, decode_len)


if __name__ == "__main__":
    main()
