#include "train/lr_schedule.h"

#include <cmath>
#include <numbers>

#include "core/error.h"

namespace lora {

void LrSchedule::validate() const {
  if (kind != "constant" && kind != "linear" && kind != "cosine")
    fail("unknown lr scheduler '{}' (valid: constant, linear, cosine)", kind);
  if (warmup < 0 || total < 1) fail("lr schedule needs warmup >= 0 and total steps >= 1");
}

double LrSchedule::at(int64_t step) const {
  if (step < warmup) return lr * double(step) / double(std::max<int64_t>(1, warmup));
  if (kind == "constant") return lr;
  const double progress = double(step - warmup) / double(std::max<int64_t>(1, total - warmup));
  if (kind == "linear") return lr * std::max(0.0, 1.0 - progress);
  return lr * std::max(0.0, 0.5 * (1.0 + std::cos(std::numbers::pi * progress)));  // cosine, 0.5 cycles
}

}  // namespace lora
