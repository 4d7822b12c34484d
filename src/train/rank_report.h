#pragma once
// Reports of an AdaLoRA run's final rank allocation: a text table and a picture, both a grid of layers
// (rows) by module types (columns) holding the rank each matrix kept.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace lora {

// ranks: (module path, kept rank), e.g. ("model.layers.3.self_attn.q_proj", 7). Written atomically as
// a PNG; throws lora::Error when it cannot.
// The table as text, one row per layer ("layer  q_proj k_proj ..."), with row and column totals.
std::string format_rank_table(const std::vector<std::pair<std::string, int64_t>>& ranks);

void plot_rank_allocation_png(const std::vector<std::pair<std::string, int64_t>>& ranks, int64_t init_r,
                              int64_t target_r, const std::string& path);

}  // namespace lora
