// HTTP and WebSocket metrics, registered in the shared MetricsRegistry.
#pragma once

#include <map>
#include <string>
#include <string_view>

#include "core/metrics.h"
#include "core/thread_annotations.h"

namespace agentd::net {

class NetMetrics {
 public:
  explicit NetMetrics(MetricsRegistry& r);

  // agentd_http_requests_total{route,status} and the latency histogram.
  void record_request(std::string_view route, unsigned status, double seconds);

  Gauge& open_connections;        // TCP connections (HTTP and WebSocket)
  Gauge& ws_open;                 // open WebSockets
  Counter& ws_frames_sent;        // frames written to WebSockets
  Counter& ws_replayed;           // of which replayed from the log
  Counter& ws_slow_closed;        // closed because their send queue filled
  Counter& rejected_connections;  // over --max-connections
  Gauge& sse_open;                // open SSE streams (net/sse_session.h)
  Counter& sse_events_sent;       // SSE events written (persisted and live-only)
  Counter& sse_slow_closed;       // SSE streams closed because their send queue filled

 private:
  MetricsRegistry& r_;
  Mutex mu_;
  std::map<std::string, Histogram*, std::less<>> latency_ GUARDED_BY(mu_);  // by route
};

}  // namespace agentd::net
