#include "outbox/lmdb_util.h"

#include <string>

namespace agentd::outbox_lmdb {

Status lmdb_error(int rc, std::string_view what) {
  if (rc == MDB_MAP_FULL) return Status(Code::kOutboxFull, "outbox full (" + std::string(what) + ")");
  std::string m = std::string(what) + ": " + mdb_strerror(rc);
  switch (rc) {
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
    case MDB_BAD_TXN:
    case MDB_INCOMPATIBLE: return corruption(std::move(m));
    default: return io_error(std::move(m));
  }
}

}  // namespace agentd::outbox_lmdb
