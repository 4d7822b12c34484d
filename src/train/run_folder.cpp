#include "train/run_folder.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace fs = std::filesystem;

namespace lora {

namespace {

constexpr const char* kLockName = ".lora-train.lock";

// "NAME.tmp-XXXXXX", the name mkstemp/mkdtemp gave a temporary of AtomicFile or AtomicDirectory.
bool is_temporary_name(const std::string& name) {
  const size_t at = name.rfind(".tmp-");
  return at != std::string::npos && at > 0 && name.size() - at == 5 + 6;
}

// STEP of "checkpoint-STEP", or -1 for any other name.
int64_t checkpoint_step(const std::string& name) {
  constexpr std::string_view prefix = "checkpoint-";
  if (name.size() <= prefix.size() || name.compare(0, prefix.size(), prefix) != 0 || name.size() > prefix.size() + 18)
    return -1;
  int64_t step = 0;
  for (size_t i = prefix.size(); i < name.size(); ++i) {
    if (name[i] < '0' || name[i] > '9') return -1;
    step = step * 10 + (name[i] - '0');
  }
  return step;
}

std::string read_pid(int fd) {
  char buf[32] = {};
  const ssize_t n = ::pread(fd, buf, sizeof buf - 1, 0);
  std::string s(buf, n > 0 ? size_t(n) : 0);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s;
}

}  // namespace

std::vector<std::string> remove_interrupted_writes(const std::string& output_dir) {
  std::vector<std::string> removed;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(output_dir, ec)) {
    const std::string name = e.path().filename().string();
    if (!is_temporary_name(name)) continue;
    fs::remove_all(e.path(), ec);
    if (ec) fail("{}: cannot remove what an interrupted run left: {}", e.path().string(), ec.message());
    removed.push_back(name);
  }
  std::sort(removed.begin(), removed.end());
  return removed;
}

std::string newest_checkpoint(const std::string& output_dir) {
  int64_t best = -1;
  std::string found;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(output_dir, ec)) {
    const int64_t step = checkpoint_step(e.path().filename().string());
    // trainer_state.json is written into every checkpoint; a folder without it is no checkpoint of ours
    if (step > best && e.is_directory(ec) && fs::is_regular_file(e.path() / "trainer_state.json", ec)) {
      best = step;
      found = e.path().string();
    }
  }
  return found;
}

void OutputLock::acquire(const std::string& output_dir) {
  release();
  const std::string path = (fs::path(output_dir) / kLockName).string();
  // The holder unlinks the file when it is done: a lock taken on a file that is no longer the one at `path`
  // protects nothing, so check the inode after locking and try again.
  for (int attempt = 0; attempt < 100; ++attempt) {
    const int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) fail("{}: cannot create the lock file: {}", path, std::strerror(errno));
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
      const int err = errno;
      const std::string pid = read_pid(fd);
      ::close(fd);
      if (err == EWOULDBLOCK)
        fail("{}: the output folder is in use by another lora train (pid {}); wait for it to end or write elsewhere with -o",
             output_dir, pid.empty() ? "unknown" : pid);
      fail("{}: cannot lock: {}", path, std::strerror(err));
    }
    struct stat by_fd {}, by_path {};
    if (::fstat(fd, &by_fd) != 0 || ::stat(path.c_str(), &by_path) != 0 || by_fd.st_ino != by_path.st_ino ||
        by_fd.st_dev != by_path.st_dev) {
      ::close(fd);
      continue;
    }
    // A pid in a file nobody held the lock on: the process died holding it.
    const std::string previous = read_pid(fd);
    stale_pid_ = 0;
    try {
      stale_pid_ = previous.empty() ? 0 : std::stoll(previous);
    } catch (const std::exception&) {
    }
    const std::string pid = std::to_string(::getpid()) + "\n";
    if (::ftruncate(fd, 0) != 0 || ::pwrite(fd, pid.data(), pid.size(), 0) != ssize_t(pid.size())) {
      const int err = errno;
      ::close(fd);
      fail("{}: cannot write the lock file: {}", path, std::strerror(err));
    }
    fd_ = fd;
    path_ = path;
    return;
  }
  fail("{}: the lock file keeps being replaced; is another lora train starting in this folder?", path);
}

void OutputLock::release() {
  if (fd_ < 0) return;
  ::unlink(path_.c_str());  // while still holding it, so no one locks the file on its way out
  ::close(fd_);
  fd_ = -1;
}

}  // namespace lora
