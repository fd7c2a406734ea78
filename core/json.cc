#include "core/json.h"

#include <rapidjson/error/en.h>
#include <rapidjson/memorystream.h>
#include <rapidjson/reader.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <unordered_set>
#include <vector>

namespace agentd {
namespace {

// Numbers arrive as text (RawNumber) and are converted here: RapidJSON
// 1.1.0's full-precision path turns a zero significand with an exponent
// ("0e48") into garbage (3.17e29, via __builtin_clzll(0)), and it silently
// turns integers beyond int64 into doubles. Found by tests/fuzz/json_fuzz.
constexpr unsigned kParseFlags =
    rapidjson::kParseValidateEncodingFlag | rapidjson::kParseNumbersAsStringsFlag | rapidjson::kParseIterativeFlag;

// A "\uDC00"-style escape of a lone surrogate decodes to ED A0..BF xx, which
// is not UTF-8 (the validation flag checks only raw bytes). Found by json_fuzz.
bool has_surrogate(const char* s, size_t n) {
  for (const char* p = static_cast<const char*>(std::memchr(s, '\xED', n)); p != nullptr;
       p = static_cast<const char*>(std::memchr(p + 1, '\xED', n - static_cast<size_t>(p + 1 - s)))) {
    if (static_cast<size_t>(p + 1 - s) < n && static_cast<unsigned char>(p[1]) >= 0xA0) return true;
  }
  return false;
}

// check_key()'s rules: the reason (after the path) a key breaks one, or
// null. The parse asks for every key and builds the path only on failure.
const char* key_rule_broken(std::string_view key) {
  if (!key.empty() && key.front() == '$') return ": key starts with '$' (reserved for MongoDB operators)";
  if (key.find('.') != std::string_view::npos) return ": key contains '.' (MongoDB reads it as a path)";
  if (key.find('\0') != std::string_view::npos) return ": key contains a NUL character";
  return nullptr;
}

// SAX filter in front of the Document builder: tracks the field path, and
// stops the parse at the first depth, key or integer violation.
class StrictHandler {
 public:
  StrictHandler(rapidjson::Document& doc, const JsonLimits& limits) : doc_(doc), limits_(limits) {}

  bool Null() { return value() && doc_.Null(); }
  bool Bool(bool b) { return value() && doc_.Bool(b); }
  bool Int(int i) { return value() && doc_.Int(i); }
  bool Uint(unsigned u) { return value() && doc_.Uint(u); }
  bool Int64(int64_t i) { return value() && doc_.Int64(i); }
  bool Uint64(uint64_t) { return false; }  // numbers come through RawNumber
  bool Double(double d) { return value() && doc_.Double(d); }
  // `s` is NUL-terminated and already checked against JSON's number grammar.
  bool RawNumber(const char* s, rapidjson::SizeType n, bool) {
    const char* end = s + n;
    if (std::strpbrk(s, ".eE") == nullptr) {
      int64_t i = 0;
      auto [p, ec] = std::from_chars(s, end, i);
      if (ec != std::errc() || p != end) {
        return fail(invalid_argument(path() + ": integer out of range (beyond int64)"));
      }
      return value() && doc_.Int64(i);
    }
    double d = 0;
    auto [p, ec] = std::from_chars(s, end, d);
    if (ec == std::errc::result_out_of_range) d = std::strtod(s, nullptr);  // underflow -> 0 or subnormal
    if ((ec != std::errc() && ec != std::errc::result_out_of_range) || p != end || !std::isfinite(d)) {
      return fail(invalid_argument(path() + ": number out of range (beyond double)"));
    }
    return value() && doc_.Double(d);
  }
  bool String(const char* s, rapidjson::SizeType n, bool copy) {
    if (has_surrogate(s, n)) return fail(invalid_argument(path() + ": string holds a lone UTF-16 surrogate"));
    return value() && doc_.String(s, n, copy);
  }
  bool StartObject() { return open(false) && doc_.StartObject(); }
  bool Key(const char* s, rapidjson::SizeType n, bool copy) {
    Frame& f = stack_.back();
    f.has_key = true;
    if (has_surrogate(s, n)) {
      f.key = "(invalid key)";  // not the key itself: it is not UTF-8
      return fail(invalid_argument(path() + ": key holds a lone UTF-16 surrogate"));
    }
    f.key.assign(s, n);
    if (const char* why = key_rule_broken(f.key)) return fail(invalid_argument(path() + why));
    if (limits_.client_input) {
      if (n == 0) return fail(invalid_argument(path() + ": empty key (the MongoDB driver refuses the document)"));
      if (!f.keys.insert(f.key).second) {
        return fail(invalid_argument(path() + ": key appears twice in one object (MongoDB does not support it)"));
      }
    }
    return doc_.Key(s, n, copy);
  }
  bool EndObject(rapidjson::SizeType n) {
    stack_.pop_back();
    return doc_.EndObject(n);
  }
  bool StartArray() { return open(true) && doc_.StartArray(); }
  bool EndArray(rapidjson::SizeType n) {
    stack_.pop_back();
    return doc_.EndArray(n);
  }

  Status& error() { return error_; }
  std::string path() const {
    std::string p;
    for (const Frame& f : stack_) {
      if (f.array) {
        p += '[';
        p += std::to_string(f.index == 0 ? 0 : f.index - 1);
        p += ']';
      } else if (f.has_key) {
        if (!p.empty()) p += '.';
        p += f.key;
      }
    }
    return p.empty() ? std::string("$root") : p;
  }

 private:
  struct Frame {
    bool array = false;
    bool has_key = false;
    size_t index = 0;                      // arrays: number of elements seen so far
    std::string key;                       // objects: current key
    std::unordered_set<std::string> keys;  // objects, with client_input: the keys so far
  };

  // Called before every value (scalar or container) to advance array indexes.
  bool value() {
    if (!stack_.empty() && stack_.back().array) ++stack_.back().index;
    return true;
  }
  bool open(bool array) {
    value();
    if (static_cast<int>(stack_.size()) >= limits_.max_depth) {
      return fail(invalid_argument(path() + ": nesting deeper than " + std::to_string(limits_.max_depth)));
    }
    stack_.push_back(Frame{array, false, 0, {}, {}});
    return true;
  }
  bool fail(Status s) {
    error_ = std::move(s);
    return false;
  }

  rapidjson::Document& doc_;
  const JsonLimits& limits_;
  std::vector<Frame> stack_;
  Status error_;
};

}  // namespace

Status check_key(std::string_view key, std::string_view path) {
  if (const char* why = key_rule_broken(key)) return invalid_argument(std::string(path) + why);
  return Status::ok();
}

Result<rapidjson::Document> parse_strict(std::string_view text, const JsonLimits& limits) {
  if (text.size() > limits.max_bytes) {
    return Status(Code::kTooLarge, "body of " + std::to_string(text.size()) + " bytes is over the limit of " +
                                       std::to_string(limits.max_bytes) + " bytes");
  }
  rapidjson::Document doc;
  StrictHandler handler(doc, limits);
  rapidjson::Reader reader;
  rapidjson::MemoryStream ms(text.data(), text.size());
  rapidjson::ParseResult pr;
  auto generator = [&](rapidjson::Document&) {
    pr = reader.Parse<kParseFlags>(ms, handler);
    return !pr.IsError();
  };
  doc.Populate(generator);
  if (!handler.error().is_ok()) return std::move(handler.error());
  if (pr.IsError()) {
    return invalid_argument("invalid JSON at offset " + std::to_string(pr.Offset()) + ": " +
                            rapidjson::GetParseError_En(pr.Code()));
  }
  return doc;
}

std::string write_canonical(const rapidjson::Value& v) {
  rapidjson::StringBuffer buf;
  rapidjson::Writer<rapidjson::StringBuffer> w(buf);
  v.Accept(w);
  return std::string(buf.GetString(), buf.GetSize());
}

namespace {

// How rapidjson's Writer (write_canonical) escapes a byte in a string: '"'
// and '\\' get a backslash, \b \t \n \f \r their short forms, the other
// bytes below 0x20 \u00XX (upper-case hex); every other byte is itself.
// kEscapeExtra: the bytes the escape adds (0, 1 or 5); kEscapeChar: the
// byte written (after the backslash when one is added).
constexpr std::array<uint8_t, 256> kEscapeExtra = [] {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 0x20; ++c) t[c] = 5;
  for (int c : {'"', '\\', '\b', '\t', '\n', '\f', '\r'}) t[c] = 1;
  return t;
}();
constexpr std::array<char, 256> kEscapeChar = [] {
  std::array<char, 256> t{};
  for (int c = 0; c < 256; ++c) t[c] = static_cast<char>(c);
  t['\b'] = 'b';
  t['\t'] = 't';
  t['\n'] = 'n';
  t['\f'] = 'f';
  t['\r'] = 'r';
  return t;
}();

}  // namespace

void append_json_string(std::string* out, std::string_view s) {
  // Room for the worst case (counted by compares, which vectorize), the
  // bytes written in place without a branch per byte, then the unused
  // room cut off (GET /plan escapes megabytes here).
  size_t controls = 0, quotes = 0;
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    controls += c < 0x20;
    quotes += (c == '"') | (c == '\\');
  }
  const size_t at = out->size();
  out->resize(at + s.size() + 5 * controls + quotes + 2);
  char* const begin = out->data() + at;
  char* p = begin;
  *p++ = '"';
  if (controls + quotes == 0) {
    if (!s.empty()) std::memcpy(p, s.data(), s.size());  // an empty view's data() may be null
    p += s.size();
  } else {
    static constexpr char kHex[] = "0123456789ABCDEF";
    for (char ch : s) {
      const auto c = static_cast<unsigned char>(ch);
      const uint8_t e = kEscapeExtra[c];
      if (e == 5) [[unlikely]] {
        std::memcpy(p, "\\u00", 4);
        p[4] = kHex[c >> 4];
        p[5] = kHex[c & 0xF];
        p += 6;
        continue;
      }
      // e == 0: the byte itself at p[0]; e == 1: a backslash, then its char.
      p[0] = '\\';
      p[e] = kEscapeChar[c];
      p += 1 + e;
    }
  }
  *p++ = '"';
  out->resize(at + static_cast<size_t>(p - begin));
}

JsonObject::JsonObject() { out_ = "{"; }

void JsonObject::key(std::string_view k) {
  if (!first_) out_ += ',';
  first_ = false;
  append_json_string(&out_, k);
  out_ += ':';
}

JsonObject& JsonObject::str(std::string_view k, std::string_view v) {
  key(k);
  append_json_string(&out_, v);
  return *this;
}

JsonObject& JsonObject::num(std::string_view k, int64_t v) {
  key(k);
  out_ += std::to_string(v);
  return *this;
}

JsonObject& JsonObject::boolean(std::string_view k, bool v) {
  key(k);
  out_ += v ? "true" : "false";
  return *this;
}

JsonObject& JsonObject::null(std::string_view k) {
  key(k);
  out_ += "null";
  return *this;
}

JsonObject& JsonObject::raw(std::string_view k, std::string_view json) {
  key(k);
  out_ += json;
  return *this;
}

std::string JsonObject::done() {
  out_ += '}';
  return std::move(out_);
}

}  // namespace agentd
