#include "store/bson_codec.h"

#include <rapidjson/document.h>
#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <algorithm>
#include <limits>
#include <string>

namespace agentd {
namespace {

Status append_value(bson_t* out, const char* key, int key_len, const rapidjson::Value& v);

Status append_members(bson_t* out, const rapidjson::Value& obj) {
  for (auto it = obj.MemberBegin(); it != obj.MemberEnd(); ++it) {
    AGENTD_RETURN_IF_ERROR(
        append_value(out, it->name.GetString(), static_cast<int>(it->name.GetStringLength()), it->value));
  }
  return Status::ok();
}

Status append_value(bson_t* out, const char* key, int key_len, const rapidjson::Value& v) {
  bool ok = true;
  switch (v.GetType()) {
    case rapidjson::kNullType: ok = bson_append_null(out, key, key_len); break;
    case rapidjson::kFalseType: ok = bson_append_bool(out, key, key_len, false); break;
    case rapidjson::kTrueType: ok = bson_append_bool(out, key, key_len, true); break;
    case rapidjson::kStringType:
      ok = bson_append_utf8(out, key, key_len, v.GetString(), static_cast<int>(v.GetStringLength()));
      break;
    case rapidjson::kNumberType:
      if (v.IsInt()) {
        ok = bson_append_int32(out, key, key_len, v.GetInt());
      } else if (v.IsInt64()) {
        ok = bson_append_int64(out, key, key_len, v.GetInt64());
      } else if (v.IsUint64()) {
        return invalid_argument(std::string(key, key_len) + ": integer out of range for BSON");
      } else {
        ok = bson_append_double(out, key, key_len, v.GetDouble());
      }
      break;
    case rapidjson::kObjectType: {
      bson_t child;
      ok = bson_append_document_begin(out, key, key_len, &child);
      if (ok) {
        Status st = append_members(&child, v);
        ok = bson_append_document_end(out, &child);
        AGENTD_RETURN_IF_ERROR(st);
      }
      break;
    }
    case rapidjson::kArrayType: {
      bson_t child;
      ok = bson_append_array_begin(out, key, key_len, &child);
      if (ok) {
        Status st;
        for (rapidjson::SizeType i = 0; i < v.Size() && st.is_ok(); ++i) {
          std::string idx = std::to_string(i);
          st = append_value(&child, idx.c_str(), static_cast<int>(idx.size()), v[i]);
        }
        ok = bson_append_array_end(out, &child);
        AGENTD_RETURN_IF_ERROR(st);
      }
      break;
    }
  }
  if (!ok) return Status(Code::kTooLarge, std::string(key, key_len) + ": document exceeds BSON limits");
  return Status::ok();
}

using Writer = rapidjson::Writer<rapidjson::StringBuffer>;

Status write_iter(bson_iter_t* it, Writer& w);

Status write_document(bson_iter_t* it, Writer& w, bool object, std::initializer_list<std::string_view> skip = {}) {
  object ? w.StartObject() : w.StartArray();
  while (bson_iter_next(it)) {
    if (object) {
      std::string_view key(bson_iter_key(it), bson_iter_key_len(it));
      if (std::find(skip.begin(), skip.end(), key) != skip.end()) continue;
      w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
    }
    AGENTD_RETURN_IF_ERROR(write_iter(it, w));
  }
  object ? w.EndObject() : w.EndArray();
  return Status::ok();
}

Status write_iter(bson_iter_t* it, Writer& w) {
  switch (bson_iter_type(it)) {
    case BSON_TYPE_UTF8: {
      uint32_t len = 0;
      const char* s = bson_iter_utf8(it, &len);
      w.String(s, len);
      return Status::ok();
    }
    case BSON_TYPE_INT32: w.Int(bson_iter_int32(it)); return Status::ok();
    case BSON_TYPE_INT64: w.Int64(bson_iter_int64(it)); return Status::ok();
    case BSON_TYPE_DOUBLE: w.Double(bson_iter_double(it)); return Status::ok();
    case BSON_TYPE_BOOL: w.Bool(bson_iter_bool(it)); return Status::ok();
    case BSON_TYPE_NULL: w.Null(); return Status::ok();
    case BSON_TYPE_DOCUMENT:
    case BSON_TYPE_ARRAY: {
      bson_iter_t child;
      if (!bson_iter_recurse(it, &child)) return corruption(std::string(bson_iter_key(it)) + ": bad nested document");
      return write_document(&child, w, bson_iter_type(it) == BSON_TYPE_DOCUMENT);
    }
    default:
      return corruption(std::string(bson_iter_key(it)) + ": BSON type " + std::to_string(bson_iter_type(it)) +
                        " is not part of agentd's JSON mapping");
  }
}

}  // namespace

Status append_json_object(bson_t* out, std::string_view json) {
  rapidjson::Document d;
  d.Parse<rapidjson::kParseFullPrecisionFlag>(json.data(), json.size());
  if (d.HasParseError() || !d.IsObject()) return invalid_argument("not a JSON object");
  return append_members(out, d);
}

Result<BsonPtr> json_to_bson(std::string_view json, std::string_view id) {
  BsonPtr doc(bson_new());
  if (!id.empty()) BSON_APPEND_UTF8(doc.get(), "_id", std::string(id).c_str());
  AGENTD_RETURN_IF_ERROR(append_json_object(doc.get(), json));
  return doc;
}

Result<std::string> bson_to_json(const bson_t* doc, std::initializer_list<std::string_view> skip) {
  bson_iter_t it;
  if (!bson_iter_init(&it, doc)) return corruption("invalid BSON document");
  rapidjson::StringBuffer buf;
  Writer w(buf);
  AGENTD_RETURN_IF_ERROR(write_document(&it, w, true, skip));
  return std::string(buf.GetString(), buf.GetSize());
}

Result<std::string> bson_to_json_ordered(const bson_t* doc, std::initializer_list<std::string_view> order,
                                         std::initializer_list<std::string_view> skip) {
  bson_iter_t it;
  if (!bson_iter_init(&it, doc)) return corruption("invalid BSON document");
  // Every stored key must be either written or skipped.
  size_t known = 0;
  while (bson_iter_next(&it)) {
    std::string_view key(bson_iter_key(&it), bson_iter_key_len(&it));
    if (std::find(skip.begin(), skip.end(), key) != skip.end()) continue;
    if (std::find(order.begin(), order.end(), key) == order.end()) {
      return corruption("unexpected field '" + std::string(key) + "'");
    }
    ++known;
  }
  if (known != order.size()) return corruption("document lacks some of the expected fields");
  rapidjson::StringBuffer buf;
  Writer w(buf);
  w.StartObject();
  for (std::string_view key : order) {
    std::string k(key);
    if (!bson_iter_init_find(&it, doc, k.c_str())) return corruption("missing field '" + k + "'");
    w.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
    AGENTD_RETURN_IF_ERROR(write_iter(&it, w));
  }
  w.EndObject();
  return std::string(buf.GetString(), buf.GetSize());
}

}  // namespace agentd
