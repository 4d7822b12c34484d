// release_resident_pages: a mapped file's pages leave the resident set and read back the same; memory
// that is not a file's is never lost.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cstring>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "core/tensor.h"
#include "test_util.h"

namespace lora {
namespace {

// This process's resident pages of mapped files, in KiB (/proc/self/status's RssFile).
long rss_file_kib() {
  const std::string status = test::read_text("/proc/self/status");
  const size_t at = status.find("RssFile:");
  return at == std::string::npos ? -1 : std::stol(status.substr(at + 8));
}

TEST(MappedFile, ReleasedPagesLeaveTheResidentSetAndReadBackTheSame) {
  test::TempDir tmp;
  std::string bytes(16 << 20, '\0');
  for (size_t i = 0; i < bytes.size(); ++i) bytes[i] = char((i * 2654435761u) >> 24);
  test::write_text(tmp / "weights.bin", bytes);
  const auto file = MappedFile::open(tmp / "weights.bin");
  ASSERT_EQ(std::memcmp(file->data(), bytes.data(), bytes.size()), 0);  // every page touched
  const long before = rss_file_kib();
  release_resident_pages(file->data(), file->size());
  const long after = rss_file_kib();
  std::printf("  resident pages of mapped files: %ld KiB with the 16 MiB file read, %ld KiB after the release\n", before, after);
  EXPECT_LE(before - after, 16 * 1024 + 64);
  EXPECT_GE(before - after, 16 * 1024 * 3 / 4) << "the file's pages stayed resident";
  EXPECT_EQ(std::memcmp(file->data(), bytes.data(), bytes.size()), 0);  // read again from the file

  // memory that is no file's (a tensor's own storage) keeps its contents
  Tensor t(DType::F32, {1 << 20});
  for (int64_t i = 0; i < t.numel(); ++i) t.f32()[i] = float(i);
  release_resident_pages(t.data(), t.nbytes());
  for (int64_t i = 0; i < t.numel(); i += 4097) ASSERT_EQ(t.f32()[i], float(i));
}

}  // namespace
}  // namespace lora
