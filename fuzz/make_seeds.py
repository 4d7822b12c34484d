#!/usr/bin/env python3
"""Seed corpora for the fuzz harnesses: small valid inputs of every format, written into OUTDIR/<harness>/.

Real files come from ../shared/assets (read at run time, never copied into the project): tokenizers cut down
to a few hundred tokens, the stories260K tokenizer, the chat templates of tokenizer_config.json. The rest is
synthetic: a GGUF with a tensor of every ggml type, safetensors of every dtype, a tiny llama2.c checkpoint,
PEFT and GGUF adapters, dataset records of every format, YAML configs and request bodies.

usage: make_seeds.py ASSETS_DIR TESTS_DATA_DIR OUTDIR
"""
import json
import os
import struct
import sys

ASSETS, TESTS_DATA, OUT = sys.argv[1], sys.argv[2], sys.argv[3]


def put(harness, name, data):
    d = os.path.join(OUT, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


# --- safetensors -----------------------------------------------------------------------------------------
DT_SIZE = {"F32": 4, "F16": 2, "BF16": 2, "U8": 1, "I8": 1, "I32": 4, "I64": 8, "F64": 8, "BOOL": 1}


def safetensors(tensors, metadata=None):
    header, data = {}, b""
    for name, dtype, shape, *given in tensors:  # (a fourth element: the tensor's own bytes)
        n = DT_SIZE[dtype]
        for s in shape:
            n *= s
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + n]}
        data += given[0] if given else bytes((i * 37 + 11) % 256 for i in range(n))
    if metadata:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    return struct.pack("<Q", len(h)) + h + data


put("fuzz_safetensors", "dtypes.safetensors",
    safetensors([(f"t.{d}", d, [2, 3]) for d in DT_SIZE], {"format": "pt"}))
put("fuzz_safetensors", "empty.safetensors", safetensors([]))
put("fuzz_safetensors", "scalar.safetensors", safetensors([("s", "F32", []), ("z", "F32", [0, 4])]))

# --- GGUF ------------------------------------------------------------------------------------------------
# ggml type -> (block size, bytes per block)
GGML = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34), 9: (32, 36),
        10: (256, 84), 11: (256, 110), 12: (256, 144), 13: (256, 176), 14: (256, 210), 15: (256, 292),
        16: (256, 66), 17: (256, 74), 18: (256, 98), 19: (256, 50), 20: (32, 18), 21: (256, 110), 22: (256, 82),
        23: (256, 136), 24: (1, 1), 25: (1, 2), 26: (1, 4), 27: (1, 8), 28: (1, 8), 29: (256, 56), 30: (1, 2)}


def gstr(s):
    b = s.encode()
    return struct.pack("<Q", len(b)) + b


def gvalue(v):
    """(type, bytes) of a Python value as GGUF metadata."""
    if isinstance(v, bool):
        return 7, struct.pack("<B", v)
    if isinstance(v, int):
        return (5, struct.pack("<i", v)) if -2**31 <= v < 2**31 else (11, struct.pack("<q", v))
    if isinstance(v, float):
        return 6, struct.pack("<f", v)
    if isinstance(v, str):
        return 8, gstr(v)
    if isinstance(v, tuple):  # (type, raw bytes)
        return v
    assert isinstance(v, list)
    items = [gvalue(x) for x in v]
    t = items[0][0] if items else 4
    return 9, struct.pack("<IQ", t, len(items)) + b"".join(b for _, b in items)


def gguf(metadata, tensors, alignment=32):
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(metadata))
    for k, v in metadata.items():
        t, b = gvalue(v)
        out += gstr(k) + struct.pack("<I", t) + b
    data, infos = b"", b""
    for name, ggml_type, ne in tensors:
        bs, ts = GGML[ggml_type]
        n = 1
        for x in ne:
            n *= x
        nbytes = n // bs * ts
        data += b"\0" * (-len(data) % alignment)
        infos += gstr(name) + struct.pack("<I", len(ne)) + b"".join(struct.pack("<Q", x) for x in ne)
        infos += struct.pack("<IQ", ggml_type, len(data))
        # small finite scales: fp16 0x3C00 = 1.0 at the start of every block, varied codes after
        block = bytearray((i * 29 + 7) % 256 for i in range(ts))
        if ts >= 2 and bs > 1:
            block[0:2] = b"\x00\x3c"
        data += bytes(block) * (nbytes // ts) if bs > 1 else bytes((i * 13) % 120 for i in range(nbytes))
    out += infos
    out += b"\0" * (-len(out) % alignment)
    return out + data


tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(16)] + ["\u2581", "\u2581a", "b", "ab", "\u2581ab"]
llama_vocab = {
    "general.architecture": "llama", "general.name": "seed", "general.alignment": 32,
    "llama.context_length": 16, "llama.embedding_length": 8, "llama.block_count": 1, "llama.feed_forward_length": 16,
    "llama.attention.head_count": 2, "llama.attention.head_count_kv": 1, "llama.rope.freq_base": 10000.0,
    "llama.attention.layer_norm_rms_epsilon": 1e-5, "llama.vocab_size": len(tokens),
    "tokenizer.ggml.model": "llama", "tokenizer.ggml.tokens": tokens,
    "tokenizer.ggml.scores": [float(-i) for i in range(len(tokens))],
    "tokenizer.ggml.token_type": [2, 3, 3] + [6] * 16 + [1] * 5,
    "tokenizer.ggml.bos_token_id": 1, "tokenizer.ggml.eos_token_id": 2, "tokenizer.ggml.add_bos_token": True,
    "tokenizer.chat_template": "{% for m in messages %}<|im_start|>{{ m['role'] }}{% endfor %}",
}
put("fuzz_gguf", "llama_vocab.gguf", gguf(llama_vocab, []))
put("fuzz_gguf", "every_type.gguf", gguf({"general.architecture": "llama", "nested": [[1, 2], [3]],
                                          "u64": (10, struct.pack("<Q", 7)), "f64": (12, struct.pack("<d", 0.5))},
                                         [(f"t{t}", t, [GGML[t][0] if GGML[t][0] > 1 else 4, 2]) for t in GGML]))
bpe_tokens = [chr(c) for c in range(ord("a"), ord("z") + 1)] + ["\u0120", "\u0120a", "ab", "<|endoftext|>"]
put("fuzz_gguf", "gpt2_vocab.gguf", gguf({
    "general.architecture": "qwen2", "tokenizer.ggml.model": "gpt2", "tokenizer.ggml.pre": "qwen2",
    "tokenizer.ggml.tokens": bpe_tokens, "tokenizer.ggml.token_type": [1] * (len(bpe_tokens) - 1) + [3],
    "tokenizer.ggml.merges": ["\u0120 a", "a b"], "tokenizer.ggml.eos_token_id": len(bpe_tokens) - 1}, []))
n = 8
put("fuzz_gguf", "tiny_model.gguf", gguf(llama_vocab, [
    ("token_embd.weight", 0, [n, len(tokens)]), ("output_norm.weight", 0, [n]),
    ("blk.0.attn_norm.weight", 0, [n]), ("blk.0.ffn_norm.weight", 0, [n]),
    ("blk.0.attn_q.weight", 8, [32, n]), ("blk.0.attn_k.weight", 0, [n, 4]), ("blk.0.attn_v.weight", 1, [n, 4]),
    ("blk.0.attn_output.weight", 30, [n, n]), ("blk.0.ffn_gate.weight", 2, [32, 16]),
    ("blk.0.ffn_up.weight", 0, [n, 16]), ("blk.0.ffn_down.weight", 0, [16, n])]))

# --- GGUF adapter ----------------------------------------------------------------------------------------
put("fuzz_gguf_adapter", "adapter.gguf", gguf(
    {"general.architecture": "llama", "general.type": "adapter", "adapter.type": "lora", "adapter.lora.alpha": 16.0},
    [("blk.0.attn_q.weight.lora_a", 0, [8, 2]), ("blk.0.attn_q.weight.lora_b", 0, [2, 8]),
     ("blk.0.ffn_down.weight.lora_a", 1, [16, 2]), ("blk.0.ffn_down.weight.lora_b", 1, [2, 8])]))

# --- llama2.c --------------------------------------------------------------------------------------------
def llama2c(dim=8, hidden=16, layers=1, heads=2, kv=1, vocab=8, seq=4, shared=True):
    head = dim // heads
    kvd = kv * head
    floats = vocab * dim + layers * (dim + dim * dim + 2 * kvd * dim + dim * dim + dim + 3 * hidden * dim)
    floats += dim + seq * head  # rms_final, the two freq_cis halves
    if not shared:
        floats += vocab * dim
    hdr = struct.pack("<7i", dim, hidden, layers, heads, kv, vocab if shared else -vocab, seq)
    return hdr + b"".join(struct.pack("<f", ((i % 17) - 8) / 32) for i in range(floats))


def llama2c_tokenizer(pieces):
    out = struct.pack("<I", max(len(p.encode()) for p in pieces))
    for i, p in enumerate(pieces):
        b = p.encode()
        out += struct.pack("<fi", -float(i), len(b)) + b
    return out


small_tok = llama2c_tokenizer(["<unk>", "<s>", "</s>", " ", "a", "b", " a", "ab"])
put("fuzz_llama2c", "tiny.bin", llama2c())
put("fuzz_llama2c", "tiny_unshared_with_tokenizer.bin", llama2c(shared=False) + b"LORAFUZZTOK" + small_tok)
put("fuzz_llama2c_tokenizer", "small.bin", small_tok)
with open(os.path.join(ASSETS, "models/stories260K/tok512.bin"), "rb") as f:
    put("fuzz_llama2c_tokenizer", "tok512.bin", f.read())

# --- tokenizer.json, cut down from the real ones ---------------------------------------------------------
def shrink_tokenizer_json(path, keep):
    with open(path, encoding="utf-8") as f:
        j = json.load(f)
    m = j["model"]
    vocab = {t: i for t, i in m["vocab"].items() if i < keep}
    merges = []
    for mg in m["merges"]:
        a, b = mg.split(" ", 1) if isinstance(mg, str) else mg
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(mg)
        if len(merges) >= 200:
            break
    m["vocab"], m["merges"] = vocab, merges
    remap = {}
    added = []
    for k, t in enumerate(j.get("added_tokens", [])[:12]):
        remap[t["id"]] = keep + k
        added.append(dict(t, id=keep + k))
    j["added_tokens"] = added
    pp = j.get("post_processor")
    def fix(o):
        if isinstance(o, dict):
            if "ids" in o and isinstance(o["ids"], list):
                o["ids"] = [remap.get(i, i % keep) for i in o["ids"]]
            for v in o.values():
                fix(v)
        elif isinstance(o, list):
            for v in o:
                fix(v)
    fix(pp)
    return json.dumps(j, ensure_ascii=False)


for name, keep in [("llama3", 400), ("qwen3", 400), ("gemma3", 600)]:
    d = os.path.join(ASSETS, "tokenizers", name)
    text = shrink_tokenizer_json(os.path.join(d, "tokenizer.json"), keep)
    put("fuzz_tokenizer_json", f"{name}.json", text)
    with open(os.path.join(d, "tokenizer_config.json"), encoding="utf-8") as f:
        cfg = json.load(f)
    small_cfg = {k: cfg[k] for k in ("bos_token", "eos_token", "add_bos_token", "add_eos_token", "chat_template") if k in cfg}
    if isinstance(small_cfg.get("chat_template"), str):
        put("fuzz_chat_template", f"{name}.jinja", small_cfg["chat_template"])
        small_cfg["chat_template"] = small_cfg["chat_template"][:2000]
    put("fuzz_tokenizer_json", f"{name}_with_config.json", text + "LORAFUZZCFG" + json.dumps(small_cfg))

# --- tokenizer.model: the Llama 2 protobuf, its pieces cut to the first 300 ---------------------------------
def varint(b, i):
    v = s = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << s
        s += 7
        if c < 0x80:
            return v, i


with open(os.path.join(ASSETS, "tokenizers/llama2/tokenizer.model"), "rb") as f:
    proto = f.read()
i, kept, pieces = 0, b"", 0
while i < len(proto):
    start = i
    key, i = varint(proto, i)
    wire = key & 7
    if wire == 0:
        _, i = varint(proto, i)
    elif wire == 2:
        n, i = varint(proto, i)
        i += n
    elif wire == 1:
        i += 8
    elif wire == 5:
        i += 4
    if key >> 3 == 1:
        pieces += 1
        if pieces > 300:
            continue
    kept += proto[start:i]
put("fuzz_sp_model", "llama2_300.model", kept)

# --- chat templates: lora's names' markers and hostile conversations --------------------------------------
put("fuzz_chat_template", "conversation.txt",
    "You are {system} helpful\x1euser:Hello {content}\x1eassistant:Hi!</s>\x1euser:<|im_start|>again")
put("fuzz_chat_template", "chatml.jinja", "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}")
put("fuzz_chat_template", "llama2.jinja", "{{ bos_token + '[INST] ' + content + ' [/INST]' }}<<SYS>>\\n")

# --- datasets (first byte: extension and format, see fuzz_dataset.cpp) -------------------------------------
def data_seed(ext, fmt, text):  # ext 0 .jsonl 1 .json 2 .txt 3 none; fmt 0 auto .. 5 text
    return bytes([ext | (fmt << 2)]) + text.encode()


for f in os.listdir(TESTS_DATA):
    with open(os.path.join(TESTS_DATA, f), encoding="utf-8") as fh:
        put("fuzz_dataset", f, data_seed(0 if f.endswith(".jsonl") else 2, 0, fh.read()))
alpaca = {"instruction": "Add", "input": "1 2", "output": "3", "system": "math", "history": [["hi", "hello"]]}
sharegpt = {"conversations": [{"from": "system", "value": "s"}, {"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}]}
openai = {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
put("fuzz_dataset", "alpaca.json", data_seed(1, 1, json.dumps([alpaca, alpaca])))
put("fuzz_dataset", "sharegpt.jsonl", data_seed(0, 2, json.dumps(sharegpt) + "\n" + json.dumps(sharegpt)))
put("fuzz_dataset", "openai.jsonl", data_seed(0, 3, json.dumps(openai)))
put("fuzz_dataset", "completions.json", data_seed(1, 4, json.dumps([{"prompt": "p", "completion": "c"}])))
put("fuzz_dataset", "text.jsonl", data_seed(0, 5, '{"text": "one"}\n{"text": "two"}\n'))

# --- YAML configs --------------------------------------------------------------------------------------
put("fuzz_yaml_config", "llamafactory.yaml",
    "model_name_or_path: m\nlearning_rate: 1.0e-4\nnum_train_epochs: 3\nlora_rank: 8\nlora_alpha: 16\n"
    "lora_target: q_proj,v_proj\ncutoff_len: 512\nper_device_train_batch_size: 2\n")
put("fuzz_yaml_config", "mlx.yaml", "iters: 100\nbatch_size: 4\nlora_parameters:\n  rank: 8\n")
put("fuzz_yaml_config", "options.yaml",
    "max-seq-len: 64\ntarget: [q_proj, v_proj]\nmethod: adalora\nsave_steps: 10\ndropout: 0.1\nrslora: true\n"
    "template: chatml\nlr_scheduler: cosine\nwarmup: 0.1\n")

# --- PEFT adapter: adapter_config.json LORAFUZZST adapter_model.safetensors ---------------------------------
cfg = {"peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": "m", "r": 2, "lora_alpha": 4,
       "lora_dropout": 0.0, "target_modules": ["q_proj", "down_proj"], "bias": "none", "use_rslora": False,
       "use_dora": False, "rank_pattern": {}, "alpha_pattern": {}, "inference_mode": True}
st = safetensors([("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "F32", [2, 8]),
                  ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", "F32", [8, 2]),
                  ("base_model.model.model.layers.0.mlp.down_proj.lora_A.weight", "BF16", [2, 16]),
                  ("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight", "BF16", [8, 2])], {"format": "pt"})
put("fuzz_peft_adapter", "lora", json.dumps(cfg).encode() + b"LORAFUZZST" + st)
ada = dict(cfg, peft_type="ADALORA", target_r=1, init_r=2, tinit=0, tfinal=0, deltaT=1, beta1=0.85, beta2=0.85,
           orth_reg_weight=0.5, total_step=10, target_modules=["q_proj"],
           rank_pattern={"base_model.model.model.layers.0.self_attn.q_proj.lora_E": [True, False]})
st = safetensors([("base_model.model.model.layers.0.self_attn.q_proj.lora_A", "F32", [2, 8]),
                  ("base_model.model.model.layers.0.self_attn.q_proj.lora_B", "F32", [8, 2]),
                  ("base_model.model.model.layers.0.self_attn.q_proj.lora_E", "F32", [2, 1])], {"format": "pt"})
put("fuzz_peft_adapter", "adalora", json.dumps(ada).encode() + b"LORAFUZZST" + st)
dora = dict(cfg, use_dora=True, target_modules="q_proj", modules_to_save=["lm_head"])
st = safetensors([("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", "F32", [2, 8]),
                  ("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", "F32", [8, 2]),
                  ("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector", "F32", [8]),
                  ("base_model.model.lm_head.weight", "F32", [4, 8])], {"format": "pt"})
put("fuzz_peft_adapter", "dora", json.dumps(dora).encode() + b"LORAFUZZST" + st)

# --- Hugging Face model folder: config.json LORAFUZZST model.safetensors ----------------------------------
# A one-layer model of every family at hidden 8, vocabulary 16, every tensor the family needs (BF16 to keep
# the seeds small), and a bitsandbytes 4-bit one.
def hf_seed(name, config, extra=(), untied=False, gemma=False, biases=False, head_norms=False):
    h, f, v = 8, 16, 16
    cfg = dict({"hidden_size": h, "intermediate_size": f, "num_hidden_layers": 1, "num_attention_heads": 2,
                "num_key_value_heads": 1, "vocab_size": v, "max_position_embeddings": 64, "rms_norm_eps": 1e-6,
                "tie_word_embeddings": not untied, "torch_dtype": "bfloat16"}, **config)
    d, kv = 4, 4
    p = "model.layers.0."
    t = [("model.embed_tokens.weight", "BF16", [v, h]), ("model.norm.weight", "BF16", [h]),
         (p + "input_layernorm.weight", "BF16", [h]), (p + "post_attention_layernorm.weight", "BF16", [h]),
         (p + "self_attn.q_proj.weight", "BF16", [h, h]), (p + "self_attn.k_proj.weight", "BF16", [kv, h]),
         (p + "self_attn.v_proj.weight", "BF16", [kv, h]), (p + "self_attn.o_proj.weight", "BF16", [h, h]),
         (p + "mlp.gate_proj.weight", "BF16", [f, h]), (p + "mlp.up_proj.weight", "BF16", [f, h]),
         (p + "mlp.down_proj.weight", "BF16", [h, f])]
    if untied:
        t.append(("lm_head.weight", "BF16", [v, h]))
    if gemma:
        t += [(p + "pre_feedforward_layernorm.weight", "BF16", [h]), (p + "post_feedforward_layernorm.weight", "BF16", [h])]
    if biases:
        t += [(p + "self_attn.q_proj.bias", "BF16", [h]), (p + "self_attn.k_proj.bias", "BF16", [kv]),
              (p + "self_attn.v_proj.bias", "BF16", [kv])]
    if head_norms:
        t += [(p + "self_attn.q_norm.weight", "BF16", [d]), (p + "self_attn.k_norm.weight", "BF16", [d])]
    own = {e[0] for e in extra}
    t = [e for e in t if e[0] not in own] + list(extra)
    put("fuzz_hf_folder", name, json.dumps(cfg).encode() + b"LORAFUZZST" + safetensors(t, {"format": "pt"}))


hf_seed("llama", {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "rope_theta": 10000.0,
                  "rope_scaling": {"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                   "original_max_position_embeddings": 16}, "bos_token_id": 1, "eos_token_id": [2, 3]},
        untied=True)
hf_seed("qwen2", {"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "rope_theta": 1e6,
                  "rope_scaling": {"type": "linear", "factor": 2.0}, "attention_bias": True}, biases=True)
hf_seed("qwen3", {"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "head_dim": 4,
                  "use_sliding_window": False}, head_norms=True)
hf_seed("smollm3", {"architectures": ["SmolLM3ForCausalLM"], "model_type": "smollm3", "no_rope_layers": [1],
                    "no_rope_layer_interval": 4})
hf_seed("gemma2", {"architectures": ["Gemma2ForCausalLM"], "model_type": "gemma2", "head_dim": 4,
                   "query_pre_attn_scalar": 4, "sliding_window": 4, "attn_logit_softcapping": 50.0,
                   "final_logit_softcapping": 30.0, "hidden_activation": "gelu_pytorch_tanh"}, gemma=True)
hf_seed("gemma3", {"architectures": ["Gemma3ForCausalLM"], "model_type": "gemma3_text", "head_dim": 4,
                   "query_pre_attn_scalar": 4, "sliding_window": 4, "layer_types": ["sliding_attention"],
                   "rope_local_base_freq": 10000.0, "final_logit_softcapping": None, "attn_logit_softcapping": None},
        gemma=True, head_norms=True)
# bitsandbytes NF4 with double quantization on q_proj: packed 4-bit data, absmax as uint8 with its own
# absmax and code, the quant_state JSON as a U8 tensor (as transformers writes them)
qs = json.dumps({"quant_type": "nf4", "blocksize": 64, "dtype": "bfloat16", "shape": [8, 8],
                 "nested_blocksize": 256, "nested_offset": 0.0, "nested_dtype": "float32"}).encode()
q = "model.layers.0.self_attn.q_proj.weight"
bnb = [(q, "U8", [32, 1]), (q + ".absmax", "U8", [1]), (q + ".nested_absmax", "F32", [1]), (q + ".nested_quant_map", "F32", [256]),
       (q + ".quant_map", "F32", [16]), (q + ".quant_state.bitsandbytes__nf4", "U8", [len(qs)], qs)]
hf_seed("llama-nf4", {"architectures": ["LlamaForCausalLM"], "model_type": "llama",
                      "quantization_config": {"quant_method": "bitsandbytes", "load_in_4bit": True,
                                              "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                                              "bnb_4bit_compute_dtype": "bfloat16"}}, extra=bnb)

# --- request bodies (first byte: 0 chat, 1 completions, 2 load adapter, 3 unload) ---------------------------
chat = {"model": "m", "messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "hi"}],
        "max_tokens": 8, "temperature": 0.7, "top_p": 0.9, "top_k": 4, "seed": 1, "stop": ["\n", "x"], "n": 1,
        "stream": True, "stream_options": {"include_usage": True}, "logprobs": True, "top_logprobs": 2, "ignore_eos": False}
put("fuzz_serve_request", "chat", b"\0" + json.dumps(chat).encode())
chat_parts = dict(chat, messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}]}], max_completion_tokens=3)
put("fuzz_serve_request", "chat_parts", b"\0" + json.dumps(chat_parts).encode())
put("fuzz_serve_request", "completion", b"\1" + json.dumps({"model": "m", "prompt": "Once", "max_tokens": 4, "logprobs": 2, "stop": "."}).encode())
put("fuzz_serve_request", "load", b"\2" + json.dumps({"lora_name": "a", "lora_path": "/tmp/a"}).encode())
put("fuzz_serve_request", "unload", b"\3" + json.dumps({"lora_name": "a"}).encode())
