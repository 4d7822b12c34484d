#!/usr/bin/env python3
"""ggml's reference dequantization (ggml-quants.c, dequantize_row_*) transcribed to numpy, as the
independent ground truth for lora.cpp's decoders.

    ggml_reference.py TYPE BLOCKS.bin OUT.f32

reads whole blocks of TYPE (q4_0 ... iq4_xs) and writes the decoded values as little-endian float32.
Every product and difference is a float32 operation in ggml's order (numpy float32 arithmetic rounds
each operation to nearest even, like C without fused multiply-add)."""
import sys

import numpy as np

F32 = np.float32
KVALUES = np.array([-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113], dtype=np.int32)

# bytes per block, values per block
LAYOUT = {
    "q4_0": (18, 32), "q4_1": (20, 32), "q5_0": (22, 32), "q5_1": (24, 32), "q8_0": (34, 32),
    "q2_k": (84, 256), "q3_k": (110, 256), "q4_k": (144, 256), "q5_k": (176, 256), "q6_k": (210, 256),
    "iq4_nl": (18, 32), "iq4_xs": (136, 256),
}


def f16(b, off):
    """The fp16 at byte `off` of every block, as float32 column [n, 1]."""
    return b[:, off:off + 2].copy().view(np.float16).astype(F32)


def low_high(qs):
    """Nibble pairs: elements j < 16 from the low nibbles, j + 16 from the high ones."""
    return np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.int32)


def fifth_bits(qh_bytes):
    qh = qh_bytes.copy().view("<u4").astype(np.int64)  # [n, 1]
    return ((qh >> np.arange(32)) & 1).astype(np.int32) << 4  # bit j -> element j


def dq_q4_0(b):
    return (low_high(b[:, 2:18]) - 8).astype(F32) * f16(b, 0)


def dq_q4_1(b):
    return low_high(b[:, 4:20]).astype(F32) * f16(b, 0) + f16(b, 2)


def dq_q5_0(b):
    q = low_high(b[:, 6:22]) | fifth_bits(b[:, 2:6])
    return (q - 16).astype(F32) * f16(b, 0)


def dq_q5_1(b):
    q = low_high(b[:, 8:24]) | fifth_bits(b[:, 4:8])
    return q.astype(F32) * f16(b, 0) + f16(b, 2)


def dq_q8_0(b):
    return b[:, 2:34].copy().view(np.int8).astype(F32) * f16(b, 0)


def dq_q2_k(b):
    n = b.shape[0]
    scales, qs, d, dmin = b[:, 0:16].astype(np.int32), b[:, 16:80].astype(np.int32), f16(b, 80), f16(b, 82)
    out = np.empty((n, 256), dtype=F32)
    pos, s = 0, 0
    for half128 in range(2):
        q = qs[:, 32 * half128:32 * half128 + 32]
        for shift in range(0, 8, 2):
            for part in range(2):
                sc = scales[:, s:s + 1]
                s += 1
                dl = d * (sc & 0xF).astype(F32)
                ml = dmin * (sc >> 4).astype(F32)
                codes = ((q[:, 16 * part:16 * part + 16] >> shift) & 3).astype(F32)
                out[:, pos:pos + 16] = dl * codes - ml
                pos += 16
    return out


def unpack_q3_scales(packed):
    out = np.empty((packed.shape[0], 16), dtype=np.int32)
    for j in range(16):
        lowbits = packed[:, j] & 0xF if j < 8 else packed[:, j - 8] >> 4
        highbits = (packed[:, 8 + j % 4] >> (2 * (j // 4))) & 3
        out[:, j] = lowbits | (highbits << 4)
    return out


def dq_q3_k(b):
    n = b.shape[0]
    hm, qs = b[:, 0:32].astype(np.int32), b[:, 32:96].astype(np.int32)
    scales = unpack_q3_scales(b[:, 96:108].astype(np.int32))
    d = f16(b, 108)
    out = np.empty((n, 256), dtype=F32)
    pos, s, m = 0, 0, 1
    for half128 in range(2):
        q = qs[:, 32 * half128:32 * half128 + 32]
        for shift in range(0, 8, 2):
            for part in range(2):
                dl = d * (scales[:, s:s + 1] - 32).astype(F32)
                s += 1
                sl = slice(16 * part, 16 * part + 16)
                codes = ((q[:, sl] >> shift) & 3) - np.where(hm[:, sl] & m, 0, 4)
                out[:, pos:pos + 16] = dl * codes.astype(F32)
                pos += 16
            m <<= 1
    return out


def scale_min_k4(j, q):
    if j < 4:
        return q[:, j:j + 1] & 63, q[:, j + 4:j + 5] & 63
    return ((q[:, j + 4:j + 5] & 0xF) | ((q[:, j - 4:j - 3] >> 6) << 4),
            (q[:, j + 4:j + 5] >> 4) | ((q[:, j:j + 1] >> 6) << 4))


def dq_qk(b, fifth):
    n = b.shape[0]
    d, dmin = f16(b, 0), f16(b, 2)
    scales = b[:, 4:16].astype(np.int32)
    qh = b[:, 16:48].astype(np.int32)
    ql = (b[:, 48:176] if fifth else b[:, 16:144]).astype(np.int32)
    out = np.empty((n, 256), dtype=F32)
    for g in range(4):
        q = ql[:, 32 * g:32 * g + 32]
        sc1, m1 = scale_min_k4(2 * g, scales)
        sc2, m2 = scale_min_k4(2 * g + 1, scales)
        lo, hi = q & 0xF, q >> 4
        if fifth:
            lo = lo + np.where(qh & (1 << (2 * g)), 16, 0)
            hi = hi + np.where(qh & (2 << (2 * g)), 16, 0)
        out[:, 64 * g:64 * g + 32] = (d * sc1.astype(F32)) * lo.astype(F32) - dmin * m1.astype(F32)
        out[:, 64 * g + 32:64 * g + 64] = (d * sc2.astype(F32)) * hi.astype(F32) - dmin * m2.astype(F32)
    return out


def dq_q6_k(b):
    n = b.shape[0]
    ql, qh = b[:, 0:128].astype(np.int32), b[:, 128:192].astype(np.int32)
    sc = b[:, 192:208].copy().view(np.int8).astype(np.int32)
    d = f16(b, 208)
    out = np.empty((n, 256), dtype=F32)
    for h in range(2):
        l8, h8, s8 = ql[:, 64 * h:64 * h + 64], qh[:, 32 * h:32 * h + 32], sc[:, 8 * h:8 * h + 8]
        for l in range(32):
            i = l // 16
            q1 = ((l8[:, l] & 0xF) | (((h8[:, l] >> 0) & 3) << 4)) - 32
            q2 = ((l8[:, l + 32] & 0xF) | (((h8[:, l] >> 2) & 3) << 4)) - 32
            q3 = ((l8[:, l] >> 4) | (((h8[:, l] >> 4) & 3) << 4)) - 32
            q4 = ((l8[:, l + 32] >> 4) | (((h8[:, l] >> 6) & 3) << 4)) - 32
            base = 128 * h + l
            for k, qv in enumerate((q1, q2, q3, q4)):
                out[:, base + 32 * k] = (d[:, 0] * s8[:, i + 2 * k].astype(F32)) * qv.astype(F32)
    return out


def dq_iq4_nl(b):
    return f16(b, 0) * KVALUES[low_high(b[:, 2:18])].astype(F32)


def dq_iq4_xs(b):
    n = b.shape[0]
    d = f16(b, 0)
    scales_h = b[:, 2:4].copy().view("<u2").astype(np.int32)
    scales_l = b[:, 4:8].astype(np.int32)
    qs = b[:, 8:136]
    out = np.empty((n, 256), dtype=F32)
    for ib in range(8):
        ls = ((scales_l[:, ib // 2:ib // 2 + 1] >> (4 * (ib % 2))) & 0xF) | (((scales_h >> (2 * ib)) & 3) << 4)
        dl = d * (ls - 32).astype(F32)
        out[:, 32 * ib:32 * ib + 32] = dl * KVALUES[low_high(qs[:, 16 * ib:16 * ib + 16])].astype(F32)
    return out


DECODERS = {
    "q4_0": dq_q4_0, "q4_1": dq_q4_1, "q5_0": dq_q5_0, "q5_1": dq_q5_1, "q8_0": dq_q8_0,
    "q2_k": dq_q2_k, "q3_k": dq_q3_k, "q4_k": lambda b: dq_qk(b, False), "q5_k": lambda b: dq_qk(b, True),
    "q6_k": dq_q6_k, "iq4_nl": dq_iq4_nl, "iq4_xs": dq_iq4_xs,
}


def main():
    kind, src, dst = sys.argv[1], sys.argv[2], sys.argv[3]
    nbytes, _ = LAYOUT[kind]
    raw = np.fromfile(src, dtype=np.uint8)
    assert raw.size % nbytes == 0, "not whole blocks"
    with np.errstate(over="ignore", invalid="ignore"):
        values = DECODERS[kind](raw.reshape(-1, nbytes))
    values.astype("<f4").tofile(dst)


if __name__ == "__main__":
    main()
