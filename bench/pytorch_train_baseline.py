#!/usr/bin/env python3
"""PyTorch baseline for bench_train on the same machine: one LoRA training step (forward, backward,
clip, AdamW) of the same Llama-shaped random models, seq 256, batch 1, LoRA r=16 alpha 32 on every
linear layer of every block (lm_head frozen), as `bench_train --shape S [--dtype f32|bf16]` runs it.

  /usr/bin/python3 bench/pytorch_train_baseline.py --shape smollm2|qwen|qwen3|smollm3|gemma3|phi3 [--dtype f32|bf16] [--steps 3]
                                                   [--checkpointing]

Frozen weights are stored in the given dtype; bf16 runs the whole step under torch.autocast (CPU,
bfloat16), which is PyTorch's mixed-precision recipe on CPU; LoRA weights and AdamW stay in fp32.
Prints one Markdown table row: tokens/s of the median step and peak RSS.
"""
import argparse
import resource
import time

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

SHAPES = {
    "smollm2": dict(h=576, f=1536, L=30, H=9, KV=3, V=49152, bias=False, theta=1e5),
    "qwen": dict(h=896, f=4864, L=24, H=14, KV=2, V=151936, bias=True, theta=1e6),
    # Qwen3-0.6B: head_dim 128 (q is 2048 wide over a 1024 hidden state), an RMSNorm over every q and k head
    "qwen3": dict(h=1024, f=3072, L=28, H=16, KV=8, d=128, V=151936, bias=False, theta=1e6, qk_norm=True),
    # SmolLM3-3B: every 4th layer without RoPE
    "smollm3": dict(h=2048, f=11008, L=36, H=16, KV=4, V=128256, bias=False, theta=5e6, nope=4),
    # Gemma-3-1B: head_dim 256 over 4 heads (q 1024 wide over a 1152 hidden state), one kv head, q/k norms, norms after
    # attention and MLP as well, GeGLU (tanh), embeddings x sqrt(hidden), 5 local layers (RoPE base 1e4) to 1 global
    "gemma3": dict(h=1152, f=6912, L=26, H=4, KV=1, d=256, V=262144, bias=False, theta=1e6, qk_norm=True, gemma=6),
    # Phi-3-mini: q|k|v fused in one qkv_proj and gate|up in one gate_up_proj, each adapted as one module (one LoRA A)
    "phi3": dict(h=3072, f=8192, L=32, H=32, KV=32, V=32064, bias=False, theta=1e4, fused=True),
}
LINEARS = ["wq", "wk", "wv", "wo", "wg", "wu", "wd"]


class LoraLlama:
    def __init__(self, c, dtype, rank):
        g = torch.Generator().manual_seed(0)
        r = lambda *s: (torch.randn(*s, generator=g) * 0.02).to(dtype)
        self.c, self.d = c, c.get("d", c["h"] // c["H"])
        h, f, kv, q = c["h"], c["f"], c["KV"] * self.d, c["H"] * self.d
        self.emb = r(c["V"], h)
        self.head = r(c["V"], h)
        shapes = dict(wq=(q, h), wk=(kv, h), wv=(kv, h), wo=(h, q), wg=(f, h), wu=(f, h), wd=(h, f))
        if c.get("fused"):
            shapes = dict(wqkv=(q + 2 * kv, h), wo=(h, q), wgu=(2 * f, h), wd=(h, f))
        self.layers = []
        self.params = []
        self.scaling = 2.0 * rank / rank
        for _ in range(c["L"]):
            L = {n: r(*s) for n, s in shapes.items()}
            for n, (o, i) in shapes.items():
                a = torch.nn.Parameter(torch.randn(rank, i, generator=g) / i ** 0.5)
                b = torch.nn.Parameter(torch.zeros(o, rank))
                L[n + "_lora"] = (a, b)
                self.params += [a, b]
            if c["bias"]:
                L["bq"], L["bk"], L["bv"] = r(h), r(kv), r(kv)
            L["n1"], L["n2"] = torch.ones(h, dtype=dtype), torch.ones(h, dtype=dtype)
            if c.get("qk_norm"):
                L["qn"], L["kn"] = torch.ones(self.d, dtype=dtype), torch.ones(self.d, dtype=dtype)
            L["rope"] = not c.get("nope") or (len(self.layers) + 1) % c["nope"] != 0
            if c.get("gemma"):
                L["pn1"], L["pn2"] = torch.ones(h, dtype=dtype), torch.ones(h, dtype=dtype)
                L["local"] = (len(self.layers) + 1) % c["gemma"] != 0
            self.layers.append(L)
        self.norm = torch.ones(h, dtype=dtype)
        inv = c["theta"] ** (-torch.arange(0, self.d, 2).float() / self.d)
        ang = torch.arange(4096).float()[:, None] * inv[None]
        self.cos, self.sin = torch.cos(ang), torch.sin(ang)
        ang_local = torch.arange(4096).float()[:, None] * (1e4 ** (-torch.arange(0, self.d, 2).float() / self.d))[None]
        self.cos_local, self.sin_local = torch.cos(ang_local), torch.sin(ang_local)

    def linear(self, L, name, x, bias=None):
        a, b = L[name + "_lora"]
        return F.linear(x, L[name], bias) + F.linear(F.linear(x, a), b) * self.scaling

    def rope(self, x, T, local=False):
        cos, sin = (self.cos_local, self.sin_local) if local else (self.cos, self.sin)
        c, s = cos[:T][None, :, None].to(x.dtype), sin[:T][None, :, None].to(x.dtype)
        x1, x2 = x[..., : self.d // 2], x[..., self.d // 2:]
        return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], -1)

    def block(self, L, x):
        c, d = self.c, self.d
        B, T, _ = x.shape
        hN = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * L["n1"]
        if c.get("fused"):
            q, k, v = self.linear(L, "wqkv", hN).split([c["H"] * d, c["KV"] * d, c["KV"] * d], -1)
            q, k, v = q.reshape(B, T, c["H"], d), k.reshape(B, T, c["KV"], d), v.reshape(B, T, c["KV"], d)
        else:
            q = self.linear(L, "wq", hN, L.get("bq")).view(B, T, c["H"], d)
            k = self.linear(L, "wk", hN, L.get("bk")).view(B, T, c["KV"], d)
            v = self.linear(L, "wv", hN, L.get("bv")).view(B, T, c["KV"], d)
        if "qn" in L:
            q = q * torch.rsqrt(q.pow(2).mean(-1, keepdim=True) + 1e-6) * L["qn"]
            k = k * torch.rsqrt(k.pow(2).mean(-1, keepdim=True) + 1e-6) * L["kn"]
        if L["rope"]:
            q, k = self.rope(q, T, L.get("local", False)), self.rope(k, T, L.get("local", False))
        rep = c["H"] // c["KV"]
        kk = k.transpose(1, 2).repeat_interleave(rep, 1)
        vv = v.transpose(1, 2).repeat_interleave(rep, 1)
        qq = q.transpose(1, 2)
        att = (qq @ kk.transpose(-1, -2)) / d ** 0.5
        att = att.masked_fill(torch.triu(torch.ones(T, T, dtype=torch.bool), 1), float("-inf")).softmax(-1)
        norm = lambda y, w: y * torch.rsqrt(y.pow(2).mean(-1, keepdim=True) + 1e-6) * w
        o = self.linear(L, "wo", (att @ vv).transpose(1, 2).reshape(B, T, -1))
        x = x + (norm(o, L["pn1"]) if "pn1" in L else o)
        hN = norm(x, L["n2"])
        if c.get("fused"):
            gate, up = self.linear(L, "wgu", hN).chunk(2, -1)
            down = self.linear(L, "wd", F.silu(gate) * up)
        else:
            gate = self.linear(L, "wg", hN)
            act = F.gelu(gate, approximate="tanh") if "pn1" in L else F.silu(gate)
            down = self.linear(L, "wd", act * self.linear(L, "wu", hN))
        return x + (norm(down, L["pn2"]) if "pn2" in L else down)

    def loss(self, tokens, targets, checkpointing):
        x = self.emb[tokens] * (self.c["h"] ** 0.5 if self.c.get("gemma") else 1.0)
        for L in self.layers:
            x = checkpoint(self.block, L, x, use_reentrant=False) if checkpointing else self.block(L, x)
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * self.norm
        logits = F.linear(x, self.head)
        return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), targets.view(-1))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--shape", default="smollm2", choices=SHAPES)
    p.add_argument("--dtype", default="bf16", choices=["f32", "bf16"])
    p.add_argument("--seq", type=int, default=256)
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--rank", type=int, default=16)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--checkpointing", action="store_true")
    a = p.parse_args()
    c = SHAPES[a.shape]
    dtype = torch.bfloat16 if a.dtype == "bf16" else torch.float32
    m = LoraLlama(c, dtype, a.rank)
    opt = torch.optim.AdamW(m.params, lr=1e-4)
    n = a.batch * a.seq
    tokens = torch.tensor([(i * 7919 + 3) % c["V"] for i in range(n)]).view(a.batch, a.seq)
    targets = torch.tensor([(i * 7919 + 7922) % c["V"] for i in range(n)]).view(a.batch, a.seq)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.dtype == "bf16"):
            loss = m.loss(tokens, targets, a.checkpointing)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(m.params, 1.0)
        opt.step()

    step()  # warm-up
    times = []
    for _ in range(a.steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    s = sorted(times)[len(times) // 2]
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    tps = n / s
    print(f"| PyTorch {torch.__version__} {a.shape} ({a.dtype}) | LoRA r={a.rank} | {'on' if a.checkpointing else 'off'} "
          f"| {a.batch}x{a.seq} | {tps:.{2 if tps < 10 else 0}f} | {rss:.0f} MiB | threads {torch.get_num_threads()} |")


if __name__ == "__main__":
    main()
