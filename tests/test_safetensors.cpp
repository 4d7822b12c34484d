// safetensors reader and writer, and the atomic file helpers they rely on.
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>

#include <nlohmann/json.hpp>

#include "core/atomic_file.h"
#include "core/error.h"
#include "formats/safetensors.h"
#include "test_util.h"

namespace lora {
namespace {

namespace fs = std::filesystem;
using test::TempDir;

Tensor filled(DType dtype, std::vector<int64_t> shape, uint32_t seed) {
  Tensor t(dtype, std::move(shape));
  auto* p = static_cast<uint8_t*>(t.data());
  uint32_t x = seed;
  for (size_t i = 0; i < t.nbytes(); ++i) {
    x = x * 1664525u + 1013904223u;
    p[i] = uint8_t(x >> 24);
  }
  return t;
}

TEST(Safetensors, RoundTripIsBitExactWithMetadata) {
  TempDir tmp;
  std::map<std::string, Tensor> in = {
      {"b.f32", filled(DType::F32, {3, 5}, 1)},   {"a.bf16", filled(DType::BF16, {7}, 2)},
      {"c.f16", filled(DType::F16, {2, 2, 3}, 3)}, {"d.i32", filled(DType::I32, {4}, 4)},
      {"e.i64", filled(DType::I64, {2, 1}, 5)},    {"f.u8", filled(DType::U8, {3}, 6)},
      {"g.i8", filled(DType::I8, {5}, 7)},         {"h.scalar", filled(DType::F32, {}, 8)},
      {"i.empty", Tensor(DType::F32, {0, 4})},
  };
  save_safetensors(tmp / "x.safetensors", in, {{"format", "pt"}, {"note", "h\xc3\xa9"}});

  const SafetensorsFile f = SafetensorsFile::open(tmp / "x.safetensors");
  EXPECT_EQ(f.metadata(), (std::map<std::string, std::string>{{"format", "pt"}, {"note", "h\xc3\xa9"}}));
  ASSERT_EQ(f.tensors().size(), in.size());
  for (const auto& [name, t] : in) {
    ASSERT_TRUE(f.has(name)) << name;
    const Tensor r = f.load(name);
    EXPECT_EQ(r.dtype(), t.dtype()) << name;
    EXPECT_EQ(r.shape(), t.shape()) << name;
    EXPECT_EQ(std::memcmp(r.data(), t.data(), t.nbytes()), 0) << name;
  }
  EXPECT_EQ(f.find("h.scalar")->shape, std::vector<int64_t>{});
  EXPECT_FALSE(f.has("nope"));
  EXPECT_THROW(f.load("nope"), FormatError);

  // Layout: header length multiple of 8, tensors back to back in name order.
  const std::string bytes = test::read_text(tmp / "x.safetensors");
  uint64_t n = 0;
  std::memcpy(&n, bytes.data(), 8);
  EXPECT_EQ(n % 8, 0u);
  const auto header = nlohmann::json::parse(bytes.substr(8, n));
  EXPECT_EQ(header["__metadata__"]["format"], "pt");
  uint64_t expected_begin = 0;
  for (const auto& [name, t] : in) {
    EXPECT_EQ(header[name]["data_offsets"][0].get<uint64_t>(), expected_begin) << name;
    expected_begin += t.nbytes();
  }
  EXPECT_EQ(bytes.size(), 8 + n + expected_begin);
  EXPECT_EQ(header["a.bf16"]["dtype"], "BF16");
  EXPECT_EQ(header["c.f16"]["shape"], (nlohmann::json{2, 2, 3}));
}

TEST(Safetensors, NoMetadataMeansNoMetadataEntry) {
  TempDir tmp;
  save_safetensors(tmp / "x.safetensors", {{"w", filled(DType::F32, {2}, 9)}});
  const std::string bytes = test::read_text(tmp / "x.safetensors");
  EXPECT_EQ(bytes.find("__metadata__"), std::string::npos);
  EXPECT_TRUE(SafetensorsFile::open(tmp / "x.safetensors").metadata().empty());
}

// A file written by hand the way the Python library lays it out, including a tensor whose data is
// not aligned for its dtype and a dtype (F64) that validates but cannot be loaded.
TEST(Safetensors, ReadsHandWrittenFile) {
  TempDir tmp;
  const std::string header =
      R"({"u":{"dtype":"U8","shape":[3],"data_offsets":[0,3]},)"
      R"("w":{"dtype":"F32","shape":[2],"data_offsets":[3,11]},)"
      R"("d":{"dtype":"F64","shape":[1],"data_offsets":[11,19]}})";
  std::string bytes(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  bytes += header;
  bytes += std::string("\x01\x02\x03", 3);
  const float w[2] = {1.5f, -2.25f};
  bytes.append(reinterpret_cast<const char*>(w), 8);
  bytes.append(8, '\0');
  test::write_text(tmp / "h.safetensors", bytes);

  const SafetensorsFile f = SafetensorsFile::open(tmp / "h.safetensors");
  EXPECT_EQ(f.load("u").data_as<uint8_t>()[2], 3);
  const Tensor t = f.load("w");
  ASSERT_EQ(t.dtype(), DType::F32);
  EXPECT_EQ(t.f32()[0], 1.5f);
  EXPECT_EQ(t.f32()[1], -2.25f);
  EXPECT_EQ(f.find("d")->dtype_name, "F64");
  EXPECT_FALSE(f.find("d")->dtype.has_value());
  EXPECT_THROW(f.load("d"), FormatError);
}

TEST(AtomicFile, WritesCompletelyOrNotAtAll) {
  TempDir tmp;
  write_file_atomic(tmp / "a.txt", "first");
  write_file_atomic(tmp / "a.txt", "second");
  EXPECT_EQ(test::read_text(tmp / "a.txt"), "second");
  {
    AtomicFile f(tmp / "a.txt");
    f.write("partial");
    // destroyed without commit(): the old content stays, no temporary is left behind
  }
  EXPECT_EQ(test::read_text(tmp / "a.txt"), "second");
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 1);
  EXPECT_THROW(write_file_atomic(tmp / "missing-dir/a.txt", "x"), Error);
}

TEST(AtomicDirectory, CommitsWholeFolders) {
  TempDir tmp;
  {
    AtomicDirectory d(tmp / "out");
    write_file_atomic(d / "x", "1");
  }
  EXPECT_FALSE(fs::exists(tmp / "out"));  // no commit: nothing appears
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 0);
  {
    AtomicDirectory d(tmp / "out");
    write_file_atomic(d / "x", "1");
    d.commit();
  }
  EXPECT_EQ(test::read_text(tmp / "out/x"), "1");
  test::write_text(tmp / "out/keep", "mine");
  {
    AtomicDirectory d(tmp / "out/");
    write_file_atomic(d / "x", "2");
    d.commit();
  }
  EXPECT_EQ(test::read_text(tmp / "out/x"), "2");
  EXPECT_EQ(test::read_text(tmp / "out/keep"), "mine");
  EXPECT_EQ(std::distance(fs::directory_iterator(tmp.path()), fs::directory_iterator()), 1);
}

}  // namespace
}  // namespace lora
