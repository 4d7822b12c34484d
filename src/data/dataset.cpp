#include "data/dataset.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

#include <fmt/format.h>

#include "core/error.h"
#include "data/encode.h"

namespace lora {

namespace {

std::vector<Sample> read_files(const std::vector<std::string>& paths, const DatasetOptions& o, std::vector<std::string>& report) {
  std::vector<Sample> all;
  for (const std::string& p : paths) {
    DatasetFile f = read_dataset_file(p, o.format);
    if (o.max_samples > 0 && int64_t(f.samples.size()) > o.max_samples) f.samples.resize(size_t(o.max_samples));
    report.push_back(fmt::format("{}: {} records ({})", p, f.samples.size(), data_format_name(f.format)));
    for (Sample& s : f.samples) all.push_back(std::move(s));
  }
  return all;
}

std::vector<TrainExample> encode(const std::vector<Sample>& samples, const char* what, const DatasetOptions& o,
                                 const Tokenizer& tok, const ChatTemplate& tmpl, std::vector<std::string>& report) {
  EncodeStats st;
  std::vector<TrainExample> out = encode_samples(tok, tmpl, samples, o.max_seq_len, o.train_on_prompt, &st);
  if (st.truncated)
    report.push_back(fmt::format("{}: {} of {} examples cut to {} tokens", what, st.truncated, samples.size(), o.max_seq_len));
  if (st.dropped)
    report.push_back(fmt::format("{}: {} examples dropped: no response token left within {} tokens", what, st.dropped,
                                 o.max_seq_len));
  return out;
}

}  // namespace

Dataset build_dataset(const DatasetOptions& o, const Tokenizer& tok, const ChatTemplate& tmpl) {
  if (o.data.empty()) fail("no training data given");
  Dataset d;
  const DataPaths paths = resolve_data_paths(o.data);
  std::vector<Sample> train = read_files(paths.train, o, d.report);
  std::vector<std::string> val_paths = o.val_data.empty() ? paths.valid : o.val_data;
  std::vector<Sample> eval = read_files(val_paths, o, d.report);

  if (val_paths.empty() && o.val_size > 0) {
    const int64_t n = o.val_size < 1 ? int64_t(std::llround(o.val_size * double(train.size()))) : int64_t(o.val_size);
    if (n < 1 || n >= int64_t(train.size()))
      fail("a validation split of {} leaves {} of {} records for training; choose a smaller --val-size", o.val_size,
           int64_t(train.size()) - n, train.size());
    std::vector<size_t> order(train.size());
    std::iota(order.begin(), order.end(), size_t(0));
    std::mt19937_64 rng(o.seed);
    std::shuffle(order.begin(), order.end(), rng);
    std::vector<bool> held(train.size(), false);
    for (int64_t i = 0; i < n; ++i) held[order[size_t(i)]] = true;
    std::vector<Sample> kept;
    for (size_t i = 0; i < train.size(); ++i) (held[i] ? eval : kept).push_back(std::move(train[i]));
    train = std::move(kept);
    d.report.push_back(fmt::format("validation: {} records held out of the training data (seed {})", n, o.seed));
  }

  d.train = encode(train, "train", o, tok, tmpl, d.report);
  if (!eval.empty()) d.eval = encode(eval, "validation", o, tok, tmpl, d.report);
  for (const TrainExample& e : d.train) {
    d.train_tokens += int64_t(e.input_ids.size());
    d.train_targets += trained_token_count(e);
  }
  const size_t unpacked = d.train.size();
  if (o.packing) d.train = pack_examples(d.train, o.max_seq_len);
  d.report.push_back(fmt::format("train: {} examples{}, {} tokens, {} trained on{}", unpacked,
                                 o.packing ? fmt::format(" packed into {} sequences", d.train.size()) : "",
                                 d.train_tokens, d.train_targets, d.eval.empty() ? "" : fmt::format("; validation: {} examples", d.eval.size())));
  return d;
}

}  // namespace lora
