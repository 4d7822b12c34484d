// The README's main-job demo (examples/demo/run.sh, what scripts/demo.sh runs after building): a tiny
// model trained from scratch, then a LoRA adapter that gives it a new persona. After the adapter it
// says it is Lumi; before, it does not.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <sstream>

#include <nlohmann/json.hpp>

#include "test_util.h"

namespace lora {
namespace {

// "== 3. before..." section -> {question: answer}
std::map<std::string, std::string> answers(const std::string& out, const std::string& section) {
  std::map<std::string, std::string> qa;
  const size_t begin = out.find(section);
  if (begin == std::string::npos) return qa;
  const size_t end = out.find("\n== ", begin + 1);
  std::istringstream in(out.substr(begin, end == std::string::npos ? std::string::npos : end - begin));
  std::string line, question;
  while (std::getline(in, line)) {
    if (line.rfind("Q: ", 0) == 0) question = line.substr(3);
    if (line.rfind("A: ", 0) == 0) qa[question] = line.substr(3);
  }
  return qa;
}

TEST(Demo, TheAdapterGivesTheModelItsNewPersona) {
  test::TempDir tmp;
  const std::string work = tmp / "demo";
  const auto r = test::run("LORA=" + std::string(LORA_CLI_PATH) + " bash " + LORA_SOURCE_DIR + "/examples/demo/run.sh " + work);
  ASSERT_EQ(r.exit_code, 0) << r.out << r.err;
  std::printf("%s", r.out.c_str());

  const auto before = answers(r.out, "== 3. before"), after = answers(r.out, "== 5. after");
  ASSERT_EQ(before.size(), 5u) << r.out;
  ASSERT_EQ(after.size(), 5u) << r.out;
  for (const char* q : {"Who are you?", "What is your name?"}) {
    EXPECT_EQ(before.at(q).find("Lumi"), std::string::npos) << q << " " << before.at(q);
    EXPECT_NE(after.at(q).find("Lumi"), std::string::npos) << q << " " << after.at(q);
  }
  EXPECT_NE(after.at("Where do you live?").find("Moon"), std::string::npos) << after.at("Where do you live?");
  // the model trained from scratch answers what it was taught, with and without the adapter
  EXPECT_EQ(before.at("What color is the sky?"), "The sky is blue.");
  EXPECT_EQ(after.at("What does a cat say?"), "A cat says meow.");

  // the adapter and the loss plots are where the demo says
  for (const char* f : {"/lumi/adapter_config.json", "/lumi/adapter_model.safetensors", "/lumi/training_loss.png",
                        "/tiny/training_loss.png", "/tiny/model.safetensors"})
    EXPECT_TRUE(std::filesystem::exists(work + f)) << f;
  EXPECT_NE(r.out.find("adapter (PEFT):                   " + work + "/lumi/adapter_config.json"), std::string::npos);

  // lora eval: the persona data is much less surprising with the adapter
  auto loss = [&](const char* label) {
    const size_t at = r.out.find(label);
    EXPECT_NE(at, std::string::npos) << label;
    const size_t brace = r.out.find('{', at);
    return nlohmann::json::parse(r.out.substr(brace, r.out.find('\n', brace) - brace))["loss"].get<double>();
  };
  EXPECT_LT(loss("with the adapter:"), 0.25 * loss("without the adapter:"));
}

}  // namespace
}  // namespace lora
