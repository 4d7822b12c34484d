#pragma once
// A model by name, as transformers' offline mode and llama.cpp's -hf find it: "ORG/NAME" (optionally
// ":QUANT" to pick one .gguf file of a GGUF repository) resolved in the Hugging Face cache,
//
//   $HF_HUB_CACHE, else $HF_HOME/hub, else ~/.cache/huggingface/hub
//     models--ORG--NAME/refs/REVISION        holds the commit hash (REVISION default "main")
//     models--ORG--NAME/snapshots/HASH/...   the files of that commit
//
// Nothing is downloaded.
#include <string>

namespace lora {

// `spec` itself when it names an existing file or folder; otherwise its snapshot folder (or the .gguf
// file ":QUANT" or the snapshot's only .gguf picks) in the cache. Throws lora::Error saying where it
// looked when neither exists, and listing the candidates when a GGUF repository holds several files.
std::string resolve_model_path(const std::string& spec, const std::string& revision = "");

}  // namespace lora
