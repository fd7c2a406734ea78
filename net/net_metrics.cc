#include "net/net_metrics.h"

namespace agentd::net {

NetMetrics::NetMetrics(MetricsRegistry& r)
    : open_connections(r.gauge("agentd_http_open_connections", "Open TCP connections (HTTP and WebSocket)")),
      ws_open(r.gauge("agentd_ws_open_sockets", "Open WebSocket sessions")),
      ws_frames_sent(r.counter("agentd_ws_frames_sent_total", "Frames written to WebSocket clients")),
      ws_replayed(r.counter("agentd_ws_frames_replayed_total", "Frames replayed from the log on (re)connect")),
      ws_slow_closed(
          r.counter("agentd_ws_slow_consumers_closed_total", "WebSockets closed because their send queue filled")),
      rejected_connections(
          r.counter("agentd_http_rejected_connections_total", "Connections closed at accept (over --max-connections)")),
      sse_open(r.gauge("agentd_sse_open_streams", "Open Server-Sent Events streams")),
      sse_events_sent(r.counter("agentd_sse_events_sent_total", "Events written to SSE clients")),
      sse_slow_closed(
          r.counter("agentd_sse_slow_consumers_closed_total", "SSE streams closed because their send queue filled")),
      r_(r) {}

void NetMetrics::record_request(std::string_view route, unsigned status, double seconds) {
  std::string labels = "route=\"" + std::string(route) + "\",status=\"" + std::to_string(status) + "\"";
  r_.counter("agentd_http_requests_total", "HTTP requests by route and status", labels).inc();
  Histogram* h = nullptr;
  {
    MutexLock lock(&mu_);
    auto it = latency_.find(route);
    if (it == latency_.end()) {
      h = &r_.histogram("agentd_http_request_duration_seconds", "HTTP request latency by route", latency_buckets(),
                        "route=\"" + std::string(route) + "\"");
      latency_.emplace(std::string(route), h);
    } else {
      h = it->second;
    }
  }
  h->observe(seconds);
}

}  // namespace agentd::net
