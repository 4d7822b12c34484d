#!/usr/bin/env python3
"""PEFT adapter fixtures and their PyTorch (float64) oracle, independent of the C++ code.

  peft_fixture.py make   --model M --out DIR --variant V [--seed S] [--adapter-name NAME] [--dtype f32|f16]
      Writes a LoRA adapter for base model M exactly as PEFT's save_pretrained lays it out for a Llama
      causal LM (no PEFT package needed): adapter_config.json with PEFT's keys, adapter_model.safetensors
      written the way the safetensors library writes it (metadata {"format": "pt"} first, tensors sorted
      by name, header padded with spaces to 8 bytes), with PEFT's key names:
        ...<module>.lora_A.weight / .lora_B.weight, .lora_magnitude_vector (DoRA),
        ...embed_tokens.lora_embedding_A / _B and ...embed_tokens.base_layer.weight (save_embedding_layers),
        ...lm_head.weight (modules_to_save), ...<module>.base_layer.bias or .bias (bias="all"),
      and non-default adapter names in a sub-folder. Factors are random (B nonzero) so the adapter matters.
      Variants: lora (q,k,v,o,gate,up,down + embed_tokens LoRA, rank/alpha patterns, lm_head in
      modules_to_save), dora, rslora, bias (bias="all"; needs a model with q/k/v biases), plain (what
      llama.cpp's converter takes: linear + embedding LoRA only).

  peft_fixture.py logits --model M --adapter DIR[:SCALE] [--adapter ...] --tokens "1 5 9,1 7 3" --out F
      Logits [B, T, vocab] (f32) of M with the adapters applied, computed here from the files with PEFT's
      semantics; several adapters add their changes to the base (see src/adapters/adapter_set.h).

  peft_fixture.py gguf-check --model M --adapter DIR --gguf FILE
      Checks a GGUF adapter against what llama.cpp's convert_lora_to_gguf.py makes of DIR: metadata,
      tensor names, ne, the token_embd lora_a transposed, q/k lora_b rows permuted as convert_hf_to_gguf.py
      permutes q_proj/k_proj. Prints a JSON summary; exits 1 on the first difference.
"""
import argparse
import json
import math
import os
import re
import struct
import sys

import numpy as np
import torch

import llama_reference as ref

DT = ref.DT
PREFIX = "base_model.model."
SITES = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj",
         "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"]
WEIGHT_OF = {"self_attn.q_proj": "wq", "self_attn.k_proj": "wk", "self_attn.v_proj": "wv", "self_attn.o_proj": "wo",
             "mlp.gate_proj": "w_gate", "mlp.up_proj": "w_up", "mlp.down_proj": "w_down"}
PHI3_SITES = ["self_attn.qkv_proj", "self_attn.o_proj", "mlp.gate_up_proj", "mlp.down_proj"]
WEIGHT_OF.update({"self_attn.qkv_proj": "wqkv", "mlp.gate_up_proj": "w_gate_up"})
BIAS_OF = {"self_attn.q_proj": "bq", "self_attn.k_proj": "bk", "self_attn.v_proj": "bv"}
GGUF_OF = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
           "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
           "mlp.down_proj": "ffn_down"}


def load_hf_order(path):
    """The base model as PEFT sees it: a Hugging Face model, q/k rows in rotate_half order."""
    cfg, W, layout = ref.load(path)
    if layout == "interleaved":
        for L in W["layers"]:
            L["wq"] = ref.interleaved_to_rotate_half(L["wq"], cfg["num_attention_heads"])
            L["wk"] = ref.interleaved_to_rotate_half(L["wk"], cfg["num_key_value_heads"])
    return cfg, W


def pattern_value(patterns, path, default):
    # PEFT: the first key that is the module path or matches its end after a dot
    for key, value in (patterns or {}).items():
        if re.match(r"(.*\.)?" + key + r"$", path):
            return value
    return default


def module_scaling(acfg, path, r):
    alpha = pattern_value(acfg.get("alpha_pattern"), path, acfg["lora_alpha"])
    return alpha / (math.sqrt(r) if acfg.get("use_rslora") else r)


# ----------------------------------------------------------------------------- writing, as PEFT does

def write_safetensors_like_library(path, tensors, dtype):
    np_type, st_type = {"f32": ("<f4", "F32"), "f16": ("<f2", "F16")}[dtype]
    header = {"__metadata__": {"format": "pt"}}
    blobs, off = [], 0
    for name in sorted(tensors):
        b = tensors[name].detach().to(torch.float64).contiguous().numpy().astype(np_type).tobytes()
        header[name] = {"dtype": st_type, "shape": list(tensors[name].shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def peft_config(**kw):
    c = {"alpha_pattern": {}, "auto_mapping": None, "base_model_name_or_path": None, "bias": "none",
         "fan_in_fan_out": False, "inference_mode": True, "init_lora_weights": True, "layer_replication": None,
         "layers_pattern": None, "layers_to_transform": None, "loftq_config": {}, "lora_alpha": 8,
         "lora_dropout": 0.0, "megatron_config": None, "megatron_core": "megatron.core", "modules_to_save": None,
         "peft_type": "LORA", "r": 4, "rank_pattern": {}, "revision": None, "target_modules": [],
         "task_type": "CAUSAL_LM", "use_dora": False, "use_rslora": False}
    c.update(kw)
    return c


def make(a):
    cfg, W = load_hf_order(a.model)
    g = torch.Generator().manual_seed(a.seed)

    def rnd(*shape, std):
        return torch.randn(*shape, generator=g, dtype=DT) * std

    v = a.variant
    phi3 = ref.is_phi3(cfg)  # PEFT adapts Phi-3's fused qkv_proj and gate_up_proj as one module each
    sites = PHI3_SITES if phi3 else SITES
    linear = [site.split(".")[1] for site in sites]
    if phi3:
        for L in W["layers"]:
            L["wqkv"], L["w_gate_up"] = torch.cat([L["wq"], L["wk"], L["wv"]]), torch.cat([L["w_gate"], L["w_up"]])
    if v == "lora":
        acfg = peft_config(r=4, lora_alpha=8, target_modules=linear + ["embed_tokens"], rank_pattern={"down_proj": 2},
                           alpha_pattern={"qkv_proj" if phi3 else "v_proj": 12}, modules_to_save=["lm_head"])
    elif v == "plain":
        acfg = peft_config(r=4, lora_alpha=8, target_modules=linear + ["embed_tokens"], rank_pattern={"down_proj": 2})
    elif v == "dora":
        acfg = peft_config(r=4, lora_alpha=8, target_modules=linear, use_dora=True)
    elif v == "rslora":
        acfg = peft_config(r=4, lora_alpha=4, target_modules=["q_proj", "v_proj", "up_proj"], use_rslora=True)
    elif v == "bias":
        acfg = peft_config(r=2, lora_alpha=4, target_modules=["q_proj", "v_proj", "o_proj"], bias="all")
    else:
        raise SystemExit(f"unknown variant {v}")
    acfg["base_model_name_or_path"] = a.model
    targets = set(acfg["target_modules"])

    T = {}
    for l, L in enumerate(W["layers"]):
        for site in sites:
            path = f"model.layers.{l}.{site}"
            key = PREFIX + path
            w = L[WEIGHT_OF[site]]
            adapted = site.split(".")[1] in targets
            if adapted:
                r = pattern_value(acfg["rank_pattern"], path, acfg["r"])
                A = rnd(r, w.shape[1], std=1.0 / math.sqrt(w.shape[1]))
                B = rnd(w.shape[0], r, std=0.05)
                T[key + ".lora_A.weight"], T[key + ".lora_B.weight"] = A, B
                if acfg["use_dora"]:
                    s = module_scaling(acfg, path, r)
                    norm = (w + s * B @ A).norm(dim=1)
                    T[key + ".lora_magnitude_vector"] = norm * (1 + rnd(w.shape[0], std=0.1))
            if acfg["bias"] == "all" and BIAS_OF.get(site) in L:
                # PEFT's LoRA layer wraps the Linear as base_layer; a module without LoRA keeps its own name
                T[key + (".base_layer.bias" if adapted else ".bias")] = L[BIAS_OF[site]] + rnd(w.shape[0], std=0.05)
    if "embed_tokens" in targets:
        key = PREFIX + "model.embed_tokens"
        r = pattern_value(acfg["rank_pattern"], "model.embed_tokens", acfg["r"])
        T[key + ".lora_embedding_A"] = rnd(r, cfg["vocab_size"], std=0.5)
        T[key + ".lora_embedding_B"] = rnd(cfg["hidden_size"], r, std=0.05)
        T[key + ".base_layer.weight"] = W["embed"].clone()  # save_embedding_layers ("auto": embedding targeted)
    for m in acfg["modules_to_save"] or []:
        base = W["lm_head"] if m == "lm_head" else W["embed"]
        name = "lm_head" if m == "lm_head" else "model.embed_tokens"
        T[PREFIX + name + ".weight"] = base + rnd(*base.shape, std=0.02)

    out = os.path.join(a.out, a.adapter_name) if a.adapter_name != "default" else a.out
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "adapter_config.json"), "w") as f:
        json.dump(acfg, f, indent=2, sort_keys=True)
    write_safetensors_like_library(os.path.join(out, "adapter_model.safetensors"), T, a.dtype)


# ----------------------------------------------------------------------------- the oracle

def read_adapter(spec):
    path, scale = spec, 1.0
    m = re.match(r"(.*):([-+0-9.eE]+)$", spec)
    if m:
        path, scale = m.group(1), float(m.group(2))
    with open(os.path.join(path, "adapter_config.json")) as f:
        acfg = json.load(f)
    return acfg, ref.read_safetensors(os.path.join(path, "adapter_model.safetensors")), scale


def adapted_logits(cfg, W, adapters, tokens):
    def linear(layer, site, x, weight, bias):
        path = f"model.layers.{layer}.{site}"
        key = PREFIX + path
        out = x @ weight.T + (bias if bias is not None else 0)
        for acfg, T, lam in adapters:
            for bk in (key + ".base_layer.bias", key + ".bias"):
                if bk in T:
                    out = out + lam * (T[bk] - bias)
            if key + ".lora_A.weight" not in T:
                continue
            A, B = T[key + ".lora_A.weight"], T[key + ".lora_B.weight"]
            s = lam * module_scaling(acfg, path, A.shape[0])
            if key + ".lora_magnitude_vector" in T:
                c = T[key + ".lora_magnitude_vector"] / (weight + s * B @ A).norm(dim=1)
                out = out + (c - 1) * (x @ weight.T) + c * ((x @ A.T) @ B.T) * s
            else:
                out = out + (x @ A.T) @ B.T * s
        return out

    def whole(module):
        for acfg, T, lam in adapters:
            for k in (PREFIX + module + ".weight", PREFIX + module + ".base_layer.weight"):
                if k in T:
                    return T[k]
        return None

    def embed(tok):
        table = whole("model.embed_tokens")
        x = (W["embed"] if table is None else table)[tok]
        key = PREFIX + "model.embed_tokens"
        for acfg, T, lam in adapters:
            if key + ".lora_embedding_A" in T:
                A, B = T[key + ".lora_embedding_A"], T[key + ".lora_embedding_B"]
                x = x + (A.T[tok] @ B.T) * lam * module_scaling(acfg, "model.embed_tokens", A.shape[0])
        return x

    def head(h):
        weight = whole("lm_head")
        logits = h @ (W["lm_head"] if weight is None else weight).T
        for acfg, T, lam in adapters:
            if PREFIX + "lm_head.lora_A.weight" in T:
                A, B = T[PREFIX + "lm_head.lora_A.weight"], T[PREFIX + "lm_head.lora_B.weight"]
                logits = logits + (h @ A.T) @ B.T * lam * module_scaling(acfg, "lm_head", A.shape[0])
        return logits

    return ref.forward(cfg, W, "rotate_half", tokens, linear=linear, embed=embed, head=head)


def logits(a):
    cfg, W = load_hf_order(a.model)
    adapters = [read_adapter(s) for s in a.adapter]
    tokens = torch.tensor([[int(t) for t in s.split()] for s in a.tokens.split(",")])
    adapted_logits(cfg, W, adapters, tokens).to(torch.float32).numpy().astype("<f4").tofile(a.out)


# ----------------------------------------------------------------------------- llama.cpp's conversion

def read_gguf(path):
    data = open(path, "rb").read()
    o = [4]

    def rd(fmt):
        v = struct.unpack_from(fmt, data, o[0])[0]
        o[0] += struct.calcsize(fmt)
        return v

    def rs():
        n = rd("<Q")
        s = data[o[0]:o[0] + n].decode()
        o[0] += n
        return s

    scalar = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}

    def rv(t):
        if t == 8:
            return rs()
        if t == 9:
            et, n = rd("<I"), rd("<Q")
            return [rv(et) for _ in range(n)]
        return rd(scalar[t])

    assert data[:4] == b"GGUF"
    version, n_tensors, n_kv = rd("<I"), rd("<Q"), rd("<Q")
    kv = {}
    for _ in range(n_kv):
        k = rs()
        kv[k] = rv(rd("<I"))
    infos = []
    for _ in range(n_tensors):
        name = rs()
        ne = [rd("<Q") for _ in range(rd("<I"))]
        infos.append((name, ne, rd("<I"), rd("<Q")))
    align = kv.get("general.alignment", 32)
    start = (o[0] + align - 1) // align * align
    tensors = {}
    for name, ne, typ, off in infos:
        assert typ == 0, f"{name}: expected F32"
        n = int(np.prod(ne))
        a = np.frombuffer(data, dtype="<f4", count=n, offset=start + off)
        tensors[name] = (ne, torch.from_numpy(a.astype(np.float64).reshape(list(reversed(ne)))))
    return kv, tensors


def permute(w, n_head, n_head_kv=None):
    # convert_hf_to_gguf.py LlamaModel.permute: Hugging Face q/k rows to GGUF's interleaved order
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def gguf_check(a):
    cfg, _ = load_hf_order(a.model)
    acfg, T, _ = read_adapter(a.adapter)
    kv, G = read_gguf(a.gguf)

    def fail(msg):
        print(json.dumps({"ok": False, "error": msg}))
        sys.exit(1)

    for k, want in (("general.type", "adapter"), ("adapter.type", "lora"), ("general.architecture", "llama")):
        if kv.get(k) != want:
            fail(f"{k} = {kv.get(k)!r}, expected {want!r}")
    alpha = kv.get("adapter.lora.alpha")
    if alpha is None or abs(alpha - acfg["lora_alpha"]) > 1e-6:
        fail(f"adapter.lora.alpha = {alpha}, expected {acfg['lora_alpha']}")
    expected = {}
    for key, t in T.items():
        if ".base_layer.weight" in key:
            continue  # the converter skips PEFT's copies of the base embedding
        m = re.match(r"base_model\.model\.model\.layers\.(\d+)\.(\w+\.\w+)\.lora_([AB])\.weight$", key)
        if m:
            site, l = m.group(2), int(m.group(1))
            base = f"blk.{l}.{GGUF_OF[site]}.weight"
            if m.group(3) == "B" and site == "self_attn.q_proj":
                t = permute(t, cfg["num_attention_heads"], cfg["num_attention_heads"])
            if m.group(3) == "B" and site == "self_attn.k_proj":
                t = permute(t, cfg["num_attention_heads"], cfg["num_key_value_heads"])
            expected[base + ".lora_" + m.group(3).lower()] = t
            continue
        m = re.match(r"base_model\.model\.model\.embed_tokens\.lora_embedding_([AB])$", key)
        if m:
            expected["token_embd.weight.lora_" + m.group(1).lower()] = t.T if m.group(1) == "A" else t
            continue
        fail(f"the converter would refuse tensor {key}")
    if set(expected) != set(G):
        fail(f"tensor names differ: missing {sorted(set(expected) - set(G))[:3]}, extra {sorted(set(G) - set(expected))[:3]}")
    for name, t in expected.items():
        ne, got = G[name]
        if ne != list(reversed(t.shape)):
            fail(f"{name}: ne {ne}, expected {list(reversed(t.shape))}")
        if not torch.equal(got, t.to(torch.float32).to(DT)):
            fail(f"{name}: values differ (max {float((got - t).abs().max())})")
    print(json.dumps({"ok": True, "tensors": len(expected), "alpha": alpha}))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("command", choices=["make", "logits", "gguf-check"])
    ap.add_argument("--model", required=True)
    ap.add_argument("--out")
    ap.add_argument("--variant", default="lora")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--adapter-name", default="default")
    ap.add_argument("--dtype", default="f32", choices=["f32", "f16"])
    ap.add_argument("--adapter", action="append", default=[])
    ap.add_argument("--tokens")
    ap.add_argument("--gguf")
    a = ap.parse_args()
    if a.command == "make":
        make(a)
    elif a.command == "logits":
        logits(a)
    else:
        a.adapter = a.adapter[0]
        gguf_check(a)


if __name__ == "__main__":
    main()
