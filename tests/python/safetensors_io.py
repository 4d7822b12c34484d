"""safetensors files for the Python references, written from the format (no safetensors package on Debian):
an 8-byte little-endian header length, a JSON header (sorted tensor names, then {"format": "pt"}), padded
with spaces to a multiple of 8, then the raw little-endian data."""
import json
import struct

import numpy as np
import torch

NUMPY_TYPES = {"F32": "<f4", "F16": "<f2", "U8": "u1", "I8": "i1", "I32": "<i4", "I64": "<i8"}
ST_TYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.uint8: "U8", torch.int8: "I8"}


def read_safetensors(path):
    """Every tensor in its stored dtype (BF16 as torch.bfloat16)."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n])
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        b, e = info["data_offsets"]
        raw = data[8 + n + b:8 + n + e]
        if info["dtype"] == "BF16":
            u16 = np.frombuffer(raw, dtype="<u2").astype(np.int32) << 16
            t = torch.from_numpy(u16.view(np.float32).copy()).to(torch.bfloat16)
        else:
            t = torch.from_numpy(np.frombuffer(raw, dtype=NUMPY_TYPES[info["dtype"]]).copy())
        out[name] = t.reshape(info["shape"])
    return out


def write_safetensors(path, tensors):
    """Every tensor in its own dtype (F32, F16, BF16, U8, I8)."""
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        if t.dtype == torch.bfloat16:
            b = (t.to(torch.float32).numpy().view(np.uint32) >> 16).astype("<u2").tobytes()
        else:
            b = t.numpy().tobytes()
        header[name] = {"dtype": ST_TYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
