// Errors as values that cannot be ignored.
//
// Status carries a code and a precise message ("field data.x: key starts with
// '$'"). Result<T> is either a T or a non-ok Status. Both are [[nodiscard]]:
// a caller that drops one gets a compiler warning (an error under -Werror).
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace agentd {

enum class Code {
  kOk = 0,
  kInvalidArgument,     // bad input from outside (422)
  kTooLarge,            // body / document over a configured limit (413)
  kNotFound,            // unknown plan, message, file (404)
  kAlreadyExists,       // duplicate (409 where it matters)
  kFailedPrecondition,  // wrong state for the operation (409)
  kUnauthenticated,     // identity missing where required (401)
  kOutboxFull,          // outbox at its configured maximum (503 + Retry-After)
  kUnavailable,         // a dependency is down; retry later (503)
  kIoError,             // local disk / OS failure
  kCorruption,          // stored bytes do not decode
  kVersionMismatch,     // on-disk format newer/older than this binary
  kLocked,              // another process owns the data folder
  kInternal,            // a bug
};

std::string_view code_name(Code c);

class [[nodiscard]] Status {
 public:
  Status() = default;  // ok
  Status(Code code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok() { return Status(); }
  bool is_ok() const { return code_ == Code::kOk; }
  explicit operator bool() const { return is_ok(); }
  Code code() const { return code_; }
  const std::string& message() const { return message_; }
  // "OutboxFull: map is full (max 1073741824 bytes)"
  std::string to_string() const;

  // Explicitly discard (for best-effort paths that were considered).
  void ignore() const {}

 private:
  Code code_ = Code::kOk;
  std::string message_;
};

inline Status invalid_argument(std::string m) { return {Code::kInvalidArgument, std::move(m)}; }
inline Status not_found(std::string m) { return {Code::kNotFound, std::move(m)}; }
inline Status io_error(std::string m) { return {Code::kIoError, std::move(m)}; }
inline Status corruption(std::string m) { return {Code::kCorruption, std::move(m)}; }
inline Status internal_error(std::string m) { return {Code::kInternal, std::move(m)}; }
inline Status unavailable(std::string m) { return {Code::kUnavailable, std::move(m)}; }
inline Status failed_precondition(std::string m) { return {Code::kFailedPrecondition, std::move(m)}; }

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {
    assert(!std::get<Status>(v_).is_ok() && "Result<T> built from an ok Status");
  }

  bool is_ok() const { return v_.index() == 0; }
  explicit operator bool() const { return is_ok(); }

  const Status& status() const {
    static const Status kOk;
    return is_ok() ? kOk : std::get<Status>(v_);
  }
  T& value() & {
    assert(is_ok());
    return std::get<T>(v_);
  }
  const T& value() const& {
    assert(is_ok());
    return std::get<T>(v_);
  }
  T&& value() && {
    assert(is_ok());
    return std::get<T>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace agentd

// Returns the Status of `expr` from the enclosing function when it is not ok.
#define AGENTD_RETURN_IF_ERROR(expr)                    \
  do {                                                  \
    ::agentd::Status agentd_status_ = (expr);           \
    if (!agentd_status_.is_ok()) return agentd_status_; \
  } while (0)
