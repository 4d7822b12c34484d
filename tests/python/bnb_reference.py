#!/usr/bin/env python3
"""A straightforward PyTorch reference of bitsandbytes' weight quantization, the oracle for the C++ tests.

Written from bitsandbytes' algorithm (quantize_4bit / dequantize_4bit with the CUDA kernels' rounding,
create_dynamic_map, quantize_blockwise for the nested absmax, int8_vectorwise_quant, QuantState.as_dict
with packed=True), not from the C++ code:

  bnb_reference.py quantize --in IN.safetensors --out OUT.safetensors
      every float tensor X of IN, quantized every way (nf4, nf4_dq, fp4, fp4_dq, and int8 for 2-D ones):
      OUT holds "X/<variant>/<key>" for each state-dict key bitsandbytes saves for a Linear weight
      (weight, weight.absmax, weight.quant_map, weight.nested_absmax, weight.nested_quant_map,
      weight.quant_state.bitsandbytes__nf4 | SCB, weight_format) and "X/<variant>/dequant" (f32), plus
      "dynamic_map", "nf4_thresholds" and "fp4_thresholds".
  bnb_reference.py make-bnb --model HF_DIR --out DIR --type nf4|fp4|int8 [--no-double-quant]
      a "bnb-4bit"-style checkpoint as transformers saves one: bf16 embeddings/norms/biases/lm_head, the
      seven projections of every layer in bitsandbytes' layout, config.json with quantization_config;
      plus DIR/dequantized.safetensors with every dequantized projection (f32) under its weight name.

Rounding conventions (bitsandbytes' CUDA kernels): scaled = x * (1/absmax) in fp32; the code is the number
of thresholds strictly below `scaled` (so a value exactly on a threshold takes the lower code, and the NaN
of an all-zero block takes code 0); for NF4 the thresholds are the fp32 midpoints of the code book, for FP4
the kernel's decimal constants on |x| with the sign from x < 0. The nested absmax uses the midpoints of the
dynamic map the same way. The double-quantization offset is the exactly rounded mean (bitsandbytes takes
an fp32 mean on its device, whose last bit depends on the reduction order).
"""
import argparse
import json
import os
import sys

import numpy as np
import torch

from safetensors_io import read_safetensors, write_safetensors

torch.set_grad_enabled(False)

# ----------------------------------------------------------------------------- code books

NF4 = torch.tensor([
    -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
    -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
    0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
    0.7229568362236023, 1.0], dtype=torch.float32)

# bitsandbytes' NF4 comparison tree (kernels.cu, dQuantizeNF4), in increasing order.
BNB_NF4_TREE = torch.tensor([
    -0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
    -0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
    0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
    0.5016634166240692, 0.6427869200706482, 0.8614784181118011], dtype=torch.float32)

# dQuantizeFP4's thresholds on |x| and the magnitude codes in increasing order of value.
FP4_THRESHOLDS = torch.tensor([0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333],
                              dtype=torch.float32)
FP4_ASCENDING = torch.tensor([0b000, 0b001, 0b110, 0b111, 0b100, 0b101, 0b010, 0b011], dtype=torch.int64)


def fp4_code():
    data = torch.tensor([0, 0.0625, 8.0, 12.0, 4.0, 6.0, 2.0, 3.0, -0.0, -0.0625, -8.0, -12.0, -4.0, -6.0, -2.0, -3.0],
                        dtype=torch.float32)
    return data / data.abs().max()


def create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8):
    data = []
    non_sign_bits = total_bits - 1
    for i in range(max_exponent_bits):
        fraction_items = int(2 ** (i + non_sign_bits - max_exponent_bits) + 1 if signed
                             else 2 ** (i + non_sign_bits - max_exponent_bits + 1) + 1)
        boundaries = torch.linspace(0.1, 1, fraction_items)
        means = (boundaries[:-1] + boundaries[1:]) / 2.0
        data += ((10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
        if signed:
            data += (-(10 ** (-(max_exponent_bits - 1) + i)) * means).tolist()
    data.append(0)
    data.append(1.0)
    assert len(data) == 2 ** total_bits
    data.sort()
    return torch.tensor(data, dtype=torch.float32)


DYNAMIC = create_dynamic_map()
NF4_THRESHOLDS = (NF4[:-1] + NF4[1:]) / 2
DYNAMIC_MIDPOINTS = (DYNAMIC[:-1] + DYNAMIC[1:]) / 2
assert torch.equal(NF4_THRESHOLDS, BNB_NF4_TREE), "the NF4 midpoints are bitsandbytes' comparison tree"

TORCH_NAMES = {torch.float32: "float32", torch.bfloat16: "bfloat16", torch.float16: "float16"}


def count_below(scaled, thresholds):
    """How many thresholds each value exceeds (NaN exceeds none)."""
    return (scaled.unsqueeze(-1) > thresholds).sum(-1)


# ----------------------------------------------------------------------------- quantization

def blockwise_scaled(x, blocksize):
    """x (fp32, flat) in blocks: absmax per block and x * (1/absmax), the padding being zeros of the last block."""
    n = x.numel()
    pad = (-n) % blocksize
    blocks = torch.cat([x, torch.zeros(pad, dtype=torch.float32)]).view(-1, blocksize)
    absmax = blocks.abs().max(dim=1).values
    inv = 1.0 / absmax
    return absmax, (blocks * inv.unsqueeze(1)).reshape(-1)


def quantize_4bit(A, quant_type, blocksize=64, double_quant=False):
    """The state-dict entries bitsandbytes saves for a Linear4bit weight A."""
    x = A.to(torch.float32).reshape(-1)
    n = x.numel()
    absmax, scaled = blockwise_scaled(x, blocksize)
    scaled = scaled[:n + (n % 2)]  # an odd count pads one zero element into the last block
    if quant_type == "nf4":
        codes = count_below(scaled, NF4_THRESHOLDS)
        code = NF4.clone()
    else:
        sign = (scaled < 0).to(torch.int64) * 8
        codes = sign + FP4_ASCENDING[count_below(scaled.abs(), FP4_THRESHOLDS)]
        code = fp4_code()
    packed = ((codes[0::2] << 4) | codes[1::2]).to(torch.uint8).reshape(-1, 1)

    state = {"quant_type": quant_type, "blocksize": blocksize, "dtype": TORCH_NAMES[A.dtype], "shape": list(A.shape)}
    out = {"weight": packed, "weight.quant_map": code}
    if double_quant:
        offset = absmax.double().mean().float()
        centered = absmax - offset
        nested_absmax, nested_scaled = blockwise_scaled(centered, 256)
        qabsmax = count_below(nested_scaled[:centered.numel()], DYNAMIC_MIDPOINTS).to(torch.uint8)
        out["weight.absmax"] = qabsmax
        out["weight.nested_absmax"] = nested_absmax
        out["weight.nested_quant_map"] = DYNAMIC.clone()
        state.update({"nested_blocksize": 256, "nested_dtype": "float32", "nested_offset": offset.item()})
    else:
        out["weight.absmax"] = absmax
    text = json.dumps(state)  # pack_dict_to_tensor
    out["weight.quant_state.bitsandbytes__" + quant_type] = torch.tensor(list(text.encode("utf-8")), dtype=torch.uint8)
    return out


def dequantize_4bit(entries, shape):
    state = json.loads(bytes(next(v for k, v in entries.items() if "quant_state" in k).tolist()).decode("utf-8"))
    packed = entries["weight"].reshape(-1).to(torch.int64)
    codes = torch.stack([packed >> 4, packed & 15], dim=1).reshape(-1)
    n = int(np.prod(shape))
    codes = codes[:n]
    if "nested_offset" in state:
        q = entries["weight.absmax"].to(torch.int64)
        nb = state["nested_blocksize"]
        nested = entries["weight.nested_quant_map"][q] * entries["weight.nested_absmax"][torch.arange(q.numel()) // nb]
        absmax = nested + torch.tensor(state["nested_offset"], dtype=torch.float32)
    else:
        absmax = entries["weight.absmax"]
    vals = entries["weight.quant_map"][codes] * absmax[torch.arange(n) // state["blocksize"]]
    return vals.reshape(shape)


def quantize_int8(A):
    """LLM.int8() weight format: row-wise absmax int8 (an all-zero row stays 0)."""
    x = A.to(torch.float32)
    scb = x.abs().max(dim=1).values
    scale = torch.where(scb > 0, 127.0 / scb, torch.zeros_like(scb))
    q = torch.round(x * scale.unsqueeze(1)).clamp(-127, 127).to(torch.int8)
    return {"weight": q, "SCB": scb, "weight_format": torch.tensor(0, dtype=torch.uint8)}


def dequantize_int8(entries):
    return entries["weight"].to(torch.float32) * entries["SCB"].view(-1, 1) * 7.874015718698502e-3


# ----------------------------------------------------------------------------- commands

def variants(A):
    yield "nf4", quantize_4bit(A, "nf4"), "4bit"
    yield "nf4_dq", quantize_4bit(A, "nf4", double_quant=True), "4bit"
    yield "fp4", quantize_4bit(A, "fp4"), "4bit"
    yield "fp4_dq", quantize_4bit(A, "fp4", double_quant=True), "4bit"
    if A.dim() == 2:
        yield "int8", quantize_int8(A), "8bit"


def cmd_quantize(args):
    out = {"dynamic_map": DYNAMIC, "nf4_thresholds": NF4_THRESHOLDS, "fp4_thresholds": FP4_THRESHOLDS}
    for name, A in read_safetensors(args.inp).items():
        for variant, entries, kind in variants(A):
            for key, value in entries.items():
                out[f"{name}/{variant}/{key}"] = value
            deq = dequantize_4bit(entries, A.shape) if kind == "4bit" else dequantize_int8(entries)
            out[f"{name}/{variant}/dequant"] = deq.to(torch.float32)
    write_safetensors(args.out, out)


PROJECTIONS = ["self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj",
               "mlp.up_proj", "mlp.down_proj"]


def cmd_make_bnb(args):
    with open(os.path.join(args.model, "config.json")) as f:
        cfg = json.load(f)
    T = read_safetensors(os.path.join(args.model, "model.safetensors"))
    out, dequantized = {}, {}
    for name, t in T.items():
        t = t.to(torch.bfloat16)  # the published checkpoints are bf16 models
        module = name[:-len(".weight")] if name.endswith(".weight") else None
        if module and any(module.endswith(p) for p in PROJECTIONS) and ".layers." in module:
            if args.type == "int8":
                entries = quantize_int8(t)
                dequantized[name] = dequantize_int8(entries)
                for k, v in entries.items():
                    out[module + "." + k] = v
            else:
                entries = quantize_4bit(t, args.type, double_quant=not args.no_double_quant)
                dequantized[name] = dequantize_4bit(entries, t.shape)
                for k, v in entries.items():
                    out[module + "." + k] = v
        else:
            out[name] = t
    four = args.type != "int8"
    cfg["torch_dtype"] = "bfloat16"
    cfg["quantization_config"] = {
        "_load_in_4bit": four, "_load_in_8bit": not four, "bnb_4bit_compute_dtype": "bfloat16",
        "bnb_4bit_quant_storage": "uint8", "bnb_4bit_quant_type": args.type if four else "fp4",
        "bnb_4bit_use_double_quant": four and not args.no_double_quant, "llm_int8_enable_fp32_cpu_offload": False,
        "llm_int8_has_fp16_weight": False, "llm_int8_skip_modules": None, "llm_int8_threshold": 6.0,
        "load_in_4bit": four, "load_in_8bit": not four, "quant_method": "bitsandbytes"}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    write_safetensors(os.path.join(args.out, "model.safetensors"), out)
    write_safetensors(os.path.join(args.out, "dequantized.safetensors"), dequantized)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    q = sub.add_parser("quantize")
    q.add_argument("--in", dest="inp", required=True)
    q.add_argument("--out", required=True)
    m = sub.add_parser("make-bnb")
    m.add_argument("--model", required=True)
    m.add_argument("--out", required=True)
    m.add_argument("--type", choices=["nf4", "fp4", "int8"], default="nf4")
    m.add_argument("--no-double-quant", action="store_true")
    args = ap.parse_args()
    {"quantize": cmd_quantize, "make-bnb": cmd_make_bnb}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
