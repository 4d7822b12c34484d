#!/usr/bin/env python3
"""PyTorch (Debian python3-torch / python3-torchvision) baseline for bench/bench_vision.cpp: images/s of a
torchvision VGG at 224x224, inference and one LoRA training step (r=8 on every Conv2d and Linear but the head,
PEFT's layout reimplemented as in tests/python/vision_reference.py; the head trained whole; AdamW).

  pytorch_vision_baseline.py [--arch vgg11] [--batch 8] [--iters 3]
"""
import argparse
import os
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "tests", "python"))
from vision_reference import LoraConv2d, LoraLinear  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--arch", default="vgg11")
ap.add_argument("--batch", type=int, default=8)
ap.add_argument("--iters", type=int, default=3)
args = ap.parse_args()
torch.set_num_threads(os.cpu_count())
model = getattr(torchvision.models, args.arch)(weights=None)
x = torch.randn(args.batch, 3, 224, 224)
labels = torch.arange(args.batch) * 37 % 1000

model.eval()
with torch.no_grad():
    model(x)
    t0 = time.perf_counter()
    for _ in range(args.iters):
        model(x)
    t = time.perf_counter() - t0
print(f"pytorch {torch.__version__} {args.arch} 224x224 batch {args.batch} inference: {args.batch * args.iters / t:.2f} images/s")

for p in model.parameters():
    p.requires_grad_(False)
for parent in (model.features, model.classifier):
    for i, m in enumerate(parent):
        if m is model.classifier[6]:
            continue
        if isinstance(m, nn.Conv2d):
            parent[i] = LoraConv2d(m, 8, 2.0)
        elif isinstance(m, nn.Linear):
            parent[i] = LoraLinear(m, 8, 2.0)
for p in model.classifier[6].parameters():
    p.requires_grad_(True)
trainable = [p for p in model.parameters() if p.requires_grad]
opt = torch.optim.AdamW(trainable, lr=1e-4)
model.train()


def step():
    opt.zero_grad()
    F.cross_entropy(model(x), labels).backward()
    opt.step()


step()
t0 = time.perf_counter()
for _ in range(args.iters):
    step()
t = time.perf_counter() - t0
print(f"pytorch {args.arch} 224x224 batch {args.batch} LoRA r=8 training step: {args.batch * args.iters / t:.2f} images/s "
      f"({sum(p.numel() for p in trainable)} trainable parameters)")
