// App: agentd's parts, built and wired (main only parses flags, builds the
// App and waits for a signal).
//
//   std::unique_ptr<App> app;
//   if (ExitCode c = App::create(cfg, &app); c != kExitOk) return c;  // logged
//   if (ExitCode c = app->start(); c != kExitOk) return c;            // logged
//   ... wait for SIGTERM/SIGINT ...
//   app->stop();  // then ~App
//
// Ownership and teardown. The members below are declared in the order the
// parts are built; C++ destroys them in reverse, which is the teardown order
// (the server first, the outbox and the metrics last). Destroying a part is
// safe only once nothing calls into it, and the outbox calls out from its
// writer thread (the commit observer; each append's callback, which posts to
// the server's or the runtime's io_context). So stop(), in this order:
//   1. detaches the commit observer (it holds the hub, the flusher and a
//      metrics counter): from here no commit reaches them;
//   2. stops the cluster (peers stop routing here), the server (no new requests; in-flight ones finish within
//      --shutdown-timeout-ms; its threads and read pool joined), then the
//      runtime (plans stop at their next checkpoint), then the flusher
//      (drains to MongoDB within --flush-drain-timeout-ms);
//   3. waits until the outbox completed every request queued so far: their
//      callbacks only queue on the stopped io_contexts, which still exist.
// After stop() nothing runs, and the members can go in reverse order.
#pragma once

#include <memory>

#include "agentd/config.h"
#include "agentd/mongo_history.h"
#include "agentd/runtime_host.h"
#include "core/metrics.h"
#include "net/cluster.h"
#include "net/server.h"
#include "outbox/outbox.h"
#include "store/flusher.h"
#include "store/message_store.h"
#include "store/mongo.h"

namespace agentd {

// agentd's exit codes: 0 clean stop; 1 internal error; 2 bad flags (also: MongoDB
// refuses the --write-concern/--journal asked for); 3 data
// folder unusable (cannot create, locked by another agentd, bad format);
// 4 cannot listen.
enum ExitCode { kExitOk = 0, kExitInternal = 1, kExitUsage = 2, kExitDataDir = 3, kExitListen = 4 };

class App {
 public:
  // Builds every part from `cfg` (the data folder, the outbox, MongoDB's
  // pool and store, the flusher, the runtime, the server bound to its
  // port); nothing runs yet. On failure logs why, leaves *out null and
  // returns the exit code.
  [[nodiscard]] static ExitCode create(Config cfg, std::unique_ptr<App>* out);
  ~App();  // stop() if started

  // Starts the flusher, resumes the plans a crash left unfinished (before
  // the first request: an approval sent the moment agentd answers finds its
  // plan waiting), then serves. On failure logs why and returns the code.
  [[nodiscard]] ExitCode start();
  // The teardown of the top of this file. Idempotent.
  void stop();

 private:
  explicit App(Config cfg) : cfg_(std::move(cfg)) {}
  ExitCode open_outbox();
  ExitCode open_mongo();
  // --cluster-secret-file and friends: several instances on one MongoDB
  // (docs/scale-out.md); nothing without --cluster-secret-file.
  ExitCode open_cluster();
  ExitCode create_server(const boost::asio::ip::tcp::endpoint& listen);
  // The commit observer: every committed batch counted, fanned out live,
  // and the flusher woken.
  void attach_observer();

  const Config cfg_;
  bool started_ = false;
  bool stopped_ = false;
  // Built in this order, destroyed in reverse (see the top of this file).
  MetricsRegistry metrics_;
  std::unique_ptr<Outbox> outbox_;
  std::unique_ptr<MongoPool> mongo_pool_;        // null without --mongo-uri
  std::unique_ptr<MessageStore> message_store_;  // null without --mongo-uri
  std::unique_ptr<StoreHistoryReader> history_;  // null without --mongo-uri
  std::unique_ptr<Flusher> flusher_;             // null without --mongo-uri
  std::unique_ptr<net::Cluster> cluster_;        // null without --cluster-secret-file
  std::unique_ptr<RuntimeHost> runtime_;
  std::unique_ptr<net::Server> server_;
};

}  // namespace agentd
