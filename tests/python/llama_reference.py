#!/usr/bin/env python3
"""Independent PyTorch (float64) reference of the Llama-family decoder, the oracle for the C++ tests.

It reads checkpoints on its own (llama2.c .bin, Hugging Face folder with safetensors), and for llama2.c
weights it applies RoPE in the checkpoint's own interleaved layout rather than permuting, so the C++
loader's q/k permutation is checked too.

  llama_reference.py logits   --model M --tokens "1 5 9,1 7 3" --out logits.f32
  llama_reference.py nll      --model M --ids-file ids.txt --ctx N          (prints JSON)
  llama_reference.py make-hf  --out DIR --seed S [--family qwen3|smollm3|gemma2|gemma3|phi3|phi4]   (random-weight HF folder)

Gemma 3 (model_type gemma3_text) follows transformers' modeling_gemma3: its checkpoints' norm weights w are read
as the factors 1 + w (Gemma3RMSNorm), embeddings are scaled by sqrt(hidden_size), every block has post-attention
and post-MLP norms, the MLP is GeGLU with tanh-GELU, scores are scaled by query_pre_attn_scalar^-1/2, and the
"sliding_attention" layers use rope_local_base_freq without scaling and see keys j > i - sliding_window.

Gemma 2 (model_type gemma2) follows modeling_gemma2: the same block without q/k norms, one RoPE base for every
layer, every other layer (the first included) sliding, and soft-capping: the scaled scores become
attn_logit_softcapping * tanh(s / attn_logit_softcapping) before the mask, the logits
final_logit_softcapping * tanh(z / final_logit_softcapping).
"""
import argparse
import json
import math
import os
import struct
import sys

import numpy as np
import torch

import safetensors_io as st

torch.set_grad_enabled(False)
DT = torch.float64


# ----------------------------------------------------------------------------- checkpoint readers

def read_llama2c(path):
    with open(path, "rb") as f:
        data = f.read()
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = struct.unpack("<7i", data[:28])
    shared = vocab > 0
    vocab = abs(vocab)
    arr = np.frombuffer(data, dtype="<f4", offset=28)
    head = dim // n_heads
    kv_dim = n_kv * head
    pos = 0

    def take(*shape):
        nonlocal pos
        n = int(np.prod(shape))
        t = torch.from_numpy(arr[pos:pos + n].copy()).to(DT).reshape(*shape)
        pos += n
        return t

    W = {"embed": take(vocab, dim)}
    rms_att = take(n_layers, dim)
    wq = take(n_layers, dim, dim)
    wk = take(n_layers, kv_dim, dim)
    wv = take(n_layers, kv_dim, dim)
    wo = take(n_layers, dim, dim)
    rms_ffn = take(n_layers, dim)
    w1 = take(n_layers, hidden, dim)
    w2 = take(n_layers, dim, hidden)
    w3 = take(n_layers, hidden, dim)
    W["norm"] = take(dim)
    pos += seq_len * head // 2 * 2  # freq_cis_real, freq_cis_imag (unused)
    W["lm_head"] = W["embed"] if shared else take(vocab, dim)
    W["layers"] = [dict(attn_norm=rms_att[l], wq=wq[l], wk=wk[l], wv=wv[l], wo=wo[l], ffn_norm=rms_ffn[l],
                        w_gate=w1[l], w_down=w2[l], w_up=w3[l]) for l in range(n_layers)]
    cfg = dict(hidden_size=dim, intermediate_size=hidden, num_hidden_layers=n_layers, num_attention_heads=n_heads,
               num_key_value_heads=n_kv, vocab_size=vocab, rms_norm_eps=1e-5, rope_theta=10000.0,
               head_dim=head, rope_scaling=None)
    return cfg, W, "interleaved"


def read_safetensors(path):
    """Every tensor as float64."""
    return {name: t.to(torch.float64) for name, t in st.read_safetensors(path).items()}


def read_hf(folder):
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    T = {}
    index = os.path.join(folder, "model.safetensors.index.json")
    if os.path.exists(index):
        with open(index) as f:
            for shard in sorted(set(json.load(f)["weight_map"].values())):
                T.update(read_safetensors(os.path.join(folder, shard)))
    else:
        T.update(read_safetensors(os.path.join(folder, "model.safetensors")))
    gemma = is_gemma(cfg)
    gemma2 = cfg.get("model_type") == "gemma2"
    cfg.setdefault("num_key_value_heads", cfg["num_attention_heads"])
    cfg.setdefault("head_dim", cfg["hidden_size"] // cfg["num_attention_heads"])
    cfg.setdefault("rope_theta", 1000000.0 if gemma and not gemma2 else 10000.0)
    cfg.setdefault("rms_norm_eps", 1e-6)
    if gemma:  # Gemma3TextConfig's and Gemma2Config's defaults
        cfg.setdefault("tie_word_embeddings", True)
        cfg.setdefault("query_pre_attn_scalar", 256)
        cfg.setdefault("sliding_window", 4096)
        cfg.setdefault("rope_local_base_freq", cfg["rope_theta"] if gemma2 else 10000.0)
        if not cfg.get("layer_types"):
            pattern = 2 if gemma2 else cfg.get("sliding_window_pattern", 6)
            cfg["layer_types"] = ["sliding_attention" if (i + 1) % pattern else "full_attention"
                                  for i in range(cfg["num_hidden_layers"])]
        if gemma2:
            cfg.setdefault("attn_logit_softcapping", 50.0)
            cfg.setdefault("final_logit_softcapping", 30.0)
        else:
            assert cfg.get("final_logit_softcapping") is None and cfg.get("attn_logit_softcapping") is None
        T = {k: (v + 1 if k.endswith("norm.weight") else v) for k, v in T.items()}  # Gemma3RMSNorm: x̂ (1 + w)
    if is_phi3(cfg):  # Phi3Config's defaults; its fused qkv_proj / gate_up_proj are split into the parts here
        cfg.setdefault("rms_norm_eps", 1e-5)
        cfg.setdefault("original_max_position_embeddings", cfg.get("max_position_embeddings", 4096))
        H, KV, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
        for l in range(cfg["num_hidden_layers"]):
            p = f"model.layers.{l}."
            q, k, v = T.pop(p + "self_attn.qkv_proj.weight").split([H * d, KV * d, KV * d])
            gate, up = T.pop(p + "mlp.gate_up_proj.weight").chunk(2)
            T.update({p + "self_attn.q_proj.weight": q, p + "self_attn.k_proj.weight": k, p + "self_attn.v_proj.weight": v,
                      p + "mlp.gate_proj.weight": gate, p + "mlp.up_proj.weight": up})
    W = {"embed": T["model.embed_tokens.weight"], "norm": T["model.norm.weight"]}
    W["lm_head"] = T.get("lm_head.weight", W["embed"]) if not cfg.get("tie_word_embeddings") else W["embed"]
    W["layers"] = []
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        if gemma:
            norms = dict(attn_norm=T[p + "input_layernorm.weight"], post_attn_norm=T[p + "post_attention_layernorm.weight"],
                         ffn_norm=T[p + "pre_feedforward_layernorm.weight"],
                         post_ffn_norm=T[p + "post_feedforward_layernorm.weight"])
        else:
            norms = dict(attn_norm=T[p + "input_layernorm.weight"], ffn_norm=T[p + "post_attention_layernorm.weight"])
        L = dict(**norms, wq=T[p + "self_attn.q_proj.weight"], wk=T[p + "self_attn.k_proj.weight"],
                 wv=T[p + "self_attn.v_proj.weight"], wo=T[p + "self_attn.o_proj.weight"],
                 w_gate=T[p + "mlp.gate_proj.weight"], w_up=T[p + "mlp.up_proj.weight"],
                 w_down=T[p + "mlp.down_proj.weight"])
        for b in ("q", "k", "v"):
            key = p + f"self_attn.{b}_proj.bias"
            if key in T:
                L["b" + b] = T[key]
        for n in ("q", "k"):  # Qwen3's per-head norms
            key = p + f"self_attn.{n}_norm.weight"
            if key in T:
                L[n + "_norm"] = T[key]
        W["layers"].append(L)
    return cfg, W, "rotate_half"


def load(path):
    return read_hf(path) if os.path.isdir(path) else read_llama2c(path)


# ----------------------------------------------------------------------------- the model

def rotary_dim(cfg):
    """Phi-4-mini's partial rotary embedding: int(head_dim * partial_rotary_factor) values of each head rotate."""
    return int(cfg["head_dim"] * cfg.get("partial_rotary_factor", 1.0))


def inv_freq(cfg, seq_len=0):
    d = rotary_dim(cfg)
    f = [cfg["rope_theta"] ** (-(2 * i) / d) for i in range(d // 2)]
    s = cfg.get("rope_scaling")
    if not s:
        return torch.tensor(f, dtype=DT)
    kind = s.get("rope_type", s.get("type"))
    if kind == "longrope":  # Phi-3: the long factors once the positions reach past the original context
        ext = s["long_factor"] if seq_len > cfg["original_max_position_embeddings"] else s["short_factor"]
        return torch.tensor([x / e for x, e in zip(f, ext)], dtype=DT)
    factor = s["factor"]
    if kind == "linear":
        return torch.tensor([x / factor for x in f], dtype=DT)
    assert kind == "llama3", kind
    old = s["original_max_position_embeddings"]
    lo, hi = s["low_freq_factor"], s["high_freq_factor"]
    out = []
    for x in f:
        wavelen = 2 * math.pi / x
        if wavelen < old / hi:
            out.append(x)
        elif wavelen > old / lo:
            out.append(x / factor)
        else:
            smooth = (old / wavelen - lo) / (hi - lo)
            out.append((1 - smooth) * x / factor + smooth * x)
    return torch.tensor(out, dtype=DT)


def rope(x, cfg, layout):
    """x [B, T, heads, d] at positions 0..T-1."""
    T, d = x.shape[1], x.shape[3]
    if rotary_dim(cfg) < d:  # the values past the rotary dimension pass unchanged
        rd = rotary_dim(cfg)
        return torch.cat([rope(x[..., :rd], cfg, layout), x[..., rd:]], dim=-1)
    ang = torch.arange(T, dtype=DT)[:, None] * inv_freq(cfg, T)[None, :]  # [T, d/2]
    c, s = torch.cos(ang)[None, :, None, :], torch.sin(ang)[None, :, None, :]
    scaling = cfg.get("rope_scaling") or {}
    if scaling.get("type", scaling.get("rope_type")) == "longrope":  # transformers: cos and sin times the attention factor
        factor = cfg["max_position_embeddings"] / cfg["original_max_position_embeddings"]
        a = scaling.get("attention_factor") or (
            1.0 if factor <= 1 else math.sqrt(1 + math.log(factor) / math.log(cfg["original_max_position_embeddings"])))
        c, s = c * a, s * a
    if layout == "rotate_half":
        x1, x2 = x[..., : d // 2], x[..., d // 2:]
        return torch.cat([x1 * c - x2 * s, x2 * c + x1 * s], dim=-1)
    x1, x2 = x[..., 0::2], x[..., 1::2]  # interleaved pairs (2i, 2i+1), as llama2.c's run.c
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * c - x2 * s
    out[..., 1::2] = x2 * c + x1 * s
    return out


def rmsnorm(x, w, eps):
    return x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps) * w


def plain_linear(layer, name, x, weight, bias):
    return x @ weight.T + (bias if bias is not None else 0)


def is_phi3(cfg):
    return cfg.get("model_type") == "phi3"


def is_gemma(cfg):
    return cfg.get("model_type") in ("gemma3_text", "gemma2")


def softcap(x, cap):
    """Gemma 2's soft-capping cap * tanh(x / cap); no cap (None or 0) leaves x as it is."""
    return cap * torch.tanh(x / cap) if cap else x


def embed_scale(cfg, dtype):
    """Gemma3TextScaledWordEmbedding: sqrt(hidden_size), cast to the embedding's dtype."""
    return torch.tensor(cfg["hidden_size"] ** 0.5, dtype=dtype) if is_gemma(cfg) else 1.0


def local_rope_cfg(cfg):
    """Gemma 3's sliding_attention layers: their own RoPE base, no scaling (Gemma 2's: the one base)."""
    if cfg.get("model_type") == "gemma2":
        return cfg
    return dict(cfg, rope_theta=cfg["rope_local_base_freq"], rope_scaling=None)


def forward(cfg, W, layout, tokens, linear=plain_linear, embed=None, head=None):
    """Logits [B, T, vocab]. linear(layer, name, x, weight, bias), embed(tokens) and head(h) let a caller
    (the LoRA reference) replace any projection; by default they are the plain model's."""
    B, T = tokens.shape
    H, KV, d = cfg["num_attention_heads"], cfg["num_key_value_heads"], cfg["head_dim"]
    eps = cfg["rms_norm_eps"]
    gemma = is_gemma(cfg)
    x = embed(tokens) if embed else W["embed"][tokens] * embed_scale(cfg, W["embed"].dtype)
    mask = torch.full((T, T), float("-inf"), dtype=DT).triu(1)
    i, j = torch.arange(T)[:, None], torch.arange(T)[None, :]
    if gemma or (is_phi3(cfg) and cfg.get("sliding_window")):
        # transformers' sliding_window_overlay: key j is seen by query i when i - j < sliding_window
        local_mask = mask.masked_fill(i - j >= cfg["sliding_window"], float("-inf"))
    score_scale = cfg["query_pre_attn_scalar"] ** -0.5 if gemma else 1 / math.sqrt(d)
    no_rope = cfg.get("no_rope_layers")  # SmolLM3: 0 where a layer attends without RoPE
    for l, L in enumerate(W["layers"]):
        local = gemma and cfg["layer_types"][l] == "sliding_attention"
        rope_cfg = local_rope_cfg(cfg) if local else cfg
        local = local or (is_phi3(cfg) and bool(cfg.get("sliding_window")))  # (Phi-3: every layer, one RoPE)
        h = rmsnorm(x, L["attn_norm"], eps)
        if is_phi3(cfg):  # one qkv_proj, as Phi3Attention computes it
            qkv = linear(l, "self_attn.qkv_proj", h, torch.cat([L["wq"], L["wk"], L["wv"]]), None)
            q, k, v = qkv.split([H * d, KV * d, KV * d], dim=-1)
            q, k = q.reshape(B, T, H, d), k.reshape(B, T, KV, d)
        else:
            q = linear(l, "self_attn.q_proj", h, L["wq"], L.get("bq")).view(B, T, H, d)
            k = linear(l, "self_attn.k_proj", h, L["wk"], L.get("bk")).view(B, T, KV, d)
            v = linear(l, "self_attn.v_proj", h, L["wv"], L.get("bv"))
        if "q_norm" in L:  # Qwen3: RMSNorm over each head's d values
            q, k = rmsnorm(q, L["q_norm"], eps), rmsnorm(k, L["k_norm"], eps)
        if not no_rope or no_rope[l]:
            q, k = rope(q, rope_cfg, layout), rope(k, rope_cfg, layout)
        q = q.transpose(1, 2)
        k = k.transpose(1, 2).repeat_interleave(H // KV, dim=1)
        v = v.reshape(B, T, KV, d).transpose(1, 2).repeat_interleave(H // KV, dim=1)
        scores = softcap(q @ k.transpose(-1, -2) * score_scale, cfg.get("attn_logit_softcapping"))
        att = torch.softmax(scores + (local_mask if local else mask), dim=-1) @ v
        o = linear(l, "self_attn.o_proj", att.transpose(1, 2).reshape(B, T, H * d), L["wo"], None)
        x = x + (rmsnorm(o, L["post_attn_norm"], eps) if gemma else o)
        h = rmsnorm(x, L["ffn_norm"], eps)
        if is_phi3(cfg):  # one gate_up_proj, gate first, as Phi3MLP chunks it
            gate, up = linear(l, "mlp.gate_up_proj", h, torch.cat([L["w_gate"], L["w_up"]]), None).chunk(2, dim=-1)
            act = torch.nn.functional.silu(gate) * up
        else:
            gate = linear(l, "mlp.gate_proj", h, L["w_gate"], None)
            act = torch.nn.functional.gelu(gate, approximate="tanh") if gemma else torch.nn.functional.silu(gate)
            act = act * linear(l, "mlp.up_proj", h, L["w_up"], None)
        down = linear(l, "mlp.down_proj", act, L["w_down"], None)
        x = x + (rmsnorm(down, L["post_ffn_norm"], eps) if gemma else down)
    h = rmsnorm(x, W["norm"], eps)
    return softcap(head(h) if head else h @ W["lm_head"].T, cfg.get("final_logit_softcapping"))


def interleaved_to_rotate_half(w, n_heads):
    """Rows of a q/k projection from llama2.c/GGUF order (pairs 2i, 2i+1) to Hugging Face order (i, i+d/2)."""
    rows = w.shape[0]
    d = rows // n_heads
    return w.reshape(n_heads, d // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


# ----------------------------------------------------------------------------- random HF folder

def write_safetensors(path, tensors):
    """Every tensor as F32."""
    st.write_safetensors(path, {name: t.to(torch.float32) for name, t in tensors.items()})


FAMILIES = {
    # q wider than the hidden size (head_dim 24 x 4 heads = 96 > 64), as Qwen3-0.6B's 16 x 128 > 1024
    "qwen3": {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_size": 64, "intermediate_size": 96,
              "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 24,
              "vocab_size": 300, "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
              "rope_scaling": None, "tie_word_embeddings": False, "attention_bias": False, "use_sliding_window": False,
              "torch_dtype": "float32", "bos_token_id": 1, "eos_token_id": 2},
    # five layers: the 4th (index 3) attends without RoPE; tied embeddings as SmolLM3-3B
    "smollm3": {"architectures": ["SmolLM3ForCausalLM"], "model_type": "smollm3", "hidden_size": 64,
                "intermediate_size": 96, "num_hidden_layers": 5, "num_attention_heads": 4, "num_key_value_heads": 2,
                "vocab_size": 300, "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 5000000.0,
                "rope_scaling": None, "tie_word_embeddings": True, "attention_bias": False,
                "no_rope_layers": [1, 1, 1, 0, 1], "no_rope_layer_interval": 4, "use_sliding_window": False,
                "torch_dtype": "float32", "bos_token_id": 1, "eos_token_id": 2},
    # Gemma 3 as google/gemma-3-1b's block (tied, GQA, q/k norms, sandwich norms, GeGLU), with q wider than the
    # hidden size, two local layers and a global one (linear RoPE scaling as the 4B+ have, on the global layer only),
    # and query_pre_attn_scalar 32 != head_dim 24 (as the 27B's 168 != 128). The local layers' window of 10 is
    # shorter than the tests' sequences (24 and 64 positions), so it cuts in.
    "gemma3": {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "hidden_size": 64,
               "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
               "head_dim": 24, "vocab_size": 300, "max_position_embeddings": 512, "rms_norm_eps": 1e-6,
               "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
               "rope_scaling": {"rope_type": "linear", "factor": 4.0}, "query_pre_attn_scalar": 32,
               "sliding_window": 10, "layer_types": ["sliding_attention", "full_attention", "sliding_attention"],
               "hidden_activation": "gelu_pytorch_tanh", "final_logit_softcapping": None,
               "attn_logit_softcapping": None, "tie_word_embeddings": True, "attention_bias": False,
               "torch_dtype": "float32", "bos_token_id": 2, "eos_token_id": 1},
    # Gemma 2 as google/gemma-2-2b's block (tied, GQA, sandwich norms, GeGLU, no q/k norms), four layers alternating
    # local and global from the first, query_pre_attn_scalar 32 != head_dim 24, a window of 10 shorter than the
    # tests' sequences, and caps small enough (5 on the scores, 3 on the logits) that tanh bends them.
    "gemma2": {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "hidden_size": 64,
               "intermediate_size": 96, "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2,
               "head_dim": 24, "vocab_size": 300, "max_position_embeddings": 512, "rms_norm_eps": 1e-6,
               "rope_theta": 10000.0, "query_pre_attn_scalar": 32, "sliding_window": 10,
               "hidden_activation": "gelu_pytorch_tanh", "final_logit_softcapping": 3.0,
               "attn_logit_softcapping": 5.0, "tie_word_embeddings": True, "attention_bias": False,
               "torch_dtype": "float32", "bos_token_id": 2, "eos_token_id": 1},
    # Phi-3.5-mini's block (fused qkv_proj and gate_up_proj, LongRoPE, a window over every layer) with GQA, a window
    # of 10 shorter than the tests' sequences, and an original context of 32: the logits test (64 positions) runs on
    # the long factors, the training test (24) on the short ones, both with the attention factor of 128 / 32.
    "phi3": {"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_size": 64, "intermediate_size": 96,
             "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300,
             "max_position_embeddings": 128, "original_max_position_embeddings": 32, "rms_norm_eps": 1e-5,
             "rope_theta": 10000.0,
             "rope_scaling": {"type": "longrope",
                              "short_factor": [1.0 + 0.05 * i for i in range(8)],
                              "long_factor": [1.0 + 0.9 * i for i in range(8)]},
             "sliding_window": 10, "hidden_act": "silu", "tie_word_embeddings": False, "attention_bias": False,
             "torch_dtype": "float32", "bos_token_id": 1, "eos_token_id": 2},
    # Phi-4-mini's block: Phi-3's with RoPE on 3/4 of each head (12 of 16 values here, 96 of 128 there), tied
    # embeddings, LongRoPE factors for the rotary dimension, no window
    "phi4": {"architectures": ["Phi3ForCausalLM"], "model_type": "phi3", "hidden_size": 64, "intermediate_size": 96,
             "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 300,
             "max_position_embeddings": 128, "original_max_position_embeddings": 32, "rms_norm_eps": 1e-5,
             "rope_theta": 10000.0, "partial_rotary_factor": 0.75,
             "rope_scaling": {"type": "longrope",
                              "short_factor": [1.0 + 0.05 * i for i in range(6)],
                              "long_factor": [1.0 + 0.9 * i for i in range(6)]},
             "sliding_window": None, "hidden_act": "silu", "tie_word_embeddings": True, "attention_bias": False,
             "torch_dtype": "float32", "bos_token_id": 1, "eos_token_id": 2},
}


def make_family(out, seed, family):
    """A random-weight model of one of FAMILIES, head norms around 1 (so they matter, unlike all ones)."""
    g = torch.Generator().manual_seed(seed)
    cfg = dict(FAMILIES[family])
    h, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    d = cfg.get("head_dim", h // cfg["num_attention_heads"])
    q, kv = cfg["num_attention_heads"] * d, cfg["num_key_value_heads"] * d

    def r(*shape, mean=0.0, std=0.1):
        return torch.randn(*shape, generator=g) * std + mean

    gemma = family in ("gemma2", "gemma3")
    norm_mean = 0.0 if gemma else 1.0  # (Gemma's checkpoints hold w of the factor 1 + w)
    T = {"model.embed_tokens.weight": r(v, h, std=0.5 / math.sqrt(h) if gemma else 0.5),
         "model.norm.weight": r(h, mean=norm_mean)}
    if not cfg["tie_word_embeddings"]:
        T["lm_head.weight"] = r(v, h)
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        if gemma:
            T.update({p + "pre_feedforward_layernorm.weight": r(h, mean=norm_mean, std=0.3),
                      p + "post_feedforward_layernorm.weight": r(h, mean=norm_mean, std=0.3)})
        T.update({p + "input_layernorm.weight": r(h, mean=norm_mean),
                  p + "post_attention_layernorm.weight": r(h, mean=norm_mean, std=0.3 if gemma else 0.1),
                  p + "self_attn.q_proj.weight": r(q, h), p + "self_attn.k_proj.weight": r(kv, h),
                  p + "self_attn.v_proj.weight": r(kv, h), p + "self_attn.o_proj.weight": r(h, q),
                  p + "mlp.gate_proj.weight": r(f, h), p + "mlp.up_proj.weight": r(f, h),
                  p + "mlp.down_proj.weight": r(h, f)})
        if family in ("qwen3", "gemma3"):
            T[p + "self_attn.q_norm.weight"] = r(d, mean=norm_mean, std=0.3)
            T[p + "self_attn.k_norm.weight"] = r(d, mean=norm_mean, std=0.3)
        if family in ("phi3", "phi4"):  # the checkpoints' fused matrices
            T[p + "self_attn.qkv_proj.weight"] = torch.cat([T.pop(p + f"self_attn.{n}_proj.weight") for n in "qkv"])
            T[p + "mlp.gate_up_proj.weight"] = torch.cat([T.pop(p + f"mlp.{n}_proj.weight") for n in ("gate", "up")])
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
    write_safetensors(os.path.join(out, "model.safetensors"), T)


def make_hf(out, seed):
    """GQA, q/k/v biases, untied lm_head, rope_theta 1e6 and llama3 rope scaling. head_dim 16 puts one
    rope frequency in each llama3 band (kept, blended, divided) for original_max_position_embeddings 64."""
    g = torch.Generator().manual_seed(seed)
    cfg = {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_size": 64,
           "intermediate_size": 96, "num_hidden_layers": 3, "num_attention_heads": 4, "num_key_value_heads": 2,
           "vocab_size": 300, "max_position_embeddings": 512, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
           "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                            "original_max_position_embeddings": 64},
           "tie_word_embeddings": False, "attention_bias": True, "torch_dtype": "float32",
           "bos_token_id": 1, "eos_token_id": 2}
    h, f, v = cfg["hidden_size"], cfg["intermediate_size"], cfg["vocab_size"]
    kv = cfg["num_key_value_heads"] * h // cfg["num_attention_heads"]

    def r(*shape, mean=0.0, std=0.1):
        return torch.randn(*shape, generator=g) * std + mean

    T = {"model.embed_tokens.weight": r(v, h, std=0.5), "model.norm.weight": r(h, mean=1.0), "lm_head.weight": r(v, h)}
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        T.update({p + "input_layernorm.weight": r(h, mean=1.0), p + "post_attention_layernorm.weight": r(h, mean=1.0),
                  p + "self_attn.q_proj.weight": r(h, h), p + "self_attn.q_proj.bias": r(h),
                  p + "self_attn.k_proj.weight": r(kv, h), p + "self_attn.k_proj.bias": r(kv),
                  p + "self_attn.v_proj.weight": r(kv, h), p + "self_attn.v_proj.bias": r(kv),
                  p + "self_attn.o_proj.weight": r(h, h), p + "mlp.gate_proj.weight": r(f, h),
                  p + "mlp.up_proj.weight": r(f, h), p + "mlp.down_proj.weight": r(h, f)})
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "config.json"), "w") as fh:
        json.dump(cfg, fh, indent=2)
    write_safetensors(os.path.join(out, "model.safetensors"), T)


# ----------------------------------------------------------------------------- commands

def windows_nll(cfg, W, layout, ids, ctx):
    """Mean NLL over non-overlapping windows of ctx tokens; each window predicts its tokens 1..n-1."""
    total, count = 0.0, 0
    for start in range(0, len(ids), ctx):
        w = ids[start:start + ctx]
        if len(w) < 2:
            continue
        logits = forward(cfg, W, layout, torch.tensor([w]))[0]
        logp = torch.log_softmax(logits[:-1], dim=-1)
        tgt = torch.tensor(w[1:])
        total += float(-logp[torch.arange(len(w) - 1), tgt].sum())
        count += len(w) - 1
    return total, count


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["logits", "nll", "make-hf"])
    ap.add_argument("--model")
    ap.add_argument("--tokens", help="sequences of equal length: '1 2 3,4 5 6'")
    ap.add_argument("--ids-file")
    ap.add_argument("--ctx", type=int, default=128)
    ap.add_argument("--out")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--family", choices=sorted(FAMILIES), help="make-hf: a model of this family instead")
    a = ap.parse_args()
    if a.command == "make-hf":
        if a.family:
            make_family(a.out, a.seed, a.family)
        else:
            make_hf(a.out, a.seed)
        return
    cfg, W, layout = load(a.model)
    if a.command == "logits":
        toks = torch.tensor([[int(t) for t in s.split()] for s in a.tokens.split(",")])
        logits = forward(cfg, W, layout, toks)
        logits.to(torch.float32).numpy().astype("<f4").tofile(a.out)
    else:
        with open(a.ids_file) as fh:
            ids = [int(t) for t in fh.read().split()]
        total, count = windows_nll(cfg, W, layout, ids, a.ctx)
        print(json.dumps({"tokens": count, "nll": total / count, "perplexity": math.exp(total / count)}))


if __name__ == "__main__":
    sys.exit(main())
