#include "core/atomic_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>

#include "core/error.h"

namespace lora {

namespace fs = std::filesystem;

namespace {

std::string parent_of(const std::string& path) {
  const fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? "." : parent.string();
}

// Makes a rename durable: the directory entry itself must reach the disk.
void fsync_dir(const std::string& dir) {
  const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;
  ::fsync(fd);
  ::close(fd);
}

}  // namespace

AtomicFile::AtomicFile(std::string path) : path_(std::move(path)) {
  if (fs::is_directory(path_)) fail("{}: cannot write: is a directory", path_);
  tmp_path_ = path_ + ".tmp-XXXXXX";
  fd_ = ::mkstemp(tmp_path_.data());
  if (fd_ < 0) fail("{}: cannot create a temporary file beside it: {}", path_, std::strerror(errno));
  ::fchmod(fd_, 0644);
}

AtomicFile::~AtomicFile() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_path_.c_str());
  }
}

void AtomicFile::write(const void* data, size_t n) {
  if (fd_ < 0) fail("{}: write after commit", path_);
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t k = ::write(fd_, p, n);
    if (k < 0) {
      if (errno == EINTR) continue;
      fail("{}: write failed: {}", path_, std::strerror(errno));
    }
    p += k;
    n -= size_t(k);
    written_ += uint64_t(k);
  }
}

void AtomicFile::commit() {
  if (fd_ < 0) fail("{}: committed twice", path_);
  if (::fsync(fd_) != 0) fail("{}: fsync failed: {}", path_, std::strerror(errno));
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    ::unlink(tmp_path_.c_str());
    fail("{}: close failed: {}", path_, std::strerror(errno));
  }
  if (::rename(tmp_path_.c_str(), path_.c_str()) != 0) {
    const int err = errno;
    ::unlink(tmp_path_.c_str());
    fail("{}: cannot rename the temporary file into place: {}", path_, std::strerror(err));
  }
  fsync_dir(parent_of(path_));
}

void write_file_atomic(const std::string& path, std::string_view bytes) {
  AtomicFile f(path);
  f.write(bytes);
  f.commit();
}

AtomicDirectory::AtomicDirectory(std::string dir) : dir_(std::move(dir)) {
  while (dir_.size() > 1 && dir_.back() == '/') dir_.pop_back();
  if (fs::exists(dir_) && !fs::is_directory(dir_)) fail("{}: exists and is not a directory", dir_);
  const std::string parent = parent_of(dir_);
  std::error_code ec;
  fs::create_directories(parent, ec);
  tmp_path_ = dir_ + ".tmp-XXXXXX";
  if (!::mkdtemp(tmp_path_.data())) fail("{}: cannot create a temporary folder beside it: {}", dir_, std::strerror(errno));
}

AtomicDirectory::~AtomicDirectory() {
  if (!committed_) {
    std::error_code ec;
    fs::remove_all(tmp_path_, ec);
  }
}

void AtomicDirectory::commit() {
  if (committed_) fail("{}: committed twice", dir_);
  for (const auto& e : fs::directory_iterator(tmp_path_)) {
    const int fd = ::open(e.path().c_str(), O_RDONLY);
    if (fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
  }
  fsync_dir(tmp_path_);
  std::error_code ec;
  const bool fresh = !fs::exists(dir_) || fs::is_empty(dir_, ec);
  if (fresh) {
    // rename(2) replaces an empty directory atomically.
    if (::rename(tmp_path_.c_str(), dir_.c_str()) != 0)
      fail("{}: cannot rename the temporary folder into place: {}", dir_, std::strerror(errno));
  } else {
    for (const auto& e : fs::directory_iterator(tmp_path_)) {
      const std::string target = dir_ + "/" + e.path().filename().string();
      if (fs::is_directory(target, ec) && !fs::is_directory(e.path(), ec)) fs::remove_all(target, ec);
      if (::rename(e.path().c_str(), target.c_str()) != 0)
        fail("{}: cannot move {} into place: {}", dir_, e.path().filename().string(), std::strerror(errno));
    }
    fs::remove_all(tmp_path_, ec);
  }
  committed_ = true;
  fsync_dir(dir_);
  fsync_dir(parent_of(dir_));
}

}  // namespace lora
