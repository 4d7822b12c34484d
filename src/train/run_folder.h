#pragma once
// What a run's output folder holds between runs, and who may write into it.
//
//   checkpoint-STEP/                  complete checkpoints (AtomicDirectory renames a finished folder in place)
//   checkpoint-STEP.tmp-XXXXXX/       a checkpoint being written, or left by a run killed while writing it
//   NAME.tmp-XXXXXX                   a file being written (AtomicFile), or left by a killed run
//   .lora-train.lock                  the pid of the `lora train` writing into the folder, flock()ed by it
//
// A killed run's temporaries look like checkpoints to a reader of the folder; the next run that holds the
// lock removes them. The lock is an flock() on the lock file, so the kernel releases it when the process
// dies, however it dies: a stale lock file of a dead process is simply taken over.
#include <cstdint>
#include <string>
#include <vector>

namespace lora {

// Removes the temporaries (checkpoint-STEP.tmp-XXXXXX folders, NAME.tmp-XXXXXX files) an interrupted run left in
// `output_dir`; returns their names. Call it only while holding the folder's OutputLock.
std::vector<std::string> remove_interrupted_writes(const std::string& output_dir);

// The complete checkpoint-STEP folder of `output_dir` with the highest STEP (temporaries ignored), or "" when
// there is none.
std::string newest_checkpoint(const std::string& output_dir);

// An exclusive lock on a run's output folder for the life of the object.
class OutputLock {
 public:
  OutputLock() = default;
  ~OutputLock() { release(); }
  OutputLock(const OutputLock&) = delete;
  OutputLock& operator=(const OutputLock&) = delete;

  // Locks `output_dir` (which must exist) and writes this process' pid into the lock file. Fails at once,
  // without waiting, with a lora::Error naming the folder and the pid of the process that holds it.
  void acquire(const std::string& output_dir);
  bool held() const { return fd_ >= 0; }
  // The pid a previous holder left in the lock file, when it died holding the lock (0 otherwise).
  int64_t stale_pid() const { return stale_pid_; }
  void release();

 private:
  std::string path_;
  int fd_ = -1;
  int64_t stale_pid_ = 0;
};

}  // namespace lora
