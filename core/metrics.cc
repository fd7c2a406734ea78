#include "core/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <stdexcept>

namespace agentd {

void Gauge::add(double d) {
  double cur = v_.load(std::memory_order_relaxed);
  while (!v_.compare_exchange_weak(cur, cur + d, std::memory_order_relaxed)) {
  }
}

Histogram::Histogram(std::vector<double> upper_bounds)
    : bounds_(std::move(upper_bounds)), buckets_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) buckets_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(double v) {
  size_t i = 0;
  while (i < bounds_.size() && v > bounds_[i]) ++i;
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  double cur = sum_.load(std::memory_order_relaxed);
  while (!sum_.compare_exchange_weak(cur, cur + v, std::memory_order_relaxed)) {
  }
}

std::vector<double> latency_buckets() {
  return {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

MetricsRegistry::Series& MetricsRegistry::series(std::string_view name, std::string_view help, Kind kind,
                                                 std::string_view labels) {
  std::lock_guard lock(mu_);
  auto it = families_.find(name);
  if (it == families_.end()) it = families_.emplace(std::string(name), Family{kind, std::string(help), {}}).first;
  if (it->second.kind != kind) throw std::logic_error("metric " + std::string(name) + " registered with two kinds");
  return it->second.series[std::string(labels)];
}

Counter& MetricsRegistry::counter(std::string_view name, std::string_view help, std::string_view labels) {
  Series& s = series(name, help, Kind::kCounter, labels);
  std::lock_guard lock(mu_);
  if (!s.counter) s.counter = std::make_unique<Counter>();
  return *s.counter;
}

Gauge& MetricsRegistry::gauge(std::string_view name, std::string_view help, std::string_view labels) {
  Series& s = series(name, help, Kind::kGauge, labels);
  std::lock_guard lock(mu_);
  if (!s.gauge) s.gauge = std::make_unique<Gauge>();
  return *s.gauge;
}

Histogram& MetricsRegistry::histogram(std::string_view name, std::string_view help, std::vector<double> bounds,
                                      std::string_view labels) {
  Series& s = series(name, help, Kind::kHistogram, labels);
  std::lock_guard lock(mu_);
  if (!s.histogram) s.histogram = std::make_unique<Histogram>(std::move(bounds));
  return *s.histogram;
}

void MetricsRegistry::gauge_fn(std::string_view name, std::string_view help, std::function<double()> fn,
                               std::string_view labels) {
  Series& s = series(name, help, Kind::kGauge, labels);
  std::lock_guard lock(mu_);
  s.fn = std::move(fn);
}

namespace {

std::string fmt_double(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (std::isnan(v)) return "NaN";
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.15g", v);  // shortest form that reads back exactly
  if (std::strtod(buf, nullptr) != v) std::snprintf(buf, sizeof buf, "%.17g", v);
  return buf;
}

std::string with_labels(const std::string& name, const std::string& labels, const std::string& extra = {}) {
  std::string all = labels;
  if (!extra.empty()) all += (all.empty() ? "" : ",") + extra;
  return all.empty() ? name : name + "{" + all + "}";
}

}  // namespace

std::string MetricsRegistry::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  for (const auto& [name, fam] : families_) {
    const char* type = fam.kind == Kind::kCounter ? "counter" : fam.kind == Kind::kGauge ? "gauge" : "histogram";
    out += "# HELP " + name + " " + fam.help + "\n# TYPE " + name + " " + type + "\n";
    for (const auto& [labels, s] : fam.series) {
      if (s.counter) out += with_labels(name, labels) + " " + std::to_string(s.counter->value()) + "\n";
      if (s.gauge) out += with_labels(name, labels) + " " + fmt_double(s.gauge->value()) + "\n";
      if (s.fn) out += with_labels(name, labels) + " " + fmt_double(s.fn()) + "\n";
      if (s.histogram) {
        const Histogram& h = *s.histogram;
        uint64_t cum = 0;
        for (size_t i = 0; i <= h.bounds().size(); ++i) {
          cum += h.bucket(i);
          std::string le = i < h.bounds().size() ? fmt_double(h.bounds()[i]) : "+Inf";
          out += with_labels(name + "_bucket", labels, "le=\"" + le + "\"") + " " + std::to_string(cum) + "\n";
        }
        out += with_labels(name + "_sum", labels) + " " + fmt_double(h.sum()) + "\n";
        out += with_labels(name + "_count", labels) + " " + std::to_string(h.count()) + "\n";
      }
    }
  }
  return out;
}

}  // namespace agentd
