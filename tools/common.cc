#include "tools/common.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <iostream>

#include "outbox/format.h"

namespace agentd::tool {

namespace of = outbox_format;

int exit_code(const Status& s) {
  switch (s.code()) {
    case Code::kOk: return kExitOk;
    case Code::kCorruption: return kExitCorrupt;
    case Code::kVersionMismatch: return kExitFormatVersion;
    case Code::kLocked: return kExitLocked;
    case Code::kUnavailable: return kExitMongoUnavailable;
    case Code::kNotFound: return kExitNotFound;
    case Code::kIoError: return kExitIo;
    case Code::kFailedPrecondition: return kExitNotConfirmed;
    case Code::kInvalidArgument: return kExitUsage;
    default: return kExitFailed;
  }
}

int open_exit_code(const Status& s) {
  switch (s.code()) {
    case Code::kNotFound: return kExitMissingPath;
    case Code::kInvalidArgument: return kExitNotOutbox;
    default: return exit_code(s);
  }
}

int report_error(std::string_view what, const Status& s, int code) {
  std::cerr << "agentd-outbox: " << what << ": " << s.message() << "\n";
  return code;
}

std::unique_ptr<OutboxReader> open_read_only(const std::string& dir, int* exit) {
  auto r = OutboxReader::open(dir);
  if (!r.is_ok()) {
    *exit = report_error("cannot open outbox", r.status(), open_exit_code(r.status()));
    return nullptr;
  }
  return std::move(*r);
}

std::unique_ptr<Outbox> open_for_write(const std::string& dir, uint64_t map_size, int* exit) {
  OutboxOptions o;
  o.dir = dir;
  o.max_bytes = std::max<uint64_t>(map_size, 256u << 10);
  o.track_pending = false;  // appends are not made; retries queue regardless
  o.finished_plan_retention = std::chrono::seconds(0);
  o.prune_interval = std::chrono::hours(24);  // the tool never prunes
  auto ob = Outbox::open(o);
  if (!ob.is_ok()) {
    if (ob.status().code() == Code::kLocked) {
      *exit = report_error("cannot open outbox for writing", ob.status(), kExitLocked);
      std::cerr << "agentd-outbox: this command changes the outbox; stop agentd first (read-only commands "
                   "such as inspect, dump, verify and replay --dry-run work beside it)\n";
    } else {
      *exit = report_error("cannot open outbox for writing", ob.status(), open_exit_code(ob.status()));
    }
    return nullptr;
  }
  return std::move(*ob);
}

std::string printable(std::string_view bytes) {
  static const char* kHex = "0123456789abcdef";
  std::string out;
  for (char ch : bytes) {
    auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out.push_back(ch);
    } else {
      out += "\\x";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string human_bytes(uint64_t n) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[64];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  }
  return buf;
}

std::string human_age(int64_t ms) {
  if (ms < 0) ms = 0;
  int64_t s = ms / 1000;
  if (s < 60) return std::to_string(s) + " s";
  if (s < 3600) return std::to_string(s / 60) + " min " + std::to_string(s % 60) + " s";
  if (s < 86400) return std::to_string(s / 3600) + " h " + std::to_string(s % 3600 / 60) + " min";
  return std::to_string(s / 86400) + " d " + std::to_string(s % 86400 / 3600) + " h";
}

Status confirm(const std::string& prompt, bool yes) {
  if (yes) return Status::ok();
  if (!::isatty(STDIN_FILENO)) {
    return failed_precondition("refusing: " + prompt + " needs confirmation and stdin is not a terminal; pass --yes");
  }
  std::cerr << prompt << " [y/N] " << std::flush;
  std::string answer;
  if (!std::getline(std::cin, answer)) return failed_precondition("not confirmed (end of input)");
  if (answer == "y" || answer == "Y" || answer == "yes") return Status::ok();
  return failed_precondition("not confirmed");
}

bool split_message_key(std::string_view key, std::string_view* plan_id, uint64_t* seq) {
  of::Reader r(key, "message key");
  if (!r.str16(plan_id) || !r.be64(seq)) return false;
  return r.rest().empty();
}

}  // namespace agentd::tool
