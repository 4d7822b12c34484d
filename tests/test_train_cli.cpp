// `lora train`, `lora eval`, `lora chat` end to end on the real stories260K model: the output layout,
// learning (eval loss, generation, chat), exact resume, Ctrl-C, config files, and bad input.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <thread>
#include <tuple>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "formats/safetensors.h"
#include "test_util.h"

extern char** environ;

namespace lora {
namespace {

namespace fs = std::filesystem;
using test::run_cli;
using test::TempDir;

std::string data(const std::string& name) { return std::string(LORA_TEST_DATA_DIR) + "/" + name; }

// A small LoRA run on stories260K: stories about Zuzu (plain text) mixed with questions about Zuzu (alpaca).
std::string train_args(const std::string& out, int steps) {
  return fmt::format("train -m {} -d {},{} -o {} --max-steps {} -b 6 --lr 5e-3 --logging-steps 1 -t 1", test::stories_bin(),
                     data("zuzu_stories.txt"), data("zuzu_qa.jsonl"), out, steps);
}

double max_abs_diff(const std::string& a_path, const std::string& b_path) {
  const SafetensorsFile a = SafetensorsFile::open(a_path), b = SafetensorsFile::open(b_path);
  EXPECT_EQ(a.tensors().size(), b.tensors().size());
  double worst = 0;
  for (const auto& info : a.tensors()) {
    const Tensor x = a.load(info.name), y = b.load(info.name);
    EXPECT_EQ(x.shape(), y.shape()) << info.name;
    for (int64_t i = 0; i < x.numel(); ++i) worst = std::max(worst, double(std::fabs(x.f32()[i] - y.f32()[i])));
  }
  return worst;
}

std::vector<double> logged_losses(const std::string& metrics) {
  std::vector<double> v;
  std::istringstream in(test::read_text(metrics));
  for (std::string line; std::getline(in, line);) {
    const auto j = nlohmann::json::parse(line);
    if (j.contains("loss")) v.push_back(j["loss"].get<double>());
  }
  return v;
}

double eval_loss(const std::string& args) {
  const auto r = run_cli("eval -t 1 --json " + args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  return nlohmann::json::parse(r.out)["loss"].get<double>();
}

bool has(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

TEST(TrainCli, LearnsAndWritesWhatPeftAndHfUsersExpect) {
  TempDir tmp;
  const std::string out = tmp / "zuzu";
  const auto r = run_cli(train_args(out, 60) + " --val-data " + data("zuzu_qa.jsonl") +
                         " --eval-steps 20 --save-steps 10 --save-total-limit 2 --logging-steps 10");
  ASSERT_EQ(r.exit_code, 0) << r.err;

  // the final adapter at the root, in PEFT's layout
  const auto config = nlohmann::json::parse(test::read_text(out + "/adapter_config.json"));
  EXPECT_EQ(config["peft_type"], "LORA");
  EXPECT_EQ(config["r"], 8);
  EXPECT_EQ(config["lora_alpha"], 16.0);
  const SafetensorsFile adapter = SafetensorsFile::open(out + "/adapter_model.safetensors");
  EXPECT_TRUE(adapter.has("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight"));
  EXPECT_TRUE(adapter.has("base_model.model.model.layers.4.mlp.down_proj.lora_B.weight"));
  // checkpoints every 10 steps, the last 2 kept, each a complete adapter folder with the optimizer state
  for (const char* gone : {"/checkpoint-10", "/checkpoint-30", "/checkpoint-60"}) EXPECT_FALSE(fs::exists(out + gone)) << gone;
  for (const std::string ckpt : {"/checkpoint-40", "/checkpoint-50"})
    for (const char* f : {"adapter_config.json", "adapter_model.safetensors", "optimizer.safetensors", "trainer_state.json",
                          "training_args.yaml"})
      EXPECT_TRUE(fs::exists(out + ckpt + "/" + f)) << ckpt << "/" << f;
  for (const auto& e : fs::directory_iterator(out)) EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos);
  // metrics: 6 logged steps and 3 evaluations; the loss curve
  std::istringstream metrics(test::read_text(out + "/metrics.jsonl"));
  int steps = 0, evals = 0;
  for (std::string line; std::getline(metrics, line);) {
    const auto j = nlohmann::json::parse(line);
    steps += j.contains("loss");
    if (j.contains("eval_loss")) {
      ++evals;
      EXPECT_NEAR(j["eval_perplexity"].get<double>(), std::exp(j["eval_loss"].get<double>()), 1e-9);
    }
  }
  EXPECT_EQ(steps, 6);
  EXPECT_EQ(evals, 3);
  EXPECT_EQ(test::read_text(out + "/training_loss.png").substr(0, 4), "\x89PNG");
  EXPECT_TRUE(has(test::read_text(out + "/training_args.yaml"), "template: alpaca")) << test::read_text(out + "/training_args.yaml");
  // not a terminal: plain log lines; the summary says where things are
  EXPECT_TRUE(has(r.err, "step 60/60 | epoch")) << r.err;
  EXPECT_TRUE(has(r.err, "eval at step 40: loss")) << r.err;
  EXPECT_TRUE(has(r.out, "adapter:   " + out + "/adapter_model.safetensors")) << r.out;
  EXPECT_TRUE(has(r.out, "loss plot: " + out + "/training_loss.png")) << r.out;

  // lora eval: the adapter lowers the loss on the questions it was trained on
  const double base = eval_loss("-m " + test::stories_bin() + " -d " + data("zuzu_qa.jsonl"));
  const double tuned = eval_loss("-m " + test::stories_bin() + " --adapter " + out + " -d " + data("zuzu_qa.jsonl"));
  std::printf("  eval loss on zuzu_qa.jsonl: base %.3f, with the adapter %.3f\n", base, tuned);
  EXPECT_LT(tuned, 0.5 * base);
  // the eval of lora eval is the eval the trainer logged at the end
  const auto last_eval = nlohmann::json::parse(test::read_text(out + "/trainer_state.json"))["log_history"].back();
  EXPECT_NEAR(last_eval["eval_loss"].get<double>(), tuned, 1e-4);

  // lora generate --adapter: the stories now tell of Zuzu
  const std::string prompt = " -p \"Once upon a time, there was a little\" --temp 0 -n 30 -t 1";
  const auto g0 = run_cli("generate -m " + test::stories_bin() + prompt);
  const auto g1 = run_cli("generate -m " + test::stories_bin() + " --adapter " + out + prompt);
  ASSERT_EQ(g1.exit_code, 0) << g1.err;
  EXPECT_FALSE(has(g0.out, "Zuzu")) << g0.out;
  EXPECT_TRUE(has(g1.out, "Zuzu")) << g1.out;

  // lora chat: the same template as training (recorded in training_args.yaml), the trained answer
  const auto c0 = run_cli("chat -m " + test::stories_bin() + " -p \"Who is Zuzu?\" --temp 0 -n 24 -t 1");
  const auto c1 = run_cli("chat -m " + test::stories_bin() + " --adapter " + out + " -p \"Who is Zuzu?\" --temp 0 -n 24 -t 1");
  ASSERT_EQ(c1.exit_code, 0) << c1.err;
  EXPECT_FALSE(has(c0.out, "fox")) << c0.out;
  EXPECT_TRUE(has(c1.out, "Zuzu is a little fox")) << c1.out;

  // interactive chat from stdin: /reset forgets, /quit leaves (the last line is never answered)
  test::write_text(tmp / "input.txt", "Who is Zuzu?\n/reset\nWhere does Zuzu live?\n/quit\nWho is Zuzu?\n");
  const auto chat = test::run("(" + std::string(LORA_CLI_PATH) + " chat -m " + test::stories_bin() + " --adapter " + out +
                              " --temp 0 -n 24 -t 1 <" + tmp / "input.txt" + ")");
  ASSERT_EQ(chat.exit_code, 0) << chat.err;
  EXPECT_TRUE(has(chat.out, "fox")) << chat.out;
  EXPECT_TRUE(has(chat.out, "park")) << chat.out;
  EXPECT_TRUE(has(chat.err, "(conversation reset)")) << chat.err;
  EXPECT_EQ(std::count(chat.out.begin(), chat.out.end(), '\n'), 2) << chat.out;
}

TEST(TrainCli, ResumeGivesTheSameAdapterAndLossLog) {
  TempDir tmp;
  const std::string extra = " --dropout 0.1 --save-steps 10";  // dropout: the RNG state must resume too
  const auto a = run_cli(train_args(tmp / "straight", 20) + extra);
  ASSERT_EQ(a.exit_code, 0) << a.err;
  // 10 steps, stop: the run's state at step 10 is its checkpoint; what the first process did after it goes
  const auto b = run_cli(train_args(tmp / "resumed", 20) + extra);
  ASSERT_EQ(b.exit_code, 0) << b.err;
  for (const char* f : {"adapter_model.safetensors", "adapter_config.json", "trainer_state.json", "training_loss.png"})
    fs::remove(tmp / "resumed/" + f);
  // --resume alone: every option comes from the checkpoint's training_args.yaml
  const auto c = run_cli("train --resume " + tmp / "resumed/checkpoint-10");
  ASSERT_EQ(c.exit_code, 0) << c.err;
  EXPECT_TRUE(has(c.err, "resuming from")) << c.err;
  EXPECT_TRUE(has(c.err, "step 11/20")) << c.err;
  EXPECT_FALSE(has(c.err, "step 10/20")) << c.err;

  const double diff = max_abs_diff(tmp / "straight/adapter_model.safetensors", tmp / "resumed/adapter_model.safetensors");
  std::printf("  20 steps straight vs 10 + resume 10: adapter max abs difference %.3g\n", diff);
  EXPECT_LE(diff, 1e-6);
  const auto straight = logged_losses(tmp / "straight/metrics.jsonl"), resumed = logged_losses(tmp / "resumed/metrics.jsonl");
  ASSERT_EQ(straight.size(), 20u);
  EXPECT_EQ(straight, resumed);
  // and the trainer state holds the whole history
  EXPECT_EQ(nlohmann::json::parse(test::read_text(tmp / "resumed/trainer_state.json"))["log_history"].size(), 20u);

  // resuming with other data is refused: the data position would not mean the same
  const auto d = run_cli("train --resume " + tmp / "resumed/checkpoint-10 -d " + data("zuzu_qa.jsonl") + " -o " + tmp / "other");
  EXPECT_NE(d.exit_code, 0);
  EXPECT_TRUE(has(d.err, "the checkpoint was trained on other data")) << d.err;
}

// Phi-3's checkpoints hold its fused modules as the files name them (PEFT's qkv_proj / gate_up_proj, the model's
// qkv_proj.weight) while the trained params are the parts': LoRA (with dropout, one mask for the parts), AdaLoRA
// (its budget allocated across the resume) and full fine-tuning resume to exactly the straight run's weights.
TEST(TrainCli, Phi3ResumesFromItsFusedCheckpoints) {
  TempDir tmp;
  const std::string base = tmp / "phi3";
  ASSERT_EQ(run_cli("init --arch phi3 -o " + base + " --tokenizer " + test::stories_tokenizer() +
                    " --hidden-size 64 --intermediate-size 96 --layers 2 --heads 4 --kv-heads 2 --longrope 64 --context 256")
                .exit_code,
            0);
  const std::vector<std::pair<std::string, std::string>> kinds = {
      {"lora", "--target all-linear --dropout 0.1"},
      {"adalora", "--method adalora --target all-linear --init-r 4 --target-r 2 --tinit 1 --tfinal 2 --delta-t 1"},
      {"full", "--finetuning-type full"}};
  for (const auto& [kind, options] : kinds) {
    SCOPED_TRACE(kind);
    const std::string args = fmt::format("train -m {} -d {} --max-steps 8 -b 2 --max-seq-len 48 --packing --lr 5e-3 -t 1 --logging-steps 1 "
                                         "--save-steps 4 {} -o ", base, data("zuzu_stories.txt"), options);
    ASSERT_EQ(run_cli(args + tmp / (kind + "-straight")).exit_code, 0);
    ASSERT_EQ(run_cli(args + tmp / (kind + "-resumed")).exit_code, 0);
    const std::string weights = kind == "full" ? "/model.safetensors" : "/adapter_model.safetensors";
    fs::remove(tmp / (kind + "-resumed") + weights);
    const auto r = run_cli("train --resume " + tmp / (kind + "-resumed/checkpoint-4"));
    ASSERT_EQ(r.exit_code, 0) << r.err;
    EXPECT_TRUE(has(r.err, "step 5/8")) << r.err;
    const double diff = max_abs_diff(tmp / (kind + "-straight") + weights, tmp / (kind + "-resumed") + weights);
    std::printf("  phi3 %s: 8 steps straight vs 4 + resume 4: max abs difference %.3g\n", kind.c_str(), diff);
    EXPECT_LE(diff, 1e-6);
    if (kind != "full")
      EXPECT_TRUE(SafetensorsFile::open(tmp / (kind + "-resumed") + weights)
                      .has(std::string("base_model.model.model.layers.0.self_attn.qkv_proj.lora_") +
                           (kind == "adalora" ? "E" : "A.weight")));
  }
}

// A checkpoint edited by hand or by a broken tool: each bad field of trainer_state.json, and the optimizer's step
// count, is named in a one-line error instead of being cast (a float or 1e300 as an integer is undefined).
TEST(TrainCli, ResumeFromADamagedCheckpointNamesTheField) {
  TempDir tmp;
  ASSERT_EQ(run_cli(train_args(tmp / "run", 4) + " --save-steps 2").exit_code, 0);
  const std::string ckpt = tmp / "run/checkpoint-2", state_path = ckpt + "/trainer_state.json";
  const std::string original = test::read_text(state_path);
  auto expect_refused = [&](const std::string& message) {
    const auto r = run_cli("train --resume " + ckpt);
    EXPECT_NE(r.exit_code, 0) << message;
    EXPECT_TRUE(has(r.err, message)) << "expected '" << message << "' in: " << r.err;
  };
  const std::vector<std::tuple<std::string, nlohmann::json, std::string>> cases = {
      {"global_step", 1e300, "field 'global_step' must be a non-negative integer, found 1e+300"},
      {"micro_batch_cursor", -3, "field 'micro_batch_cursor' must be a non-negative integer, found -3"},
      {"train_batch_size", 6.5, "field 'train_batch_size' must be a non-negative integer, found 6.5"},
      {"dropout_rng", "not a generator", "field 'dropout_rng' is not a generator state"},
  };
  for (const auto& [field, value, message] : cases) {
    nlohmann::json j = nlohmann::json::parse(original);
    j[field] = value;
    test::write_text(state_path, j.dump());
    expect_refused(state_path + ": " + message);
  }
  nlohmann::json j = nlohmann::json::parse(original);
  j["log_history"][0]["step"] = "one";
  test::write_text(state_path, j.dump());
  expect_refused(state_path + ": field 'step' must be a non-negative integer, found \"one\"");
  test::write_text(state_path, original);

  const std::string opt_path = ckpt + "/optimizer.safetensors";
  std::string opt = test::read_text(opt_path);
  const size_t at = opt.find(R"("adamw_steps":"2")");
  ASSERT_NE(at, std::string::npos);
  opt[at + 15] = 'x';  // the same length: the header stays valid JSON of the same size
  test::write_text(opt_path, opt);
  expect_refused(opt_path + ": metadata 'adamw_steps' must be a non-negative integer");
}

// Starts the CLI in the background with stdout/stderr to files.
pid_t spawn_cli(const std::vector<std::string>& args, const std::string& out, const std::string& err) {
  std::vector<std::string> argv_s = {LORA_CLI_PATH};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

TEST(TrainCli, CtrlCSavesACheckpointThatResumesExactly) {
  TempDir tmp;
  const int steps = 60;
  const auto straight = run_cli(train_args(tmp / "straight", steps) + " --save-steps 0");
  ASSERT_EQ(straight.exit_code, 0) << straight.err;

  const std::string out = tmp / "run";
  std::vector<std::string> args = {"train", "-m", test::stories_bin(), "-d", data("zuzu_stories.txt") + "," + data("zuzu_qa.jsonl"),
                                   "-o", out, "--max-steps", std::to_string(steps), "-b", "6", "--lr", "5e-3",
                                   "--logging-steps", "1", "-t", "1", "--save-steps", "0"};
  const pid_t pid = spawn_cli(args, tmp / "out.txt", tmp / "err.txt");
  ASSERT_GT(pid, 0);
  // interrupt once a few steps are logged (complete lines only: the file is being written)
  auto logged = [&] {
    const std::string text = test::read_text(out + "/metrics.jsonl");
    return std::count(text.begin(), text.end(), '\n');
  };
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  while (logged() < 5 && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(std::chrono::milliseconds(2));
  ASSERT_EQ(kill(pid, SIGINT), 0);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  const std::string err = test::read_text(tmp / "err.txt");
  ASSERT_TRUE(WIFEXITED(status)) << err;
  EXPECT_EQ(WEXITSTATUS(status), 130) << err;
  EXPECT_TRUE(has(err, "interrupted: finishing this step and saving a checkpoint")) << err;
  EXPECT_FALSE(fs::exists(out + "/adapter_model.safetensors"));  // no final adapter from an interrupted run

  std::string checkpoint;
  for (const auto& e : fs::directory_iterator(out))
    if (e.path().filename().string().rfind("checkpoint-", 0) == 0) checkpoint = e.path().string();
  ASSERT_FALSE(checkpoint.empty()) << err;
  const int at = std::stoi(checkpoint.substr(checkpoint.rfind('-') + 1));
  std::printf("  interrupted at step %d of %d\n", at, steps);
  EXPECT_GE(at, 5);
  ASSERT_LT(at, steps) << "the run ended before the interrupt";
  EXPECT_TRUE(has(err, "continue with: lora train --resume " + checkpoint)) << err;

  // the checkpoint is a loadable adapter
  const auto e = run_cli("eval -m " + test::stories_bin() + " --adapter " + checkpoint + " -d " + data("zuzu_qa.jsonl") + " -t 1");
  EXPECT_EQ(e.exit_code, 0) << e.err;
  // and resumes to exactly the uninterrupted result
  const auto resumed = run_cli("train --resume " + checkpoint);
  ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
  EXPECT_LE(max_abs_diff(tmp / "straight/adapter_model.safetensors", out + "/adapter_model.safetensors"), 1e-6);
  EXPECT_EQ(logged_losses(tmp / "straight/metrics.jsonl"), logged_losses(out + "/metrics.jsonl"));
}

TEST(TrainCli, ConfigFileAndCommandLine) {
  TempDir tmp;
  test::write_text(tmp / "config.yaml", "# LLaMA-Factory and mlx-lm spellings work too\nlora_rank: 4\nlearning_rate: 1.0e-3\n"
                                        "max_steps: 3\ntarget: [q_proj, v_proj]\ncutoff_len: 64\nlogging-steps: 1\nrslora: true\n");
  const auto r = run_cli(fmt::format("train -c {} -m {} -d {} -o {} --rank 2 -t 1", tmp / "config.yaml", test::stories_bin(),
                                     data("zuzu_qa.jsonl"), tmp / "out"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto config = nlohmann::json::parse(test::read_text(tmp / "out/adapter_config.json"));
  EXPECT_EQ(config["r"], 2);  // the command line wins
  EXPECT_EQ(config["use_rslora"], true);
  EXPECT_EQ(config["target_modules"], nlohmann::json({"q_proj", "v_proj"}));
  EXPECT_TRUE(has(r.err, "schedule: 3 steps")) << r.err;
  EXPECT_TRUE(has(r.err, "lr 0.001")) << r.err;
  const std::string args = test::read_text(tmp / "out/training_args.yaml");
  EXPECT_TRUE(has(args, "rank: 2")) << args;
  EXPECT_TRUE(has(args, "max_seq_len: 64")) << args;
  EXPECT_TRUE(has(args, "rslora: true")) << args;

  test::write_text(tmp / "bad.yaml", "rank: 4\nlearning_rat: 1e-3\n");
  const auto bad = run_cli(fmt::format("train -c {} -m {} -d {} -o {}", tmp / "bad.yaml", test::stories_bin(),
                                       data("zuzu_qa.jsonl"), tmp / "out2"));
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_TRUE(has(bad.err, "bad.yaml:2: unknown key 'learning_rat'")) << bad.err;
  EXPECT_FALSE(fs::exists(tmp / "out2"));

  // --help lists every option with its default
  const auto help = run_cli("train --help");
  for (const char* o : {"--rank INT:POSITIVE=8", "--alpha FLOAT=16", "--dropout", "--target TEXT=[all-linear]", "--lr FLOAT:POSITIVE=0.0002",
                        "--lr-scheduler TEXT:{constant,linear,cosine}=cosine", "--warmup FLOAT:NONNEGATIVE=0", "--epochs INT:POSITIVE=3",
                        "--max-steps INT=-1", "--batch-size INT:POSITIVE=4", "--grad-accum INT:POSITIVE=1", "--max-seq-len",
                        "--save-steps INT:NONNEGATIVE=500", "--logging-steps INT:POSITIVE=10", "--eval-steps", "--seed INT=42",
                        "--resume", "--finetuning-type TEXT:{lora,full,freeze}=lora", "--init", "--rslora=false", "--dora=false",
                        "--modules-to-save", "--template TEXT=auto", "--train-on-prompt=false", "--packing=false", "--val-size",
                        "--config", "--save-total-limit INT:NONNEGATIVE=3"})
    EXPECT_TRUE(has(help.out, o)) << o;
}

// One line on stderr, starting "error: " and naming what is wrong; a non-zero exit; no OUTDIR.
void expect_clean_failure(const std::string& args, const std::string& message, const std::string& outdir) {
  const auto r = run_cli(args);
  EXPECT_NE(r.exit_code, 0) << args;
  const size_t at = r.err.rfind("error: ");
  ASSERT_NE(at, std::string::npos) << r.err;
  const std::string error = r.err.substr(at);
  EXPECT_TRUE(has(error, message)) << "expected '" << message << "' in: " << r.err;
  EXPECT_EQ(std::count(error.begin(), error.end(), '\n'), 1) << "the error is the last line, and one line: " << r.err;
  EXPECT_FALSE(fs::exists(outdir)) << outdir << " was written";
}

TEST(TrainCli, BadInputIsAOneLineErrorAndWritesNothing) {
  TempDir tmp;
  const std::string out = tmp / "out";
  auto train = [&](const std::string& data_file, const std::string& extra = "") {
    return fmt::format("train -m {} -d {} -o {} --max-steps 2 -t 1 {}", test::stories_bin(), data_file, out, extra);
  };
  test::write_text(tmp / "notjson.jsonl", "{\"text\": \"fine\"}\n{\"text\": \"broken\"\n");
  expect_clean_failure(train(tmp / "notjson.jsonl"), tmp / "notjson.jsonl:2: not valid JSON", out);

  test::write_text(tmp / "fields.jsonl", "{\"question\": \"Q\", \"answer\": \"A\"}\n");
  expect_clean_failure(train(tmp / "fields.jsonl"), tmp / "fields.jsonl:1: a record with none of the known fields", out);

  test::write_text(tmp / "empty.jsonl", "");
  expect_clean_failure(train(tmp / "empty.jsonl"), tmp / "empty.jsonl: empty dataset", out);

  expect_clean_failure(train(data("zuzu_qa.jsonl"), "--max-seq-len 8"),
                       "nothing to train on: max_seq_len 8 cuts away every response token", out);

  expect_clean_failure(train(data("zuzu_qa.jsonl"), "--template zephyr"),
                       "unknown chat template 'zephyr' (valid: chatml, qwen3, gemma, phi3, llama3, llama2, mistral, alpaca, "
                       "vicuna, plain)", out);

  expect_clean_failure(train(data("zuzu_qa.jsonl"), "--target q_proj,qkv_projection"),
                       "unknown target module 'qkv_projection' (valid: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, "
                       "down_proj, qkv_proj and gate_up_proj (Phi-3), embed_tokens, lm_head, all-linear)", out);
  // a module name of another family: as PEFT, "not found in the base model"
  expect_clean_failure(train(data("zuzu_qa.jsonl"), "--target q_proj,qkv_proj"),
                       "target module 'qkv_proj' matches no module of this llama model (its linear modules: q_proj, k_proj, "
                       "v_proj, o_proj, gate_proj, up_proj, down_proj)", out);

  expect_clean_failure(fmt::format("train -m {} -d {} -o {}", tmp / "missing-model", data("zuzu_qa.jsonl"), out),
                       tmp / "missing-model: no such file or folder", out);
  test::write_text(tmp / "garbage.bin", "this is not a model");
  expect_clean_failure(fmt::format("train -m {} -d {} -o {}", tmp / "garbage.bin", data("zuzu_qa.jsonl"), out),
                       tmp / "garbage.bin: not a Hugging Face folder, GGUF or llama2.c checkpoint", out);

  test::write_text(tmp / "a-file", "x");
  expect_clean_failure(fmt::format("train -m {} -d {} -o {}", test::stories_bin(), data("zuzu_qa.jsonl"), tmp / "a-file/out"),
                       tmp / "a-file/out: cannot create the output folder: " + tmp / "a-file is not a folder", tmp / "a-file/out");

  expect_clean_failure(train(tmp / "no-such-data.jsonl"), tmp / "no-such-data.jsonl: cannot open", out);
  expect_clean_failure(fmt::format("train -m {} -o {}", test::stories_bin(), out), "no data; give -d FILE", out);
  expect_clean_failure(fmt::format("train --resume {}", tmp / "nothing-here"), "trainer_state.json: cannot open", tmp / "nothing-here");
  expect_clean_failure(fmt::format("eval -m {} -d {} --adapter {}", test::stories_bin(), data("zuzu_qa.jsonl"), tmp / "no-adapter"),
                       "no such adapter file or folder", out);

  // an output folder that holds a previous run is not overwritten by accident
  ASSERT_EQ(run_cli(train(data("zuzu_qa.jsonl"))).exit_code, 0);
  const auto again = run_cli(train(data("zuzu_qa.jsonl")));
  EXPECT_NE(again.exit_code, 0);
  EXPECT_TRUE(has(again.err, "the output folder holds a previous run")) << again.err;
  const auto over = run_cli(train(data("zuzu_qa.jsonl"), "--overwrite-output-dir --max-steps 1"));
  EXPECT_EQ(over.exit_code, 0) << over.err;
  EXPECT_EQ(logged_losses(out + "/metrics.jsonl").size(), 1u);
}

TEST(TrainCli, FullFineTuningWritesAModelFolder) {
  TempDir tmp;
  const auto r = run_cli(fmt::format("train -m {} -d {} -o {} --finetuning-type full --max-steps 4 --save-steps 2 -t 1 --template vicuna",
                                     test::stories_bin(), data("zuzu_qa.jsonl"), tmp / "full"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  for (const char* dir : {"full", "full/checkpoint-2"}) {
    const auto info = run_cli("info --json " + tmp / dir);
    ASSERT_EQ(info.exit_code, 0) << info.err;
    EXPECT_EQ(nlohmann::json::parse(info.out)["config"]["hidden_size"], 64);
  }
  // the template it was trained with goes with it
  const auto chat = run_cli("chat -m " + tmp / "full" + " -p hi -n 4 -t 1");
  EXPECT_EQ(chat.exit_code, 0) << chat.err;
  EXPECT_TRUE(has(test::read_text(tmp / "full/tokenizer_config.json"), "lora.cpp template: vicuna"));
}

}  // namespace
}  // namespace lora

namespace lora {
namespace {

TEST(TrainCli, ProfilePrintsWhereTheStepTimeGoes) {
  TempDir tmp;
  const auto r = test::run_cli(train_args(tmp / "run", 4) + " --save-steps 0 --profile");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.err.find("profile: mean of 3 steps"), std::string::npos) << r.err;  // the first step is left out
  for (const char* row : {"base GEMMs forward", "LoRA products", "attention backward", "clipping + AdamW", "**step**"})
    EXPECT_NE(r.err.find(row), std::string::npos) << row;
  // the flag is about this run, not the training: it is not recorded for a resume
  EXPECT_EQ(test::read_text(tmp / "run/training_args.yaml").find("profile"), std::string::npos);
}

}  // namespace
}  // namespace lora
