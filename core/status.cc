#include "core/status.h"

namespace agentd {

std::string_view code_name(Code c) {
  switch (c) {
    case Code::kOk: return "OK";
    case Code::kInvalidArgument: return "InvalidArgument";
    case Code::kTooLarge: return "TooLarge";
    case Code::kNotFound: return "NotFound";
    case Code::kAlreadyExists: return "AlreadyExists";
    case Code::kFailedPrecondition: return "FailedPrecondition";
    case Code::kUnauthenticated: return "Unauthenticated";
    case Code::kOutboxFull: return "OutboxFull";
    case Code::kUnavailable: return "Unavailable";
    case Code::kIoError: return "IoError";
    case Code::kCorruption: return "Corruption";
    case Code::kVersionMismatch: return "VersionMismatch";
    case Code::kLocked: return "Locked";
    case Code::kInternal: return "Internal";
  }
  return "Unknown";
}

std::string Status::to_string() const {
  if (is_ok()) return "OK";
  std::string s(code_name(code_));
  s += ": ";
  s += message_;
  return s;
}

}  // namespace agentd
