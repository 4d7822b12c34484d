#pragma once
// What the lora serve tests share: adapters trained for real on stories260K and saved as PEFT folders,
// and a `lora serve` process on a free port.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <regex>
#include <thread>

#include "adapter_test_util.h"
#include "adapters/peft_io.h"

extern char** environ;

namespace lora::test {

// "zuzu": every linear layer, r 4; "qv": q/v and the embedding, r 8; "late": o/down, r 2 (loaded at run time).
inline void save_serve_adapters(const Model& base, const TempDir& dir) {
  LoraConfig a, b, c;
  a.r = 4, a.lora_alpha = 8, a.target_modules = {"all-linear"};
  b.r = 8, b.lora_alpha = 16, b.target_modules = {"q_proj", "v_proj", "embed_tokens"};
  c.r = 2, c.lora_alpha = 4, c.target_modules = {"o_proj", "down_proj"};
  save_peft_adapter(train_on_stories(base, a, 15, 1), dir / "zuzu");
  save_peft_adapter(train_on_stories(base, b, 15, 2), dir / "qv");
  save_peft_adapter(train_on_stories(base, c, 15, 3), dir / "late");
}

// `lora serve ARGS --port 0`, its stderr in a file; the port it printed once it listens.
class ServerProcess {
 public:
  explicit ServerProcess(const std::vector<std::string>& args) {
    std::vector<std::string> argv = {LORA_CLI_PATH, "serve"};
    argv.insert(argv.end(), args.begin(), args.end());
    argv.insert(argv.end(), {"--port", "0"});
    std::vector<char*> c_argv;
    for (std::string& a : argv) c_argv.push_back(a.data());
    c_argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, log_path().c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    if (posix_spawn(&pid_, c_argv[0], &actions, nullptr, c_argv.data(), environ) != 0) pid_ = -1;
    posix_spawn_file_actions_destroy(&actions);
    const std::regex listening("listening on http://[^:]+:([0-9]+)");
    for (int i = 0; i < 600 && pid_ > 0; ++i) {
      std::smatch m;
      const std::string log = read_text(log_path());
      if (std::regex_search(log, m, listening)) {
        port_ = std::stoi(m[1]);
        break;
      }
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  ~ServerProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  ServerProcess(const ServerProcess&) = delete;
  ServerProcess& operator=(const ServerProcess&) = delete;

  int port() const { return port_; }  // 0 when it did not start
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::string log() const { return read_text(log_path()); }
  // Sends the signal and returns the exit status (-1: killed by a signal, or not ended within 30 s).
  int stop(int sig) {
    if (pid_ <= 0) return -1;
    kill(pid_, sig);
    int status = 0;
    for (int i = 0; i < 600; ++i) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return -1;
  }

 private:
  std::string log_path() const { return tmp_ / "serve.log"; }
  TempDir tmp_;
  pid_t pid_ = -1;
  int port_ = 0;
};

}  // namespace lora::test
