#include "outbox/reader.h"

#include <lmdb.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstring>

#include "outbox/format.h"
#include "outbox/lmdb_util.h"

namespace agentd {

namespace of = outbox_format;
using namespace outbox_lmdb;  // LMDB's own "this file is damaged" codes become kCorruption

namespace {

constexpr const char* kTableNames[kOutboxTableCount] = {of::kMetaDb,  of::kMessagesDb,  of::kMsgIdsDb, of::kPendingDb,
                                                        of::kPlansDb, of::kUserPlansDb, of::kDeadDb};

}  // namespace

std::string_view outbox_table_name(OutboxTable t) { return kTableNames[static_cast<int>(t)]; }

struct OutboxReader::Impl {
  MDB_env* env = nullptr;
  MDB_dbi dbis[kOutboxTableCount] = {};
  uint32_t format_version = 0;
  ~Impl() {
    if (env) mdb_env_close(env);
  }
};

struct OutboxSnapshot::Impl {
  Impl(MDB_env* env, const MDB_dbi* d) : txn(env), dbis(d) {}
  ReadTxn txn;
  const MDB_dbi* dbis;
  MDB_dbi dbi(OutboxTable t) const { return dbis[static_cast<int>(t)]; }
};

Result<std::unique_ptr<OutboxReader>> OutboxReader::open(const std::string& dir) {
  struct stat st;
  if (::stat(dir.c_str(), &st) != 0) {
    if (errno == ENOENT || errno == ENOTDIR) return not_found(dir + " does not exist");
    return io_error("stat " + dir + ": " + std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) return invalid_argument(dir + " is not a folder, so not an outbox");
  std::string data = dir + "/data.mdb";
  if (::stat(data.c_str(), &st) != 0) {
    if (errno == ENOENT) return invalid_argument(dir + " is not an outbox (no data.mdb)");
    return io_error("stat " + data + ": " + std::strerror(errno));
  }
  auto impl = std::make_unique<Impl>();
  int rc = mdb_env_create(&impl->env);
  if (rc != 0) return lmdb_error(rc, "mdb_env_create");
  if ((rc = mdb_env_set_maxdbs(impl->env, 8)) != 0) return lmdb_error(rc, "mdb_env_set_maxdbs");
  // The same reader table size as the Outbox (outbox.cc): whichever process
  // opens the environment first sizes lock.mdb for everyone.
  if ((rc = mdb_env_set_maxreaders(impl->env, 1024)) != 0) return lmdb_error(rc, "mdb_env_set_maxreaders");
  // MDB_RDONLY: no writes, no LOCK file; the map size comes from the file.
  if ((rc = mdb_env_open(impl->env, dir.c_str(), MDB_RDONLY | MDB_NOTLS, 0644)) != 0) {
    return lmdb_error(rc, "open LMDB environment in " + dir + " read-only");
  }
  MDB_txn* txn = nullptr;
  if ((rc = mdb_txn_begin(impl->env, nullptr, MDB_RDONLY, &txn)) != 0) {
    return lmdb_error(rc, "begin read transaction");
  }
  auto fail = [&](Status s) {
    mdb_txn_abort(txn);
    return s;
  };
  for (int i = 0; i < kOutboxTableCount; ++i) {
    rc = mdb_dbi_open(txn, kTableNames[i], 0, &impl->dbis[i]);
    if (rc == MDB_NOTFOUND) {
      return fail(invalid_argument(dir + " is an LMDB environment but not an outbox (no \"" +
                                   std::string(kTableNames[i]) + "\" database)"));
    }
    if (rc == MDB_INCOMPATIBLE) {
      return fail(invalid_argument(dir + " is an LMDB environment but not an outbox (\"" + std::string(kTableNames[i]) +
                                   "\" is not a named database)"));
    }
    if (rc != 0) return fail(lmdb_error(rc, std::string("open database ") + kTableNames[i]));
  }
  MDB_val k = mval(of::kFormatVersionKey), v;
  rc = mdb_get(txn, impl->dbis[0], &k, &v);
  if (rc == MDB_NOTFOUND) return fail(invalid_argument(dir + " is not an outbox (meta has no format_version)"));
  if (rc != 0) return fail(lmdb_error(rc, "read format_version"));
  if (v.mv_size != 4) {
    return fail(corruption("corrupt meta format_version: " + std::to_string(v.mv_size) + " bytes, expected 4"));
  }
  impl->format_version = of::get_be32(static_cast<const char*>(v.mv_data));
  // Committing a read-only transaction keeps the database handles open.
  if ((rc = mdb_txn_commit(txn)) != 0) return lmdb_error(rc, "end open transaction");
  if (impl->format_version != of::kFormatVersion) {
    return Status(Code::kVersionMismatch, "outbox in " + dir + " has on-disk format version " +
                                              std::to_string(impl->format_version) + "; this tool reads version " +
                                              std::to_string(of::kFormatVersion));
  }
  return std::unique_ptr<OutboxReader>(new OutboxReader(dir, std::move(impl)));
}

OutboxReader::OutboxReader(std::string dir, std::unique_ptr<Impl> impl)
    : dir_(std::move(dir)), impl_(std::move(impl)) {}
OutboxReader::~OutboxReader() = default;

Result<OutboxEnvInfo> OutboxReader::info() const {
  OutboxEnvInfo out;
  out.format_version = impl_->format_version;
  MDB_envinfo ei;
  int rc = mdb_env_info(impl_->env, &ei);
  if (rc != 0) return lmdb_error(rc, "mdb_env_info");
  MDB_stat st;
  if ((rc = mdb_env_stat(impl_->env, &st)) != 0) return lmdb_error(rc, "mdb_env_stat");
  out.map_size = ei.me_mapsize;
  out.last_page = ei.me_last_pgno;
  out.last_txn_id = ei.me_last_txnid;
  out.page_size = st.ms_psize;
  std::string data = dir_ + "/data.mdb";
  struct stat fst;
  if (::stat(data.c_str(), &fst) != 0) return io_error("stat " + data + ": " + std::strerror(errno));
  out.file_bytes = static_cast<uint64_t>(fst.st_size);
  return out;
}

Result<std::unique_ptr<OutboxSnapshot>> OutboxReader::snapshot() const {
  auto impl = std::make_unique<OutboxSnapshot::Impl>(impl_->env, impl_->dbis);
  AGENTD_RETURN_IF_ERROR(impl->txn.status());
  return std::unique_ptr<OutboxSnapshot>(new OutboxSnapshot(std::move(impl)));
}

OutboxSnapshot::OutboxSnapshot(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OutboxSnapshot::~OutboxSnapshot() = default;

Status OutboxSnapshot::scan(OutboxTable t, std::string_view from,
                            const std::function<bool(std::string_view, std::string_view)>& fn) const {
  Cursor c(impl_->txn.get(), impl_->dbi(t));
  if (Status s = c.status(); !s.is_ok())
    return Status(s.code(), s.message() + " on " + std::string(outbox_table_name(t)));
  MDB_val k = mval(from), v;
  int rc = c.get(&k, &v, from.empty() ? MDB_FIRST : MDB_SET_RANGE);
  for (; rc == 0; rc = c.get(&k, &v, MDB_NEXT)) {
    if (!fn(sv(k), sv(v))) break;
  }
  if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "scan " + std::string(outbox_table_name(t)));
  return Status::ok();
}

Result<std::optional<std::string_view>> OutboxSnapshot::get(OutboxTable t, std::string_view key) const {
  if (key.empty() || key.size() > 511) return std::optional<std::string_view>();
  MDB_val k = mval(key), v;
  int rc = mdb_get(impl_->txn.get(), impl_->dbi(t), &k, &v);
  if (rc == MDB_NOTFOUND) return std::optional<std::string_view>();
  if (rc != 0) return lmdb_error(rc, "read " + std::string(outbox_table_name(t)));
  return std::optional<std::string_view>(sv(v));
}

Result<OutboxTableStat> OutboxSnapshot::stat(OutboxTable t) const {
  MDB_stat st;
  int rc = mdb_stat(impl_->txn.get(), impl_->dbi(t), &st);
  if (rc != 0) return lmdb_error(rc, "stat " + std::string(outbox_table_name(t)));
  return OutboxTableStat{st.ms_entries, st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages};
}

Result<uint64_t> OutboxSnapshot::used_bytes() const {
  uint64_t pages = 2;  // the two meta pages
  uint64_t psize = 4096;
  for (MDB_dbi dbi : {MDB_dbi{0}, MDB_dbi{1}}) {  // free list, main database
    MDB_stat st;
    int rc = mdb_stat(impl_->txn.get(), dbi, &st);
    if (rc != 0) return lmdb_error(rc, "mdb_stat");
    psize = st.ms_psize;
    pages += st.ms_branch_pages + st.ms_leaf_pages + st.ms_overflow_pages;
  }
  for (int i = 0; i < kOutboxTableCount; ++i) {
    auto st = stat(static_cast<OutboxTable>(i));
    if (!st.is_ok()) return st.status();
    pages += st->pages;
  }
  return pages * psize;
}

}  // namespace agentd
