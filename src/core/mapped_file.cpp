#include "core/mapped_file.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "core/error.h"

namespace lora {

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail_format(path, "cannot open: {}", std::strerror(errno));
  struct stat st {};
  if (fstat(fd, &st) != 0) {
    const int err = errno;
    ::close(fd);
    fail_format(path, "cannot stat: {}", std::strerror(err));
  }
  if (S_ISDIR(st.st_mode)) {
    ::close(fd);
    fail_format(path, "is a directory, expected a file");
  }
  std::shared_ptr<MappedFile> f(new MappedFile());
  f->path_ = path;
  f->size_ = size_t(st.st_size);
  if (f->size_ > 0) {
    void* p = mmap(nullptr, f->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      fail_format(path, "cannot mmap: {}", std::strerror(err));
    }
    f->data_ = static_cast<const uint8_t*>(p);
  }
  ::close(fd);
  return f;
}

MappedFile::~MappedFile() {
  if (data_) munmap(const_cast<uint8_t*>(data_), size_);
}

void release_resident_pages(const void* data, size_t bytes) {
  const uintptr_t page = uintptr_t(sysconf(_SC_PAGESIZE));
  const uintptr_t begin = (uintptr_t(data) + page - 1) / page * page, end = (uintptr_t(data) + bytes) / page * page;
  if (end > begin) (void)madvise(reinterpret_cast<void*>(begin), end - begin, MADV_PAGEOUT);  // advice: failure is harmless
}

void ByteReader::need(size_t n, const char* what) const {
  if (n > size_ - pos_)
    fail_format(path_, "truncated: needed {} bytes for {} at offset {}, only {} left", n, what, pos_, size_ - pos_);
}

template <typename T> T ByteReader::read() {
  need(sizeof(T), "a value");
  T v;
  std::memcpy(&v, data_ + pos_, sizeof(T));
  pos_ += sizeof(T);
  return v;
}
template uint8_t ByteReader::read<uint8_t>();
template int8_t ByteReader::read<int8_t>();
template uint16_t ByteReader::read<uint16_t>();
template int16_t ByteReader::read<int16_t>();
template uint32_t ByteReader::read<uint32_t>();
template int32_t ByteReader::read<int32_t>();
template uint64_t ByteReader::read<uint64_t>();
template int64_t ByteReader::read<int64_t>();
template float ByteReader::read<float>();
template double ByteReader::read<double>();

std::string ByteReader::read_string(size_t n) {
  need(n, "a string");
  std::string s(reinterpret_cast<const char*>(data_ + pos_), n);
  pos_ += n;
  return s;
}

void ByteReader::skip(size_t n) {
  need(n, "skipped bytes");
  pos_ += n;
}

void ByteReader::seek(size_t pos) {
  if (pos > size_) fail_format(path_, "truncated: offset {} is past the end ({} bytes)", pos, size_);
  pos_ = pos;
}

}  // namespace lora
