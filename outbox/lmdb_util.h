// Internal to outbox/: the LMDB helpers the outbox (outbox.cc and its
// siblings) and the offline reader (reader.cc) share.
//
// Ownership: ReadTxn and Cursor own their LMDB handle and close it in their
// destructor; a Cursor must be destroyed before its transaction ends. Views
// made by sv() point into the map and live as long as the transaction.
#pragma once

#include <lmdb.h>

#include <string_view>

#include "core/status.h"

namespace agentd::outbox_lmdb {

inline MDB_val mval(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
inline std::string_view sv(const MDB_val& v) { return {static_cast<const char*>(v.mv_data), v.mv_size}; }

// An LMDB return code as a Status: MDB_MAP_FULL is kOutboxFull, LMDB's "this
// file is damaged" codes are kCorruption, anything else kIoError ("what: the
// LMDB message").
Status lmdb_error(int rc, std::string_view what);

// A read-only transaction for the calling thread (MDB_NOTLS: any thread).
class ReadTxn {
 public:
  explicit ReadTxn(MDB_env* env) { rc_ = mdb_txn_begin(env, nullptr, MDB_RDONLY, &txn_); }
  ~ReadTxn() {
    if (rc_ == 0) mdb_txn_abort(txn_);
  }
  ReadTxn(const ReadTxn&) = delete;
  ReadTxn& operator=(const ReadTxn&) = delete;
  Status status() const { return rc_ == 0 ? Status() : lmdb_error(rc_, "begin read transaction"); }
  MDB_txn* get() const { return txn_; }

 private:
  MDB_txn* txn_ = nullptr;
  int rc_ = 0;
};

class Cursor {
 public:
  Cursor(MDB_txn* txn, MDB_dbi dbi) { rc_ = mdb_cursor_open(txn, dbi, &c_); }
  ~Cursor() {
    if (rc_ == 0) mdb_cursor_close(c_);
  }
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  Status status() const { return rc_ == 0 ? Status() : lmdb_error(rc_, "open cursor"); }
  // Returns 0, MDB_NOTFOUND or an error.
  int get(MDB_val* k, MDB_val* v, MDB_cursor_op op) { return mdb_cursor_get(c_, k, v, op); }
  int put(MDB_val* k, MDB_val* v, unsigned flags) { return mdb_cursor_put(c_, k, v, flags); }

 private:
  MDB_cursor* c_ = nullptr;
  int rc_ = 0;
};

}  // namespace agentd::outbox_lmdb
