#!/usr/bin/env python3
"""PyTorch autograd reference (float64) for LoRA / DoRA / AdaLoRA / full fine-tuning, the oracle of the training engine.

Given a base model, an adapter_config.json (PEFT keys, plus "finetuning_type": "lora" | "full"), the
initial trainable tensors (safetensors, named as they are saved: PEFT keys for adapters, Hugging Face
names for whole weights) and one batch, it writes to --out (safetensors, float32):
  loss                  the mean NLL over the counted targets, before any update (AdaLoRA: plus the
                        orthogonal regularizer, as PEFT's AdaLoraModel.forward adds it)
  orth_reg              AdaLoRA only: that regularizer alone
  grad.<name>           d loss / d <name> at the initial values
  final.<name>          <name> after --steps AdamW steps on the same batch (HF schedule, grad clipping)

  lora_reference.py --model M --config adapter_config.json --init init.safetensors \\
      --tokens "1 5 9,1 7 3" --targets "5 9 -100,7 3 2" --steps 10 --lr 1e-3 --schedule cosine \\
      --warmup 2 --max-grad-norm 1.0 --weight-decay 0.01 --out result.safetensors
"""
import argparse
import json
import math
import re

import torch

import llama_reference as ref

DT = ref.DT
torch.set_grad_enabled(True)  # llama_reference turns autograd off for its own use


def pattern_value(patterns, path, default):
    for key, value in patterns.items():
        if path == key or path.endswith("." + key) or re.fullmatch(r"(.*\.)?" + key, path):
            return value
    return default


class Trainable:
    def __init__(self, cfg, W, adapter_cfg, init):
        self.cfg, self.W, self.a = cfg, W, adapter_cfg
        self.full = adapter_cfg.get("finetuning_type", "lora") == "full"
        self.P = {k: v.clone().to(DT).requires_grad_(True) for k, v in init.items()}
        if self.full:
            self.bind_full()

    # ---- whole-weight fine-tuning: the params are the model's own tensors
    def bind_full(self):
        names = {"embed": "model.embed_tokens.weight", "norm": "model.norm.weight"}
        for k, n in names.items():
            self.W[k] = self.P[n]
        self.W["lm_head"] = self.P.get("lm_head.weight", self.W["embed"])
        norms = ({"post_attn_norm": "post_attention_layernorm.weight", "ffn_norm": "pre_feedforward_layernorm.weight",
                  "post_ffn_norm": "post_feedforward_layernorm.weight"} if ref.is_gemma(self.cfg)
                 else {"ffn_norm": "post_attention_layernorm.weight"})
        fields = {"attn_norm": "input_layernorm.weight", **norms,
                  "wq": "self_attn.q_proj.weight", "wk": "self_attn.k_proj.weight", "wv": "self_attn.v_proj.weight",
                  "wo": "self_attn.o_proj.weight", "w_gate": "mlp.gate_proj.weight", "w_up": "mlp.up_proj.weight",
                  "w_down": "mlp.down_proj.weight", "bq": "self_attn.q_proj.bias", "bk": "self_attn.k_proj.bias",
                  "bv": "self_attn.v_proj.bias", "q_norm": "self_attn.q_norm.weight", "k_norm": "self_attn.k_norm.weight"}
        for l, L in enumerate(self.W["layers"]):
            for k, n in fields.items():
                key = f"model.layers.{l}.{n}"
                if key in self.P:
                    L[k] = self.P[key]

    def scaling(self, path, r):
        if self.a.get("peft_type") == "ADALORA":  # PEFT: scaling / (ranknum + 1e-5), ranknum = init_r
            return self.a["lora_alpha"] / (self.a["init_r"] + 1e-5)
        alpha = pattern_value(self.a.get("alpha_pattern") or {}, path, self.a["lora_alpha"])
        return alpha / (math.sqrt(r) if self.a.get("use_rslora") else r)

    # ---- the adapted projections
    # Phi-3's fused modules, adapted as one module (one A) as PEFT does; lora.cpp's parameters hold the parts: the
    # first part's lora_A is the module's A, its lora_B the parts' lora_B stacked (DoRA's magnitude too).
    FUSED = {"self_attn.qkv_proj": ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"),
             "mlp.gate_up_proj": ("mlp.gate_proj", "mlp.up_proj")}

    def fused_lora(self, layer, name):
        """(A, B, DoRA's m or None, AdaLoRA's E or None) of a fused module, None when it has no adapter."""
        keys = [f"base_model.model.model.layers.{layer}.{p}" for p in self.FUSED[name]]
        if self.full:
            return None
        if keys[0] + ".lora_E" in self.P:  # AdaLoRA: A and E of the first part, B of every part
            return (self.P[keys[0] + ".lora_A"], torch.cat([self.P[k + ".lora_B"] for k in keys]), None,
                    self.P[keys[0] + ".lora_E"])
        if keys[0] + ".lora_A.weight" not in self.P:
            return None
        A = self.P[keys[0] + ".lora_A.weight"]
        B = torch.cat([self.P[k + ".lora_B.weight"] for k in keys])
        m = torch.cat([self.P[k + ".lora_magnitude_vector"] for k in keys]) if keys[0] + ".lora_magnitude_vector" in self.P else None
        return A, B, m, None

    def linear(self, layer, name, x, weight, bias):
        path = f"model.layers.{layer}.{name}"
        key = "base_model.model." + path
        if name in self.FUSED:
            out = x @ weight.T
            f = self.fused_lora(layer, name)
            if f is None:
                return out
            A, B, m, E = f
            s = self.scaling(path, A.shape[0])
            if E is not None:
                return out + (x @ (A * E).T) @ B.T * s
            lora = (x @ A.T) @ B.T * s
            if m is None:
                return out + lora
            return m / (weight + s * B @ A).norm(dim=1).detach() * (out + lora)
        if key + ".bias" in self.P:
            bias = self.P[key + ".bias"]
        out = x @ weight.T + (bias if bias is not None else 0)
        if key + ".lora_E" in self.P:  # AdaLoRA: s · B (E ⊙ A) x
            A, E, B = self.P[key + ".lora_A"], self.P[key + ".lora_E"], self.P[key + ".lora_B"]
            return out + (x @ (A * E).T) @ B.T * self.scaling(path, A.shape[0])
        if self.full or key + ".lora_A.weight" not in self.P:
            return out
        A, B = self.P[key + ".lora_A.weight"], self.P[key + ".lora_B.weight"]
        s = self.scaling(path, A.shape[0])
        lora = (x @ A.T) @ B.T * s
        if key + ".lora_magnitude_vector" not in self.P:
            return out + lora
        # DoRA: m ⊙ (W + sBA) x / ‖W + sBA‖_row, the norm detached as in PEFT
        m = self.P[key + ".lora_magnitude_vector"]
        norm = (weight + s * B @ A).norm(dim=1).detach()
        c = m / norm
        base = x @ weight.T
        return c * (base + lora) + (bias if bias is not None else 0)

    def embed(self, tokens):
        key = "base_model.model.model.embed_tokens"
        table = self.P.get(key + ".weight", self.W["embed"])
        x = table[tokens] * ref.embed_scale(self.cfg, table.dtype)  # (Gemma: the base's output; the LoRA adds unscaled)
        if key + ".lora_embedding_A" in self.P:
            A, B = self.P[key + ".lora_embedding_A"], self.P[key + ".lora_embedding_B"]
            x = x + (A.T[tokens] @ B.T) * self.scaling("model.embed_tokens", A.shape[0])
        return x

    def head(self, h):
        key = "base_model.model.lm_head"
        weight = self.P.get(key + ".weight", self.W["lm_head"])
        logits = h @ weight.T
        if key + ".lora_E" in self.P:
            A, E, B = self.P[key + ".lora_A"], self.P[key + ".lora_E"], self.P[key + ".lora_B"]
            logits = logits + (h @ (A * E).T) @ B.T * self.scaling("lm_head", A.shape[0])
        if key + ".lora_A.weight" in self.P:
            A, B = self.P[key + ".lora_A.weight"], self.P[key + ".lora_B.weight"]
            logits = logits + (h @ A.T) @ B.T * self.scaling("lm_head", A.shape[0])
        return logits

    def orth_reg(self):
        """PEFT's AdaLoRA regularizer: the mean over every A and B of ‖AAᵀ − I‖_F resp. ‖BᵀB − I‖_F."""
        terms = []
        later_parts = [p for parts in self.FUSED.values() for p in parts[1:]]
        for k, p in self.P.items():
            if k.endswith(".lora_A"):
                terms.append(torch.norm(p @ p.T - torch.eye(p.shape[0], dtype=p.dtype), p="fro"))
            elif k.endswith(".lora_B"):
                if ref.is_phi3(self.cfg):  # a fused module's B is its parts' stacked, held with the first part
                    if any(f".{q}.lora_B" in k for q in later_parts):
                        continue
                    for first, parts in ((ps[0], ps) for ps in self.FUSED.values()):
                        if f".{first}.lora_B" in k:
                            p = torch.cat([self.P[k.replace(first, q)] for q in parts])
                terms.append(torch.norm(p.T @ p - torch.eye(p.shape[1], dtype=p.dtype), p="fro"))
        return self.a["orth_reg_weight"] * sum(terms) / len(terms)

    def loss(self, tokens, targets):
        if self.full:
            logits = ref.forward(self.cfg, self.W, "rotate_half", tokens)
        else:
            logits = ref.forward(self.cfg, self.W, "rotate_half", tokens, linear=self.linear, embed=self.embed,
                                 head=self.head)
        ce = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                                               ignore_index=-100, reduction="mean")
        return ce + self.orth_reg() if self.a.get("peft_type") == "ADALORA" else ce


def hf_schedule(kind, warmup, total):
    def f(step):
        if step < warmup:
            return step / max(1, warmup)
        if kind == "constant":
            return 1.0
        progress = (step - warmup) / max(1, total - warmup)
        if kind == "linear":
            return max(0.0, 1.0 - progress)
        return max(0.0, 0.5 * (1.0 + math.cos(math.pi * progress)))
    return f


def main():
    ap = argparse.ArgumentParser()
    for a in ("--model", "--config", "--init", "--tokens", "--targets", "--out"):
        ap.add_argument(a, required=True)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--schedule", default="cosine")
    ap.add_argument("--warmup", type=int, default=0)
    ap.add_argument("--max-grad-norm", type=float, default=1.0)
    ap.add_argument("--weight-decay", type=float, default=0.0)
    a = ap.parse_args()

    cfg, W, layout = ref.load(a.model)
    if layout == "interleaved":  # train in the Hugging Face layout, as the engine does internally
        for L in W["layers"]:
            L["wq"] = ref.interleaved_to_rotate_half(L["wq"], cfg["num_attention_heads"])
            L["wk"] = ref.interleaved_to_rotate_half(L["wk"], cfg["num_key_value_heads"])
    with open(a.config) as f:
        adapter_cfg = json.load(f)
    model = Trainable(cfg, W, adapter_cfg, ref.read_safetensors(a.init))
    tokens = torch.tensor([[int(t) for t in s.split()] for s in a.tokens.split(",")])
    targets = torch.tensor([[int(t) for t in s.split()] for s in a.targets.split(",")])

    out = {}
    loss = model.loss(tokens, targets)
    loss.backward()
    out["loss"] = loss.detach().reshape(1)
    if adapter_cfg.get("peft_type") == "ADALORA":
        out["orth_reg"] = model.orth_reg().detach().reshape(1)
    for k, p in model.P.items():
        out["grad." + k] = p.grad.detach().clone()

    no_decay = [p for k, p in model.P.items() if k.endswith(".bias") or "norm" in k]
    decay = [p for k, p in model.P.items() if not (k.endswith(".bias") or "norm" in k)]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, hf_schedule(a.schedule, a.warmup, a.steps))
    for _ in range(a.steps):
        opt.zero_grad()
        model.loss(tokens, targets).backward()
        torch.nn.utils.clip_grad_norm_(list(model.P.values()), a.max_grad_norm)
        opt.step()
        sched.step()
    for k, p in model.P.items():
        out["final." + k] = p.detach().clone()
    ref.write_safetensors(a.out, out)


if __name__ == "__main__":
    main()
