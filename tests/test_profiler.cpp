// The step profiler: phases add up inside a step and not outside, and a real training step fills the
// kernel families it runs.
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "core/profiler.h"
#include "formats/model_loader.h"
#include "test_util.h"
#include "train/trainable_model.h"

namespace lora {
namespace {

TEST(Profiler, TimesPhasesOnlyInsideSteps) {
  Profiler p(2);
  { Profiler::Scope s(&p, Phase::RmsNorm); }  // outside a step: not counted
  for (int i = 0; i < 2; ++i) {
    p.begin_step();
    {
      Profiler::Scope s(&p, Phase::AttentionForward, 1e9);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    p.end_step();
  }
  EXPECT_EQ(p.steps(), 2);
  EXPECT_GE(p.mean_ms(Phase::AttentionForward), 19.0);
  EXPECT_GE(p.mean_step_ms(), p.mean_ms(Phase::AttentionForward));
  EXPECT_EQ(p.mean_ms(Phase::RmsNorm), 0.0);
  const std::string t = p.table();
  EXPECT_NE(t.find("attention forward"), std::string::npos);
  EXPECT_EQ(t.find("RMSNorm"), std::string::npos);  // phases that never ran are left out
  // a sleeping team of two is idle: the thread-idle row carries about the sleep
  EXPECT_NE(t.find("thread idle"), std::string::npos);
  Profiler::Scope null_scope(nullptr, Phase::Optimizer);  // a null profiler is allowed and does nothing
}

TEST(Profiler, ATrainingStepFillsItsKernelFamilies) {
  const Model base = load_model(test::stories_bin(), LoadOptions{.load_tokenizer = false});
  LoraConfig cfg;
  cfg.r = 4;
  cfg.target_modules = {"all-linear"};
  TrainableModel m = TrainableModel::lora(base, cfg, 1);
  Profiler prof(1);
  m.profiler = &prof;
  std::vector<int32_t> tokens(64), targets(64);
  for (int i = 0; i < 64; ++i) tokens[i] = targets[(i + 63) % 64] = (i * 37) % 512;
  prof.begin_step();
  m.forward_backward(tokens.data(), targets.data(), 2, 32, 1.0f / 64);
  prof.end_step();
  for (Phase ph : {Phase::BaseForward, Phase::BaseInputGrad, Phase::LoraProducts, Phase::AttentionForward,
                   Phase::AttentionBackward, Phase::RmsNorm, Phase::SwiGlu, Phase::LmHeadLoss})
    EXPECT_GT(prof.mean_ms(ph), 0.0) << phase_name(ph);
  double sum = 0;
  for (int i = 0; i < int(Phase::kCount); ++i) sum += prof.mean_ms(Phase(i));
  EXPECT_LE(sum, prof.mean_step_ms() * 1.0001);
}

}  // namespace
}  // namespace lora
