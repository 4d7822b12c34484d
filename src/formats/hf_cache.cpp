#include "formats/hf_cache.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <vector>

#include "core/error.h"

namespace lora {

namespace fs = std::filesystem;

namespace {

fs::path hub_cache() {
  if (const char* c = std::getenv("HF_HUB_CACHE"); c && *c) return c;
  if (const char* h = std::getenv("HF_HOME"); h && *h) return fs::path(h) / "hub";
  const char* home = std::getenv("HOME");
  return fs::path(home ? home : "/") / ".cache" / "huggingface" / "hub";
}

std::string lower(std::string s) {
  for (char& c : s) c = char(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool is_commit_hash(const std::string& s) {
  return s.size() == 40 && std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); });
}

// ORG/NAME: two non-empty parts of letters, digits and -_. (what the Hub allows).
bool looks_like_repo_id(const std::string& id) {
  const size_t slash = id.find('/');
  if (slash == std::string::npos || slash == 0 || slash + 1 == id.size() || id.find('/', slash + 1) != std::string::npos)
    return false;
  return std::all_of(id.begin(), id.end(), [](char c) { return std::isalnum(static_cast<unsigned char>(c)) || c == '/' || c == '-' || c == '_' || c == '.'; });
}

// "a.gguf, b.gguf": the candidates an error lists.
std::string file_names(const std::vector<fs::path>& paths) {
  std::string all;
  for (const fs::path& p : paths) all += (all.empty() ? "" : ", ") + p.filename().string();
  return all;
}

}  // namespace

std::string resolve_model_path(const std::string& spec, const std::string& revision) {
  if (fs::exists(spec)) return spec;
  const size_t colon = spec.rfind(':');
  const std::string repo = colon == std::string::npos ? spec : spec.substr(0, colon);
  const std::string quant = colon == std::string::npos ? "" : spec.substr(colon + 1);
  if (!looks_like_repo_id(repo)) fail("{}: no such file or folder", spec);

  const std::string rev = revision.empty() ? "main" : revision;
  const fs::path repo_dir = hub_cache() / ("models--" + repo.substr(0, repo.find('/')) + "--" + repo.substr(repo.find('/') + 1));
  std::string commit = rev;
  if (!is_commit_hash(rev)) {
    std::ifstream ref(repo_dir / "refs" / rev);
    if (!(ref >> commit))
      fail("{}: not a file or folder, and not in the Hugging Face cache (no {}; set HF_HUB_CACHE or HF_HOME if the "
           "cache is elsewhere; nothing is downloaded)", spec, (repo_dir / "refs" / rev).string());
  }
  const fs::path snapshot = repo_dir / "snapshots" / commit;
  if (!fs::is_directory(snapshot)) fail("{}: revision {} points to {}, which is not in the cache", spec, rev, snapshot.string());

  std::vector<fs::path> ggufs;
  for (const auto& e : fs::recursive_directory_iterator(snapshot))
    if (e.path().extension() == ".gguf") ggufs.push_back(e.path());
  std::sort(ggufs.begin(), ggufs.end());
  if (!quant.empty()) {
    std::vector<fs::path> hits;
    for (const fs::path& p : ggufs)
      if (lower(p.filename().string()).find(lower(quant)) != std::string::npos) hits.push_back(p);
    if (hits.size() == 1) return hits[0].string();
    const std::string all = file_names(ggufs);
    fail("{}: {} .gguf files of {} match '{}' (it has: {})", spec, hits.size(), snapshot.string(), quant,
         all.empty() ? "none" : all);
  }
  if (fs::exists(snapshot / "config.json") || ggufs.empty()) return snapshot.string();
  if (ggufs.size() == 1) return ggufs[0].string();
  fail("{}: the repository holds several GGUF files; pick one with {}:TYPE (it has: {})", spec, repo, file_names(ggufs));
}

}  // namespace lora
