// Recovery of `lora train` from the worst: SIGKILL at any moment (during a checkpoint save too), then
// `--resume OUTDIR` ends bit-identical to an uninterrupted run and leaves no temporary behind; and the
// output folder's lock (a second run fails at once naming the holder; a dead holder's lock is taken over).
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <random>
#include <thread>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "test_util.h"
#include "train/run_folder.h"

extern char** environ;

namespace lora {
namespace {

namespace fs = std::filesystem;
using test::run_cli;
using test::TempDir;
using Clock = std::chrono::steady_clock;

bool has(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }
std::string data(const std::string& name) { return std::string(LORA_TEST_DATA_DIR) + "/" + name; }

constexpr int kSteps = 30;
// Dropout: the RNG state must come back from the checkpoint too. A checkpoint every 3 steps (~0.1 s).
std::vector<std::string> train_argv(const std::string& out, int steps = kSteps) {
  return {"train", "-m", test::stories_bin(), "-d", data("zuzu_stories.txt") + "," + data("zuzu_qa.jsonl"), "-o", out,
          "--max-steps", std::to_string(steps), "-b", "6", "--lr", "5e-3", "--logging-steps", "1", "-t", "1",
          "--dropout", "0.1", "--save-steps", "3", "--save-total-limit", "2"};
}

std::string join(const std::vector<std::string>& argv) {
  std::string s;
  for (const std::string& a : argv) s += (s.empty() ? "" : " ") + a;
  return s;
}

pid_t spawn_cli(const std::vector<std::string>& args, const std::string& err) {
  std::vector<std::string> argv_s = {LORA_CLI_PATH};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, argv[0], &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  return rc == 0 ? pid : -1;
}

// Names in `dir` of what AtomicFile / AtomicDirectory write before renaming ("NAME.tmp-XXXXXX").
std::vector<std::string> temporaries(const std::string& dir) {
  std::vector<std::string> found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec))
    if (e.path().filename().string().find(".tmp-") != std::string::npos) found.push_back(e.path().filename().string());
  return found;
}

bool has_checkpoint(const std::string& dir) { return !newest_checkpoint(dir).empty(); }

bool exited(pid_t pid) {
  int status = 0;
  return waitpid(pid, &status, WNOHANG) == pid;
}

// SIGKILLs the run when `moment` says so; false when the run ended first (then it has been reaped).
template <typename F>
bool kill_when(pid_t pid, F moment) {
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (Clock::now() < deadline) {
    if (moment()) {
      kill(pid, SIGKILL);
      int status = 0;
      waitpid(pid, &status, 0);
      return WIFSIGNALED(status);
    }
    if (exited(pid)) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return true;
}

TEST(TrainRecovery, KilledAtRandomMomentsResumesBitIdentically) {
  TempDir tmp;
  const auto straight = run_cli(join(train_argv(tmp / "straight")));
  ASSERT_EQ(straight.exit_code, 0) << straight.err;
  const std::string expected = test::read_text(tmp / "straight/adapter_model.safetensors");
  ASSERT_GT(expected.size(), 1000u);

  std::mt19937 rng(18);
  int killed_while_saving = 0, kills = 0;
  for (int trial = 0; trial < 6; ++trial) {
    const std::string out = tmp / fmt::format("trial-{}", trial);
    const bool during_save = trial % 2 == 0;
    // the first run, then up to two resumed runs, each killed once; the last resume runs to the end
    for (int attempt = 0; attempt < 3; ++attempt) {
      std::vector<std::string> argv = attempt == 0 ? train_argv(out) : std::vector<std::string>{"train", "--resume", out};
      const pid_t pid = spawn_cli(argv, out + fmt::format(".err{}", attempt));
      ASSERT_GT(pid, 0);
      // Once a complete checkpoint exists (so there is something to resume), kill either as soon as a
      // checkpoint folder is being written, or after a random delay of up to ~15 steps.
      const auto first_checkpoint_seen = std::make_shared<std::optional<Clock::time_point>>();
      const auto delay = std::chrono::milliseconds(std::uniform_int_distribution<int>(0, 600)(rng));
      bool saw_temporary = false;
      const bool was_killed = kill_when(pid, [&] {
        if (!has_checkpoint(out)) return false;
        if (!*first_checkpoint_seen) *first_checkpoint_seen = Clock::now();
        if (during_save) {
          for (const std::string& t : temporaries(out))
            if (t.rfind("checkpoint-", 0) == 0) saw_temporary = true;
          return saw_temporary;
        }
        return Clock::now() - **first_checkpoint_seen >= delay;
      });
      if (!was_killed) break;  // it finished before the moment came
      ++kills;
      // what a kill during a save leaves behind is what the next run must clean up
      const bool left_temporary = !temporaries(out).empty();
      if (saw_temporary && left_temporary) ++killed_while_saving;
      if (attempt == 2) {
        const auto resumed = run_cli("train --resume " + out);
        ASSERT_EQ(resumed.exit_code, 0) << resumed.err;
        if (left_temporary) EXPECT_TRUE(has(resumed.err, "removed what an interrupted run was writing")) << resumed.err;
      }
    }
    const std::string last_err = test::read_text(out + ".err0");
    EXPECT_TRUE(temporaries(out).empty()) << out << ": " << fmt::format("{}", fmt::join(temporaries(out), ", "));
    EXPECT_FALSE(fs::exists(out + "/.lora-train.lock"));
    ASSERT_TRUE(fs::exists(out + "/adapter_model.safetensors")) << last_err;
    EXPECT_TRUE(test::read_text(out + "/adapter_model.safetensors") == expected) << out << ": the adapter differs from the uninterrupted run's";
    // the same config; only the model's path is spelled as the resumed run read it (absolute, from training_args.yaml)
    auto config = [](const std::string& path) {
      nlohmann::json j = nlohmann::json::parse(test::read_text(path));
      EXPECT_EQ(fs::path(j["base_model_name_or_path"].get<std::string>()).filename(), "stories260K.bin");
      j.erase("base_model_name_or_path");
      return j;
    };
    EXPECT_EQ(config(out + "/adapter_config.json"), config(tmp / "straight/adapter_config.json"));
  }
  std::printf("  %d kills, %d of them while a checkpoint was being written\n", kills, killed_while_saving);
  EXPECT_GE(kills, 6);
  EXPECT_GE(killed_while_saving, 1);
}

TEST(TrainRecovery, SecondRunOnTheSameFolderFailsAtOnceAndADeadHoldersLockIsTakenOver) {
  TempDir tmp;
  const std::string out = tmp / "run";
  const pid_t first = spawn_cli(train_argv(out, 100000), tmp / "first.err");
  ASSERT_GT(first, 0);
  const std::string lock_file = out + "/.lora-train.lock";
  const auto deadline = Clock::now() + std::chrono::seconds(60);
  while (!(fs::exists(lock_file) && test::read_text(lock_file) == fmt::format("{}\n", first)) && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(test::read_text(lock_file), fmt::format("{}\n", first)) << test::read_text(tmp / "first.err");

  // the same folder, with or without --overwrite-output-dir or --resume: refused before the model is read
  for (const std::string& extra : {"", " --overwrite-output-dir"}) {
    const auto start = Clock::now();
    const auto second = run_cli(join(train_argv(out, 4)) + extra);
    const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
    EXPECT_NE(second.exit_code, 0);
    EXPECT_TRUE(has(second.err, fmt::format("{}: the output folder is in use by another lora train (pid {})", out, first)))
        << second.err;
    EXPECT_LT(seconds, 5.0);
  }
  // --resume of the run folder: refused the same way (a resumed run would rotate the same checkpoints)
  const auto resume = run_cli("train --resume " + out);
  EXPECT_NE(resume.exit_code, 0);
  EXPECT_TRUE(has(resume.err, fmt::format("in use by another lora train (pid {})", first))) << resume.err;
  EXPECT_FALSE(exited(first)) << "the first run must not be disturbed";

  // a crash releases the lock (the kernel drops the flock); the lock file with the dead pid stays and is taken over
  ASSERT_EQ(kill(first, SIGKILL), 0);
  ASSERT_EQ(waitpid(first, nullptr, 0), first);
  ASSERT_EQ(test::read_text(lock_file), fmt::format("{}\n", first));
  const auto after = run_cli(join(train_argv(out, 4)) + " --overwrite-output-dir");
  ASSERT_EQ(after.exit_code, 0) << after.err;
  EXPECT_TRUE(has(after.err, fmt::format("process {} ended without releasing the output folder; its lock is taken over", first)))
      << after.err;
  EXPECT_FALSE(fs::exists(lock_file));  // released (and removed) at the end
  EXPECT_TRUE(fs::exists(out + "/adapter_model.safetensors"));
}

TEST(TrainRecovery, ResumeFromARunFolderNeedsACompleteCheckpoint) {
  TempDir tmp;
  const std::string out = tmp / "run";
  fs::create_directories(out + "/checkpoint-6.tmp-AbC123");  // a save that never finished
  test::write_text(out + "/checkpoint-6.tmp-AbC123/trainer_state.json", "{}");
  const auto r = run_cli("train --resume " + out);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_TRUE(has(r.err, out + ": no checkpoint to resume from")) << r.err;
  EXPECT_FALSE(fs::exists(out + "/.lora-train.lock"));

  // a run folder resumes from its newest complete checkpoint, not from an unfinished one after it
  ASSERT_EQ(run_cli(join(train_argv(out, 9))).exit_code, 0);  // checkpoints 3 and 6 (limit 2), the temp removed
  EXPECT_FALSE(fs::exists(out + "/checkpoint-6.tmp-AbC123"));
  fs::create_directories(out + "/checkpoint-9.tmp-XyZ789");
  fs::create_directories(out + "/checkpoint-12");  // no trainer_state.json: not a checkpoint
  const auto again = run_cli("train --resume " + out + " --max-steps 12");
  ASSERT_EQ(again.exit_code, 0) << again.err;
  EXPECT_TRUE(has(again.err, "resuming from " + out + "/checkpoint-6")) << again.err;
  EXPECT_TRUE(has(again.err, "removed what an interrupted run was writing: checkpoint-9.tmp-XyZ789")) << again.err;
}

TEST(RunFolder, NewestCheckpointAndTemporaries) {
  TempDir tmp;
  const std::string d = tmp.path();
  for (const char* name : {"checkpoint-9", "checkpoint-10", "checkpoint-12.tmp-q1w2e3", "checkpoint-11"}) {
    fs::create_directories(d + "/" + name);
    test::write_text(d + "/" + name + "/trainer_state.json", "{}");
  }
  fs::create_directories(d + "/checkpoint-13");  // nothing in it
  fs::create_directories(d + "/checkpoint-12.tmp-q1w2e3.tmp-r4t5y6");
  test::write_text(d + "/adapter_model.safetensors.tmp-Zz09aB", "partial");
  test::write_text(d + "/notes.tmp-long-suffix", "kept: not a mkstemp name");
  EXPECT_EQ(newest_checkpoint(d), d + "/checkpoint-11");
  EXPECT_EQ(remove_interrupted_writes(d),
            (std::vector<std::string>{"adapter_model.safetensors.tmp-Zz09aB", "checkpoint-12.tmp-q1w2e3",
                                      "checkpoint-12.tmp-q1w2e3.tmp-r4t5y6"}));
  EXPECT_TRUE(fs::exists(d + "/notes.tmp-long-suffix"));
  EXPECT_TRUE(fs::exists(d + "/checkpoint-11"));
  EXPECT_EQ(newest_checkpoint(tmp / "missing"), "");
}

TEST(RunFolder, OutputLockIsExclusiveAndNamesItsHolder) {
  TempDir tmp;
  OutputLock a, b;
  a.acquire(tmp.path());
  EXPECT_EQ(a.stale_pid(), 0);
  try {
    b.acquire(tmp.path());  // flock conflicts between two open files of one process too
    FAIL() << "a second lock on the same folder was granted";
  } catch (const Error& e) {
    EXPECT_TRUE(has(e.what(), fmt::format("in use by another lora train (pid {})", getpid()))) << e.what();
  }
  EXPECT_FALSE(b.held());
  a.release();
  EXPECT_FALSE(fs::exists(tmp / ".lora-train.lock"));
  test::write_text(tmp / ".lora-train.lock", "424242\n");  // left by a process that died holding it
  b.acquire(tmp.path());
  EXPECT_TRUE(b.held());
  EXPECT_EQ(b.stale_pid(), 424242);
  EXPECT_EQ(test::read_text(tmp / ".lora-train.lock"), fmt::format("{}\n", getpid()));
}

}  // namespace
}  // namespace lora
