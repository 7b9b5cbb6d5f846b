#pragma once
// A small SVG line-plot writer: a few series of (x, y) points, each optionally with a shaded band
// (lo, hi) around it, on linear or log-10 axes with round tick values, and a legend. Enough for
// the paradox example's three figures; no dependency.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

namespace paradox::svg {

struct series {
  std::string label;
  std::vector<double> x;
  std::vector<double> y;
  std::vector<double> lo;  ///< band below y (empty: no band)
  std::vector<double> hi;  ///< band above y
  bool markers = true;
};

struct plot {
  std::string title;
  std::string x_label;
  std::string y_label;
  std::vector<series> lines;
  bool x_reversed = false;  ///< largest x on the left (time runs from t = 1 to 0 in sampling)
  bool log_y = false;
  std::vector<std::string> x_tick_labels;  ///< when not empty: category axis, label i at x = i + 1
};


inline std::string num(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

// Series are told apart by three things at once, so that curves which coincide (the full
// ensemble and a schedule that uses it most of the time often do) stay readable, in grey print
// too: a colour, a dash pattern and a marker shape. Earlier series are drawn wider, so that a
// later series lying exactly on one leaves it visible as a border on both sides.
inline const char* dashes(std::size_t i) {
  static const char* const d[] = {"", "9 4", "2 3", "12 3 2 3", "5 5", "1 5", "9 3 2 3 2 3"};
  return d[i % (sizeof(d) / sizeof(d[0]))];
}

inline double stroke_width(std::size_t i, std::size_t n) { return 1.5 + 0.7 * static_cast<double>(n - 1 - i); }

// Marker i at (x, y): circle, square, triangle, diamond, cross, plus, triangle down.
inline std::string marker(std::size_t i, double x, double y, const char* fill) {
  std::ostringstream o;
  const double r = 3.5;
  auto pt = [&](double dx, double dy) { return num(x + dx) + "," + num(y + dy) + " "; };
  switch (i % 7) {
    case 0: o << "<circle cx=\"" << num(x) << "\" cy=\"" << num(y) << "\" r=\"" << r << "\" fill=\"" << fill << "\"/>"; break;
    case 1: o << "<rect x=\"" << num(x - r) << "\" y=\"" << num(y - r) << "\" width=\"" << 2 * r << "\" height=\"" << 2 * r
              << "\" fill=\"" << fill << "\"/>"; break;
    case 2: o << "<polygon points=\"" << pt(0, -r - 1) << pt(r + 1, r) << pt(-r - 1, r) << "\" fill=\"" << fill << "\"/>"; break;
    case 3: o << "<polygon points=\"" << pt(0, -r - 1) << pt(r + 1, 0) << pt(0, r + 1) << pt(-r - 1, 0) << "\" fill=\"" << fill
              << "\"/>"; break;
    case 4: o << "<path d=\"M" << pt(-r, -r) << "L" << pt(r, r) << "M" << pt(-r, r) << "L" << pt(r, -r) << "\" stroke=\"" << fill
              << "\" stroke-width=\"2\"/>"; break;
    case 5: o << "<path d=\"M" << pt(-r - 1, 0) << "L" << pt(r + 1, 0) << "M" << pt(0, -r - 1) << "L" << pt(0, r + 1)
              << "\" stroke=\"" << fill << "\" stroke-width=\"2\"/>"; break;
    default: o << "<polygon points=\"" << pt(0, r + 1) << pt(r + 1, -r) << pt(-r - 1, -r) << "\" fill=\"" << fill << "\"/>";
  }
  return o.str();
}

// A colour-blind-safe palette (Okabe and Ito).
inline const char* colour(std::size_t i) {
  static const char* const p[] = {"#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442"};
  return p[i % (sizeof(p) / sizeof(p[0]))];
}

inline std::string escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

// Round tick values covering [lo, hi]: the step of 1, 2, 2.5 or 5 times a power of ten nearest
// (in ratio) to a fifth of the range, so that there are about 5 ticks.
inline std::vector<double> ticks(double lo, double hi) {
  const double span = hi - lo;
  const double raw = span / 5.0;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 2.5, 5.0, 10.0})
    if (std::abs(std::log(m * mag / raw)) < std::abs(std::log(step / raw))) step = m * mag;
  std::vector<double> out;
  for (double v = std::ceil(lo / step - 1e-9) * step; v <= hi + 1e-9 * step; v += step) out.push_back(std::abs(v) < 1e-12 * step ? 0.0 : v);
  return out;
}

inline std::string tick_label(double v) {
  char buf[32];
  if (v != 0.0 && (std::abs(v) >= 1e4 || std::abs(v) < 1e-3)) {
    std::snprintf(buf, sizeof buf, "%.0e", v);
  } else {
    std::snprintf(buf, sizeof buf, "%g", v);
  }
  return buf;
}


/// Writes the plot to `path`; returns false (and writes nothing) when it cannot open the file.
inline bool write(const plot& p, const std::string& path) {
  constexpr double width = 720, height = 440;
  constexpr double left = 78, right = 190, top = 42, bottom = 58;
  const double pw = width - left - right;
  const double ph = height - top - bottom;

  auto ty = [&](double v) { return p.log_y ? std::log10(v) : v; };
  double x_lo = std::numeric_limits<double>::infinity(), x_hi = -x_lo, y_lo = x_lo, y_hi = -x_lo;
  for (const auto& s : p.lines)
    for (std::size_t i = 0; i < s.x.size(); ++i) {
      if (!std::isfinite(s.y[i]) || (p.log_y && !(s.y[i] > 0))) continue;
      x_lo = std::min(x_lo, s.x[i]);
      x_hi = std::max(x_hi, s.x[i]);
      double lo = s.y[i], hi = s.y[i];
      if (!s.lo.empty() && std::isfinite(s.lo[i]) && (!p.log_y || s.lo[i] > 0)) lo = std::min(lo, s.lo[i]);
      if (!s.hi.empty() && std::isfinite(s.hi[i])) hi = std::max(hi, s.hi[i]);
      y_lo = std::min(y_lo, ty(lo));
      y_hi = std::max(y_hi, ty(hi));
    }
  if (!std::isfinite(x_lo)) x_lo = 0, x_hi = 1, y_lo = 0, y_hi = 1;
  if (!p.x_tick_labels.empty()) {
    x_lo = 0.5;
    x_hi = static_cast<double>(p.x_tick_labels.size()) + 0.5;
  }
  if (x_hi == x_lo) x_lo -= 0.5, x_hi += 0.5;
  if (y_hi == y_lo) y_lo -= 0.5, y_hi += 0.5;
  const double pad = 0.05 * (y_hi - y_lo);
  y_lo -= pad;
  y_hi += pad;

  auto sx = [&](double v) {
    const double u = (v - x_lo) / (x_hi - x_lo);
    return left + pw * (p.x_reversed ? 1.0 - u : u);
  };
  auto sy = [&](double v) { return top + ph * (1.0 - (ty(v) - y_lo) / (y_hi - y_lo)); };
  auto sy_raw = [&](double u) { return top + ph * (1.0 - (u - y_lo) / (y_hi - y_lo)); };

  std::ostringstream o;
  o << "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" << width << "\" height=\"" << height << "\" viewBox=\"0 0 "
    << width << ' ' << height << "\" font-family=\"sans-serif\" font-size=\"12\">\n";
  o << "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
  o << "<text x=\"" << left + pw / 2 << "\" y=\"24\" text-anchor=\"middle\" font-size=\"15\">" << escape(p.title)
    << "</text>\n";

  // Grid and ticks.
  if (p.log_y) {
    for (double e = std::ceil(y_lo); e <= y_hi; e += 1.0) {
      const double y = sy_raw(e);
      o << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << num(y) << "\" y2=\"" << num(y)
        << "\" stroke=\"#ddd\"/>\n";
      o << "<text x=\"" << left - 6 << "\" y=\"" << num(y + 4) << "\" text-anchor=\"end\">"
        << tick_label(std::pow(10.0, e)) << "</text>\n";
    }
  } else {
    for (double v : ticks(y_lo, y_hi)) {
      const double y = sy_raw(v);
      o << "<line x1=\"" << left << "\" x2=\"" << left + pw << "\" y1=\"" << num(y) << "\" y2=\"" << num(y)
        << "\" stroke=\"#ddd\"/>\n";
      o << "<text x=\"" << left - 6 << "\" y=\"" << num(y + 4) << "\" text-anchor=\"end\">" << tick_label(v)
        << "</text>\n";
    }
  }
  if (!p.x_tick_labels.empty()) {
    for (std::size_t i = 0; i < p.x_tick_labels.size(); ++i) {
      const double x = sx(static_cast<double>(i + 1));
      o << "<text x=\"" << num(x) << "\" y=\"" << top + ph + 18 << "\" text-anchor=\"middle\">"
        << escape(p.x_tick_labels[i]) << "</text>\n";
    }
  } else {
    for (double v : ticks(x_lo, x_hi)) {
      const double x = sx(v);
      o << "<line x1=\"" << num(x) << "\" x2=\"" << num(x) << "\" y1=\"" << top << "\" y2=\"" << top + ph
        << "\" stroke=\"#eee\"/>\n";
      o << "<text x=\"" << num(x) << "\" y=\"" << top + ph + 18 << "\" text-anchor=\"middle\">"
        << tick_label(v) << "</text>\n";
    }
  }
  o << "<rect x=\"" << left << "\" y=\"" << top << "\" width=\"" << pw << "\" height=\"" << ph
    << "\" fill=\"none\" stroke=\"#444\"/>\n";
  o << "<text x=\"" << left + pw / 2 << "\" y=\"" << height - 16 << "\" text-anchor=\"middle\">" << escape(p.x_label)
    << "</text>\n";
  o << "<text transform=\"translate(18," << top + ph / 2 << ") rotate(-90)\" text-anchor=\"middle\">"
    << escape(p.y_label) << (p.log_y ? " (log scale)" : "") << "</text>\n";

  // Bands first, then lines and markers on top.
  for (std::size_t s = 0; s < p.lines.size(); ++s) {
    const auto& l = p.lines[s];
    if (l.lo.empty() || l.hi.empty()) continue;
    std::ostringstream pts;
    bool any = false;
    for (std::size_t i = 0; i < l.x.size(); ++i)
      if (std::isfinite(l.hi[i]) && (!p.log_y || l.hi[i] > 0)) {
        pts << num(sx(l.x[i])) << ',' << num(sy(l.hi[i])) << ' ';
        any = true;
      }
    for (std::size_t i = l.x.size(); i-- > 0;)
      if (std::isfinite(l.lo[i]) && (!p.log_y || l.lo[i] > 0)) pts << num(sx(l.x[i])) << ',' << num(sy(l.lo[i])) << ' ';
    // Faint fills, so that overlapping bands stay apart, each outlined in its series' colour and dashes.
    if (any)
      o << "<polygon points=\"" << pts.str() << "\" fill=\"" << colour(s) << "\" fill-opacity=\"0.08\" stroke=\""
        << colour(s) << "\" stroke-opacity=\"0.7\" stroke-width=\"0.8\" stroke-dasharray=\"" << dashes(s)
        << "\"/>\n";
  }
  for (std::size_t s = 0; s < p.lines.size(); ++s) {
    const auto& l = p.lines[s];
    std::ostringstream pts;
    for (std::size_t i = 0; i < l.x.size(); ++i)
      if (std::isfinite(l.y[i]) && (!p.log_y || l.y[i] > 0)) pts << num(sx(l.x[i])) << ',' << num(sy(l.y[i])) << ' ';
    const double w = stroke_width(s, p.lines.size());
    o << "<polyline points=\"" << pts.str() << "\" fill=\"none\" stroke=\"" << colour(s) << "\" stroke-width=\"" << w
      << "\" stroke-dasharray=\"" << dashes(s) << "\" stroke-linejoin=\"round\"/>\n";
    if (l.markers)
      for (std::size_t i = 0; i < l.x.size(); ++i)
        if (std::isfinite(l.y[i]) && (!p.log_y || l.y[i] > 0))
          o << marker(s, sx(l.x[i]), sy(l.y[i]), colour(s)) << "\n";
    const double ly = top + 14 + 20.0 * static_cast<double>(s);
    o << "<line x1=\"" << left + pw + 10 << "\" x2=\"" << left + pw + 40 << "\" y1=\"" << ly << "\" y2=\"" << ly
      << "\" stroke=\"" << colour(s) << "\" stroke-width=\"2\" stroke-dasharray=\"" << dashes(s) << "\"/>\n";
    if (l.markers) o << marker(s, left + pw + 25, ly, colour(s)) << "\n";
    o << "<text x=\"" << left + pw + 44 << "\" y=\"" << ly + 4 << "\">" << escape(l.label) << "</text>\n";
  }
  o << "</svg>\n";

  std::ofstream f(path);
  if (!f) return false;
  f << o.str();
  return static_cast<bool>(f);
}

}  // namespace paradox::svg
