#pragma once
// lora.cpp — the library API in one include.
//
// Reads like Hugging Face PEFT: load a base model, wrap it with a LoRA configuration, run
// forward/backward and optimizer steps, save the adapter in PEFT's format. The base model is never
// modified; everything that trains lives in the TrainableModel.
//
//   #include <lora/lora.h>
//
//   lora::Model base = lora::load_model("stories260K.bin");          // HF folder, .gguf or llama2.c .bin
//
//   lora::LoraConfig config;                                          // PEFT's LoraConfig fields
//   config.r = 8;
//   config.lora_alpha = 16;
//   config.target_modules = {"all-linear"};
//   lora::TrainableModel model = lora::TrainableModel::lora(base, config, /*seed=*/42);
//   std::puts(model.trainable_report().c_str());   // trainable params: X || all params: Y || trainable%: Z
//
//   lora::AdamW optimizer(model.params(), {.weight_decay = 0.0f});
//   lora::LrSchedule schedule{"cosine", 2e-4, /*warmup=*/10, /*total=*/steps};
//   for (int step = 0; step < steps; ++step) {
//     model.zero_grad();
//     // tokens [B*T]; targets[i] = the token that follows tokens[i], or lora::kIgnoreIndex
//     auto r = model.forward_backward(tokens, targets, B, T, 1.0f / n_targets);
//     lora::clip_grad_norm(model.params(), 1.0);
//     optimizer.step(model.params(), schedule.at(step));
//   }
//   lora::save_peft_adapter(model, "out/adapter");                   // adapter_config.json + safetensors
//
//   lora::TrainableModel again = lora::load_peft_adapter(base, "out/adapter");
//   lora::Model merged = lora::merged_model(again);                   // W + s·B·A, for fast inference
//   lora::Transformer infer(merged, /*max_batch=*/1, /*max_seq=*/256);
//
// Adapters as products: several on one base at once (PEFT folders or llama.cpp GGUF adapters), summed.
//
//   lora::AdapterSet adapters(base);
//   adapters.load("out/adapter", "zuzu");                            // checked against the base
//   adapters.load("cats.gguf");                                      // named "cats"
//   adapters.activate({{"zuzu", 1.0f}, {"cats", 0.5f}});             // y = W x + Σ scale·s·B·A x
//   lora::Transformer t(base, 1, 256);
//   t.set_adapters(&adapters);                                       // disable_all(): the base, bit for bit
//   lora::write_gguf_adapter(adapters.adapter("zuzu"), base, "zuzu.gguf");   // for llama.cpp --lora
//   lora::Model both = lora::merged_model(adapters);                 // the active ones folded in
//
// Full and freeze fine-tuning use TrainableModel::full(base) and TrainableModel::freeze(base, n_layers).
//
// QLoRA: the same on a base whose linear layers are quantized (bitsandbytes NF4 / FP4 / int8), either
// loaded from a "bnb-4bit" checkpoint or quantized on load; LoRA weights and AdamW stay fp32, merging
// dequantizes:
//
//   lora::Model base = lora::load_model("Llama-2-7b-hf", {.quantize = "nf4"});   // double quantization on
//   lora::quantize_linear_weights(model_in_memory, {lora::DType::NF4, /*double_quant=*/true});
//   lora::save_hf_folder(base, "out/llama-nf4");                                // bitsandbytes' layout

#include "adapters/adapter_io.h"
#include "adapters/adapter_set.h"
#include "adapters/combine.h"
#include "adapters/gguf_adapter.h"
#include "adapters/lora_config.h"
#include "adapters/merge.h"
#include "adapters/peft_io.h"
#include "core/context.h"
#include "core/quant.h"
#include "formats/gguf_model_writer.h"
#include "formats/model_loader.h"
#include "kernels/cross_entropy.h"
#include "model/model.h"
#include "model/quantize_model.h"
#include "model/sampler.h"
#include "model/transformer.h"
#include "tokenizer/tokenizer.h"
#include "train/lr_schedule.h"
#include "train/optimizer.h"
#include "train/trainable_model.h"
