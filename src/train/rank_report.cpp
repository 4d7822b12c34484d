#include "train/rank_report.h"

#include <cairo.h>

#include <algorithm>
#include <map>

#include <fmt/format.h>

#include "adapters/lora_config.h"
#include "core/error.h"
#include "train/png_file.h"

namespace lora {

namespace {

// The grid: module types in the order they first appear, layers (lm_head as row -1).
struct RankGrid {
  std::vector<std::string> columns;
  std::map<std::pair<int64_t, std::string>, int64_t> cell;
  int64_t n_layers = 0, total = 0;
  bool head = false;

  explicit RankGrid(const std::vector<std::pair<std::string, int64_t>>& ranks) {
    for (const auto& [module, rank] : ranks) {
      const std::string type = module.substr(module.rfind('.') + 1);
      if (std::find(columns.begin(), columns.end(), type) == columns.end()) columns.push_back(type);
      const int64_t row = layer_index_of(module).value_or(-1);
      n_layers = std::max(n_layers, row + 1);
      head = head || row < 0;
      cell[{row, type}] = rank;
      total += rank;
    }
  }
  int64_t rows() const { return n_layers + (head ? 1 : 0); }
  int64_t layer_of_row(int64_t r) const { return r < n_layers ? r : -1; }
  std::string row_label(int64_t r) const { return r < n_layers ? fmt::format("layer {}", r) : "lm_head"; }
};

}  // namespace

std::string format_rank_table(const std::vector<std::pair<std::string, int64_t>>& ranks) {
  const RankGrid g(ranks);
  std::string out = fmt::format("{:<9}", "");
  for (const std::string& c : g.columns) out += fmt::format(" {:>9}", c);
  out += fmt::format(" {:>7}\n", "total");
  for (int64_t r = 0; r < g.rows(); ++r) {
    out += fmt::format("{:<9}", g.row_label(r));
    int64_t sum = 0;
    for (const std::string& c : g.columns) {
      const auto it = g.cell.find({g.layer_of_row(r), c});
      out += it == g.cell.end() ? fmt::format(" {:>9}", "-") : fmt::format(" {:>9}", it->second);
      if (it != g.cell.end()) sum += it->second;
    }
    out += fmt::format(" {:>7}\n", sum);
  }
  out += fmt::format("{:<9}", "total");
  for (const std::string& c : g.columns) {
    int64_t sum = 0;
    for (int64_t r = 0; r < g.rows(); ++r) {
      const auto it = g.cell.find({g.layer_of_row(r), c});
      if (it != g.cell.end()) sum += it->second;
    }
    out += fmt::format(" {:>9}", sum);
  }
  out += fmt::format(" {:>7}\n", g.total);
  return out;
}

void plot_rank_allocation_png(const std::vector<std::pair<std::string, int64_t>>& ranks, int64_t init_r,
                              int64_t target_r, const std::string& path) {
  if (ranks.empty()) fail("{}: no adapted modules to plot", path);
  const RankGrid g(ranks);
  const int64_t rows = g.rows(), cols = int64_t(g.columns.size());

  const double cw = 78, ch = 26, left = 90, top = 70, bottom = 30, right = 20;
  const int width = int(left + cw * double(cols) + right), height = int(top + ch * double(rows) + bottom);
  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, width, height);
  cairo_t* cr = cairo_create(surface);
  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);

  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_set_font_size(cr, 15);
  cairo_move_to(cr, 10, 22);
  const std::string title = fmt::format("AdaLoRA rank allocation: {} kept of {} (init_r {}, target_r {})", g.total,
                                        init_r * int64_t(ranks.size()), init_r, target_r);
  cairo_show_text(cr, title.c_str());
  cairo_set_font_size(cr, 12);
  for (int64_t c = 0; c < cols; ++c) {
    cairo_move_to(cr, left + cw * double(c) + 6, top - 10);
    cairo_show_text(cr, g.columns[size_t(c)].c_str());
  }
  for (int64_t r = 0; r < rows; ++r) {
    const std::string label = g.row_label(r);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_move_to(cr, 10, top + ch * double(r) + ch / 2 + 4);
    cairo_show_text(cr, label.c_str());
    for (int64_t c = 0; c < cols; ++c) {
      const auto it = g.cell.find({g.layer_of_row(r), g.columns[size_t(c)]});
      const double x = left + cw * double(c), y = top + ch * double(r);
      if (it == g.cell.end()) {  // not adapted
        cairo_set_source_rgb(cr, 0.95, 0.95, 0.95);
      } else {  // white (rank 0) to deep blue (init_r)
        const double f = double(it->second) / double(std::max<int64_t>(init_r, 1));
        cairo_set_source_rgb(cr, 1 - 0.85 * f, 1 - 0.6 * f, 1 - 0.25 * f);
      }
      cairo_rectangle(cr, x, y, cw - 2, ch - 2);
      cairo_fill(cr);
      if (it != g.cell.end()) {
        const double f = double(it->second) / double(std::max<int64_t>(init_r, 1));
        cairo_set_source_rgb(cr, f > 0.55 ? 1 : 0, f > 0.55 ? 1 : 0, f > 0.55 ? 1 : 0);
        const std::string v = std::to_string(it->second);
        cairo_move_to(cr, x + cw / 2 - 4.0 * double(v.size()), y + ch / 2 + 4);
        cairo_show_text(cr, v.c_str());
      }
    }
  }

  cairo_destroy(cr);
  write_png_atomic(surface, path);
}

}  // namespace lora
