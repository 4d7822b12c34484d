#!/usr/bin/env python3
"""torchvision oracle for lora.cpp's image classifiers (tests/test_vision_oracle.cpp).

  vision_reference.py make-model --arch vgg11 --num-classes 10 [--classifier 4096,4096] --seed 0 --out DIR
      A torchvision VGG with random weights (and random batch-norm statistics for *_bn), written as DIR/config.json
      + DIR/model.safetensors with torchvision's state-dict names.

  vision_reference.py run --model DIR --input IN.safetensors [--adapter ADAPTER_DIR] --out OUT.safetensors
      IN holds x [N, C, H, W] (f32) and labels [N] (i32). The model in eval mode (dropout off, batch norm on its
      running statistics), with the adapter applied by a reimplementation of PEFT's LoRA layers (Conv2d: lora_A a
      conv with the base kernel, stride and padding and r outputs, lora_B a 1x1 conv; Linear; scaling alpha / r;
      modules_to_save replace the module's weight and bias). Writes logits, the mean cross-entropy loss and
      grad.<key> for every adapter tensor, computed by autograd in float64.
"""
import argparse
import json
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision

sys.path.insert(0, os.path.dirname(__file__))
from safetensors_io import read_safetensors, write_safetensors  # noqa: E402

PREFIX = "base_model.model."


class LoraConv2d(nn.Module):
    def __init__(self, base, r, scaling):
        super().__init__()
        self.base = base
        self.lora_A = nn.Conv2d(base.in_channels, r, base.kernel_size, base.stride, base.padding, bias=False)
        self.lora_B = nn.Conv2d(r, base.out_channels, (1, 1), (1, 1), bias=False)
        self.scaling = scaling

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(x)) * self.scaling


class LoraLinear(nn.Module):
    def __init__(self, base, r, scaling):
        super().__init__()
        self.base = base
        self.lora_A = nn.Linear(base.in_features, r, bias=False)
        self.lora_B = nn.Linear(r, base.out_features, bias=False)
        self.scaling = scaling

    def forward(self, x):
        return self.base(x) + self.lora_B(self.lora_A(x)) * self.scaling


def build(config):
    """torchvision's model; a config with other "classifier" widths gets torchvision's classifier layout
    (Linear ReLU Dropout per width, then the head) at those widths, so the module names stay the same."""
    arch = config["architecture"]
    model = getattr(torchvision.models, arch)(weights=None, num_classes=config["num_classes"])
    hidden = config.get("classifier", [4096, 4096])
    if hidden != [4096, 4096]:
        layers, width = [], model.classifier[0].in_features
        for h in hidden:
            layers += [nn.Linear(width, h), nn.ReLU(True), nn.Dropout()]
            width = h
        model.classifier = nn.Sequential(*layers, nn.Linear(width, config["num_classes"]))
    return model


def make_model(args):
    torch.manual_seed(args.seed)
    config = {"architecture": args.arch, "num_classes": args.num_classes,
              "classifier": [int(h) for h in args.classifier.split(",")],
              "preprocess": {"resize": 0, "crop": 0, "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}}
    model = build(config)
    state = {}
    for name, t in model.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        t = t.clone()
        if name.endswith("running_mean"):
            t = torch.randn_like(t) * 0.1
        elif name.endswith("running_var"):
            t = torch.rand_like(t) + 0.5
        elif ".weight" in name and t.ndim == 1:  # batch-norm gamma, beta
            t = torch.rand_like(t) + 0.5
        elif name.endswith("bias"):
            t = torch.randn_like(t) * 0.01
        state[name] = t.float()
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "config.json"), "w") as f:
        json.dump(config, f)
    write_safetensors(os.path.join(args.out, "model.safetensors"), state)


def run(args):
    with open(os.path.join(args.model, "config.json")) as f:
        config = json.load(f)
    model = build(config)
    state = read_safetensors(os.path.join(args.model, "model.safetensors"))
    missing = model.load_state_dict(state, strict=False)
    assert not missing.unexpected_keys, missing.unexpected_keys
    assert all(k.endswith("num_batches_tracked") for k in missing.missing_keys), missing.missing_keys
    model = model.double().eval()
    trainable = {}
    if args.adapter:
        with open(os.path.join(args.adapter, "adapter_config.json")) as f:
            ac = json.load(f)
        tensors = read_safetensors(os.path.join(args.adapter, "adapter_model.safetensors"))
        scaling = ac["lora_alpha"] / ac["r"]
        modules = dict(model.named_modules())
        for name in ac["target_modules"]:
            parent_name, child = name.rsplit(".", 1)
            base = modules[name]
            layer = (LoraConv2d if isinstance(base, nn.Conv2d) else LoraLinear)(base, ac["r"], scaling).double()
            layer.lora_A.weight.data = tensors[PREFIX + name + ".lora_A.weight"].double()
            layer.lora_B.weight.data = tensors[PREFIX + name + ".lora_B.weight"].double()
            trainable[PREFIX + name + ".lora_A.weight"] = layer.lora_A.weight
            trainable[PREFIX + name + ".lora_B.weight"] = layer.lora_B.weight
            setattr(modules[parent_name], child, layer)
        for name in ac.get("modules_to_save") or []:
            m = modules[name]
            m.weight.data = tensors[PREFIX + name + ".weight"].double()
            m.bias.data = tensors[PREFIX + name + ".bias"].double()
            trainable[PREFIX + name + ".weight"] = m.weight
            trainable[PREFIX + name + ".bias"] = m.bias
    for p in model.parameters():
        p.requires_grad_(False)
    for p in trainable.values():
        p.requires_grad_(True)
    inputs = read_safetensors(args.input)
    x = inputs["x"].double()
    labels = inputs["labels"].long()
    logits = model(x)
    loss = F.cross_entropy(logits, labels)
    out = {"logits": logits.detach().float(), "loss": loss.detach().float().reshape(1)}
    if trainable:
        loss.backward()
        for k, p in trainable.items():
            out["grad." + k] = p.grad.float()
    write_safetensors(args.out, out)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("make-model")
    m.add_argument("--arch", required=True)
    m.add_argument("--num-classes", type=int, default=1000)
    m.add_argument("--seed", type=int, default=0)
    m.add_argument("--classifier", default="4096,4096", help="hidden widths of the classifier")
    m.add_argument("--out", required=True)
    r = sub.add_parser("run")
    r.add_argument("--model", required=True)
    r.add_argument("--input", required=True)
    r.add_argument("--adapter")
    r.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(2)
    (make_model if args.cmd == "make-model" else run)(args)


if __name__ == "__main__":
    main()
