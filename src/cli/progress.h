#pragma once
// Training progress on stderr: a bar redrawn in place on a terminal (step, epoch, loss, learning
// rate, tokens/s, elapsed and ETA), plain log lines every logging_steps when stderr is a file or pipe.
#include <cstdint>
#include <string>

#include "train/trainer.h"

namespace lora::cli {

class TrainProgress {
 public:
  TrainProgress(int64_t total_steps, int64_t logging_steps, bool terminal);
  ~TrainProgress();

  void step(const StepLog& s);
  void eval(int64_t step, const EvalResult& e);
  // A message on its own line (the bar is redrawn below it).
  void message(const std::string& line);
  void finish();

  static bool stderr_is_terminal();

 private:
  void draw();
  void clear();

  int64_t total_, logging_steps_;
  bool terminal_, drawn_ = false;
  StepLog last_;
};

// "1:02:03", "02:03"
std::string format_duration(double seconds);

}  // namespace lora::cli
