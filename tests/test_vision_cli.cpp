// lora classify end to end on a tiny VGG-style net and a slice of Debian's Fashion-MNIST: pretraining from scratch
// (full fine-tuning writes a model folder), LoRA training (a PEFT adapter folder), eval --json on IDX and on an
// ImageFolder, predict --json on PNG files, and one clear error for a corrupt image.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>

#include "test_util.h"
#include "vision/idx.h"
#include "vision/image_io.h"

using lora::test::run_cli;
using lora::test::TempDir;

namespace {

const std::string kFashion = "/usr/share/datasets/fashion-mnist";

const char* kConfig = R"({"architecture": "vgg", "features": [8, "M", 16, "M"], "in_channels": 1, "avgpool": [7, 7],
  "classifier": [32], "dropout": 0.1, "num_classes": 10,
  "class_names": ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"],
  "preprocess": {"mean": [0.286], "std": [0.353]}})";

}  // namespace

TEST(VisionCli, TrainEvalPredict) {
  if (!std::filesystem::exists(kFashion + "/train-images-idx3-ubyte.gz")) GTEST_SKIP() << "dataset-fashion-mnist is not installed";
  TempDir tmp;
  std::filesystem::create_directories(tmp / "init");
  lora::test::write_text(tmp / "init/config.json", kConfig);
  auto r = run_cli("classify train -m " + (tmp / "init") + " --from-scratch --method full -d " + kFashion +
                   " --max-per-class 60 --epochs 2 --batch-size 32 --lr 2e-3 -o " + (tmp / "base"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_NE(r.out.find("600 images, 10 classes; full fine-tuning"), std::string::npos) << r.out;
  ASSERT_TRUE(std::filesystem::exists(tmp / "base/model.safetensors"));

  r = run_cli("classify eval -m " + (tmp / "base") + " -d " + kFashion + " --max-per-class 50 --json --confusion-png " + (tmp / "c.png"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  const auto before = nlohmann::json::parse(r.out);
  EXPECT_EQ(before["images"], 500);
  EXPECT_GT(before["accuracy"].get<double>(), 0.3) << "2 epochs on 600 images learn something";
  EXPECT_EQ(lora::vision::read_image(tmp / "c.png").width, 240);

  r = run_cli("classify train -m " + (tmp / "base") + " -d " + kFashion +
              " --max-per-class 10 --rank 2 --alpha 4 --target features.3,classifier.0 --epochs 1 --batch-size 20 -o " + (tmp / "ad"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // r·(8·3·3) + 16·r + r·784 + 32·r LoRA, plus the head 10·32 + 10.
  EXPECT_NE(r.out.find(std::to_string(2 * 72 + 16 * 2 + 2 * 784 + 32 * 2 + 330) + " trainable parameters"), std::string::npos) << r.out;
  const auto config = nlohmann::json::parse(lora::test::read_text(tmp / "ad/adapter_config.json"));
  EXPECT_EQ(config["target_modules"], (std::vector<std::string>{"features.3", "classifier.0"}));
  EXPECT_EQ(config["modules_to_save"], (std::vector<std::string>{"classifier.3"}));

  // An ImageFolder of PNGs written from the test IDX: eval with the adapter, predict on two of them.
  const auto images = lora::vision::read_idx(kFashion + "/t10k-images-idx3-ubyte.gz");
  const auto labels = lora::vision::read_idx(kFashion + "/t10k-labels-idx1-ubyte.gz");
  const char* names[10] = {"T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};
  for (int i = 0; i < 20; ++i) {
    const std::string dir = tmp / ("folder/" + std::string(names[labels.data[size_t(i)]]));
    std::filesystem::create_directories(dir);
    lora::vision::Image img{1, 28, 28, std::vector<uint8_t>(images.data.begin() + i * 784, images.data.begin() + (i + 1) * 784)};
    lora::vision::write_png(dir + "/" + std::to_string(i) + ".png", img);
  }
  r = run_cli("classify eval -m " + (tmp / "base") + " --adapter " + (tmp / "ad") + " -d " + (tmp / "folder") + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["images"], 20);

  r = run_cli("classify predict -m " + (tmp / "base") + " --adapter " + (tmp / "ad") + " --top-k 3 --json " +
              (tmp / "folder/Trouser/2.png") + " " + (tmp / "folder/Pullover/1.png"));
  ASSERT_EQ(r.exit_code, 0) << r.err;
  std::istringstream lines(r.out);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    const auto j = nlohmann::json::parse(line);
    ASSERT_EQ(j["top"].size(), 3u);
    ASSERT_EQ(j["logits"].size(), 10u);
    EXPECT_GE(j["top"][0]["probability"].get<double>(), j["top"][1]["probability"].get<double>());
    ++n;
  }
  EXPECT_EQ(n, 2);

  lora::test::write_text(tmp / "broken.png", std::string("\x89PNG\r\n\x1a\n\0\0\0\rIHDR", 16));
  r = run_cli("classify predict -m " + (tmp / "base") + " " + (tmp / "broken.png"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("error: " + (tmp / "broken.png") + ": corrupt PNG"), std::string::npos) << r.err;
}
