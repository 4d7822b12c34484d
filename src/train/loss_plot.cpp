#include "train/loss_plot.h"

#include <cairo.h>

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/error.h"
#include "train/png_file.h"

namespace lora {

std::vector<double> smooth_loss(const std::vector<double>& values) {
  if (values.empty()) return {};
  // weight = 1.8 * (1 / (1 + e^(-0.05 n)) - 0.5), as LLaMA-Factory's plot_loss does
  const double weight = 1.8 * (1.0 / (1.0 + std::exp(-0.05 * double(values.size()))) - 0.5);
  std::vector<double> out;
  double last = values[0];
  for (double v : values) {
    last = last * weight + (1.0 - weight) * v;
    out.push_back(last);
  }
  return out;
}

namespace {

// A "nice" tick step (1, 2 or 5 times a power of ten) giving about `target` ticks over span.
double tick_step(double span, int target) {
  const double raw = span / std::max(1, target);
  const double p = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * p) return m * p;
  return 10 * p;
}

}  // namespace

void plot_loss_png(const LossCurve& curve, const std::string& path, int width, int height) {
  if (curve.train.empty()) fail("{}: no loss values to plot", path);
  double x0 = curve.train.front().first, x1 = curve.train.back().first;
  double y0 = INFINITY, y1 = -INFINITY;
  for (const auto& [x, y] : curve.train) y0 = std::min(y0, y), y1 = std::max(y1, y);
  for (const auto& [x, y] : curve.eval) y0 = std::min(y0, y), y1 = std::max(y1, y), x1 = std::max(x1, x);
  if (x1 <= x0) x1 = x0 + 1;
  const double pad = std::max(1e-3, (y1 - y0) * 0.05);
  y0 -= pad;
  y1 += pad;

  cairo_surface_t* surface = cairo_image_surface_create(CAIRO_FORMAT_ARGB32, width, height);
  cairo_t* cr = cairo_create(surface);
  const double left = 70, right = 20, top = 40, bottom = 50;
  const double pw = width - left - right, ph = height - top - bottom;
  auto X = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
  auto Y = [&](double y) { return top + (1.0 - (y - y0) / (y1 - y0)) * ph; };

  cairo_set_source_rgb(cr, 1, 1, 1);
  cairo_paint(cr);
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, CAIRO_FONT_WEIGHT_NORMAL);

  // grid and tick labels
  cairo_set_font_size(cr, 12);
  cairo_set_line_width(cr, 1);
  const double ys = tick_step(y1 - y0, 6), xs = tick_step(x1 - x0, 8);
  for (double y = std::ceil(y0 / ys) * ys; y <= y1; y += ys) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, left, Y(y));
    cairo_line_to(cr, left + pw, Y(y));
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    const std::string label = fmt::format("{:.3g}", std::abs(y) < 1e-9 * ys ? 0.0 : y);  // no "-0"
    cairo_move_to(cr, 8, Y(y) + 4);
    cairo_show_text(cr, label.c_str());
  }
  for (double x = std::ceil(x0 / xs) * xs; x <= x1; x += xs) {
    cairo_set_source_rgb(cr, 0.9, 0.9, 0.9);
    cairo_move_to(cr, X(x), top);
    cairo_line_to(cr, X(x), top + ph);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0.2, 0.2, 0.2);
    const std::string label = fmt::format("{:g}", x);
    cairo_move_to(cr, X(x) - 3.0 * double(label.size()), top + ph + 18);
    cairo_show_text(cr, label.c_str());
  }
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_rectangle(cr, left, top, pw, ph);
  cairo_stroke(cr);

  auto polyline = [&](const std::vector<std::pair<double, double>>& pts, double r, double g, double b, double alpha,
                      double line_width) {
    cairo_set_source_rgba(cr, r, g, b, alpha);
    cairo_set_line_width(cr, line_width);
    for (size_t i = 0; i < pts.size(); ++i) {
      if (i == 0)
        cairo_move_to(cr, X(pts[i].first), Y(pts[i].second));
      else
        cairo_line_to(cr, X(pts[i].first), Y(pts[i].second));
    }
    cairo_stroke(cr);
  };
  polyline(curve.train, 0.12, 0.47, 0.71, 0.4, 1.0);  // raw: light
  std::vector<double> raw;
  for (const auto& p : curve.train) raw.push_back(p.second);
  const std::vector<double> sm = smooth_loss(raw);
  std::vector<std::pair<double, double>> smoothed;
  for (size_t i = 0; i < sm.size(); ++i) smoothed.emplace_back(curve.train[i].first, sm[i]);
  polyline(smoothed, 0.12, 0.47, 0.71, 1.0, 2.0);
  if (!curve.eval.empty()) {
    polyline(curve.eval, 0.85, 0.33, 0.1, 1.0, 2.0);
    for (const auto& [x, y] : curve.eval) {
      cairo_arc(cr, X(x), Y(y), 3.5, 0, 2 * M_PI);
      cairo_fill(cr);
    }
  }

  // title, axis names, legend
  cairo_set_source_rgb(cr, 0, 0, 0);
  cairo_set_font_size(cr, 16);
  cairo_move_to(cr, left, 25);
  cairo_show_text(cr, curve.title.c_str());
  cairo_set_font_size(cr, 12);
  cairo_move_to(cr, left + pw / 2 - 15, height - 12);
  cairo_show_text(cr, "step");
  const char* names[] = {"original", "smoothed", "eval"};
  const double colors[3][4] = {{0.12, 0.47, 0.71, 0.4}, {0.12, 0.47, 0.71, 1}, {0.85, 0.33, 0.1, 1}};
  const int n_legend = curve.eval.empty() ? 2 : 3;
  for (int i = 0; i < n_legend; ++i) {
    const double ly = top + 18 + 18 * i, lx = left + pw - 120;
    cairo_set_source_rgba(cr, colors[i][0], colors[i][1], colors[i][2], colors[i][3]);
    cairo_set_line_width(cr, 2);
    cairo_move_to(cr, lx, ly - 4);
    cairo_line_to(cr, lx + 24, ly - 4);
    cairo_stroke(cr);
    cairo_set_source_rgb(cr, 0, 0, 0);
    cairo_move_to(cr, lx + 30, ly);
    cairo_show_text(cr, names[i]);
  }

  cairo_destroy(cr);
  write_png_atomic(surface, path);
}

}  // namespace lora
