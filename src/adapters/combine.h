#pragma once
// A new adapter from several, like PEFT's add_weighted_adapter. With weights w_i and each adapter's own
// scaling s_i folded into the factors (the result has scaling 1: lora_alpha = r):
//
//   cat     A = [w_1 s_1 A_1; w_2 s_2 A_2; ...], B = [B_1, B_2, ...]: rank Σ r_i and exactly
//           B A = Σ w_i s_i B_i A_i, the sum of the weighted deltas.
//   linear  A = Σ √(w_i s_i) A_i, B = Σ √(w_i s_i) B_i: ranks must be equal; not the sum of the deltas
//           (cross terms B_i A_j), as in PEFT; w_i s_i must not be negative.
//   svd     Σ w_i s_i B_i A_i truncated to `rank` by SVD (U S Vᵀ): B = U S, A = Vᵀ. At full rank it is the
//           summed delta. (PEFT's code multiplies by s_i twice here, once in get_delta_weight and once in
//           the weight; this is the delta once, consistent with cat.)
//
// A module only some adapters adapt combines just those. DoRA magnitudes, trained biases and
// modules_to_save cannot be combined this way (PEFT cannot represent the result either): merge them
// into the model instead. The new config copies the first adapter's (task type, base model) with
// use_rslora off, so that scaling 1 stays 1.
#include <string>
#include <vector>

#include "adapters/adapter.h"

namespace lora {

enum class CombineMethod { Cat, Linear, Svd };
CombineMethod combine_method_from_name(const std::string& name);  // "cat", "linear", "svd"

struct WeightedAdapter {
  const Adapter* adapter = nullptr;
  float weight = 1.0f;
};

// svd_rank: the rank of an "svd" result (0: the largest rank among the inputs, PEFT's default), capped by
// what each module's matrix allows.
Adapter combine_adapters(const std::vector<WeightedAdapter>& inputs, CombineMethod method, int64_t svd_rank = 0);

}  // namespace lora
