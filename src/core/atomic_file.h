#pragma once
// Writing outputs so that a crash or a full disk never leaves a half-written file or folder behind:
// data goes to a temporary beside the target, is fsynced, and is renamed over the target.
#include <cstddef>
#include <string>
#include <string_view>

namespace lora {

// Writes `bytes` to `path` atomically. Throws lora::Error naming the path on any failure.
void write_file_atomic(const std::string& path, std::string_view bytes);

// Streaming variant: write() any number of times, then commit(). Without commit() (an exception on
// the way) the temporary is removed and the target is left as it was.
class AtomicFile {
 public:
  explicit AtomicFile(std::string path);
  ~AtomicFile();
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t n);
  void write(std::string_view s) { write(s.data(), s.size()); }
  void commit();
  uint64_t bytes_written() const { return written_; }

 private:
  std::string path_, tmp_path_;
  int fd_ = -1;
  uint64_t written_ = 0;
};

// A folder written as a whole: files go into tmp_path() (a fresh folder beside `dir`); commit() moves
// them into `dir` — by renaming the folder when `dir` does not exist yet or is empty, otherwise file by
// file (other files already in `dir` are kept). Without commit() the temporary folder is removed.
class AtomicDirectory {
 public:
  explicit AtomicDirectory(std::string dir);
  ~AtomicDirectory();
  AtomicDirectory(const AtomicDirectory&) = delete;
  AtomicDirectory& operator=(const AtomicDirectory&) = delete;

  const std::string& tmp_path() const { return tmp_path_; }
  std::string operator/(const std::string& name) const { return tmp_path_ + "/" + name; }
  void commit();

 private:
  std::string dir_, tmp_path_;
  bool committed_ = false;
};

}  // namespace lora
