#pragma once
// Learning-rate schedules as Hugging Face's get_scheduler defines them: the rate for optimizer step
// `step` (0-based: the first update uses step 0) of `total` steps, after `warmup` warmup steps.
#include <cstdint>
#include <string>

namespace lora {

struct LrSchedule {
  std::string kind = "constant";  // "constant", "linear", "cosine"
  double lr = 1e-4;
  int64_t warmup = 0;
  int64_t total = 1;

  // Throws lora::Error for an unknown kind (listing the valid ones).
  void validate() const;
  double at(int64_t step) const;
};

}  // namespace lora
