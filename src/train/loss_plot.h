#pragma once
// The training-loss picture LLaMA-Factory users know (training_loss.png): the raw loss per step, an
// exponentially smoothed curve over it, and the evaluation loss when there is one.
#include <string>
#include <utility>
#include <vector>

namespace lora {

struct LossCurve {
  std::vector<std::pair<double, double>> train;  // (step, loss)
  std::vector<std::pair<double, double>> eval;   // (step, eval loss)
  std::string title = "training loss";
};

// Writes a PNG (cairo) of width x height pixels, atomically. Throws lora::Error when it cannot.
void plot_loss_png(const LossCurve& curve, const std::string& path, int width = 900, int height = 560);

// LLaMA-Factory's smoothing: an exponential moving average whose weight grows with the run length.
std::vector<double> smooth_loss(const std::vector<double>& values);

}  // namespace lora
