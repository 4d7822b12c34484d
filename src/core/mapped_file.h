#pragma once
// A read-only memory map of a whole file. Tensors loaded from safetensors/GGUF/llama2.c files point
// into it and hold a shared_ptr to it, so weights are paged in on use and never copied.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace lora {

class MappedFile {
 public:
  // Throws lora::FormatError naming the path when the file cannot be opened or mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile();
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;

  const uint8_t* data() const { return data_; }
  size_t size() const { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::string path_;
  const uint8_t* data_ = nullptr;
  size_t size_ = 0;
};

// Asks the kernel to reclaim the whole pages inside [data, data + bytes) (MADV_PAGEOUT): clean pages of a
// mapped file (weights already read and no longer needed) leave the resident set and are read again from
// the file if touched; other memory is swapped out or left alone, never lost. For passes over a model
// that read each tensor once (quantizing, converting), so the whole mapped file is never resident at once.
void release_resident_pages(const void* data, size_t bytes);

// Bounds-checked little-endian reader over a byte range; every read past the end throws a
// FormatError ("truncated: ...") naming the file, so corrupt headers never read out of bounds.
class ByteReader {
 public:
  ByteReader(const uint8_t* data, size_t size, std::string path) : data_(data), size_(size), path_(std::move(path)) {}
  template <typename T> T read();
  std::string read_string(size_t n);
  void skip(size_t n);
  void seek(size_t pos);
  size_t pos() const { return pos_; }
  size_t size() const { return size_; }
  size_t remaining() const { return size_ - pos_; }
  const uint8_t* ptr() const { return data_ + pos_; }
  const std::string& path() const { return path_; }

 private:
  void need(size_t n, const char* what) const;
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  std::string path_;
};

}  // namespace lora
