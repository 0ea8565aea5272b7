#include "control/bisect.h"

#include <libpq-fe.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <thread>
#include <utility>
#include <vector>

#include "api/bisect.h"
#include "api/names.h"
#include "common/clock.h"
#include "compute/supervisor.h"
#include "datadiff/pq.h"

namespace arbor::control {
namespace {

using nlohmann::json;

// What one probe saw.
struct Probe {
  bool good = false;
  std::string replay_time;  // the commit time of the last transaction the state holds
  std::string error;        // the check failed there (a dropped table...): counts as bad
  std::string bad_input;    // the check is not one boolean: the bisection stops
};

using datadiff::ConnPtr;
using datadiff::OneLine;
using datadiff::ResultPtr;

// Runs the check on `conn`: its one row of one boolean says whether the state is good.
Probe RunCheck(PGconn* conn, const std::string& sql) {
  Probe out;
  {
    ResultPtr r(PQexec(conn, sql.c_str()));
    if (PQresultStatus(r.get()) != PGRES_TUPLES_OK) {
      out.error = OneLine(PQresultErrorMessage(r.get()));
      return out;
    }
    constexpr Oid kBoolOid = 16;
    if (PQnfields(r.get()) != 1 || PQftype(r.get(), 0) != kBoolOid) {
      out.bad_input =
          "the check must return one boolean column (true is good), e.g. \"select count(*) = "
          "32 from final_entities\"";
      return out;
    }
    if (PQntuples(r.get()) != 1 || PQgetisnull(r.get(), 0, 0)) {
      out.bad_input = "the check must return exactly one row holding true or false; it returned " +
                      std::to_string(PQntuples(r.get())) + " rows" +
                      (PQntuples(r.get()) == 1 ? " (NULL)" : "");
      return out;
    }
    out.good = std::string(PQgetvalue(r.get(), 0, 0)) == "t";
  }
  // A check that failed leaves no transaction open: each statement is its own.
  ResultPtr t(PQexec(conn, "select pg_last_xact_replay_timestamp()"));
  if (PQresultStatus(t.get()) == PGRES_TUPLES_OK && PQntuples(t.get()) == 1 &&
      !PQgetisnull(t.get(), 0, 0)) {
    out.replay_time = PQgetvalue(t.get(), 0, 0);
  }
  return out;
}

// The LSN up to which the standby behind `conn` has replayed.
Result<uint64_t> ReplayLsn(PGconn* conn) {
  ResultPtr r(PQexec(conn, "select pg_last_wal_replay_lsn() - '0/0'::pg_lsn"));
  if (PQresultStatus(r.get()) != PGRES_TUPLES_OK || PQntuples(r.get()) != 1 ||
      PQgetisnull(r.get(), 0, 0)) {
    return Status::Unavailable("a probe reports no replay position: " +
                               OneLine(PQresultErrorMessage(r.get())));
  }
  return std::stoull(PQgetvalue(r.get(), 0, 0));
}

// libpq's quoting of a conninfo value.
std::string Quoted(const std::string& v) {
  std::string out = "'";
  for (char c : v) {
    if (c == '\'' || c == '\\') out += '\\';
    out += c;
  }
  return out + "'";
}

// One standby of the search: a pinned endpoint started at one state and then walked forward
// (Engine::AdvancePinnedEndpoint) to the later states probed with it. Only its start replays
// the WAL from the branch's last checkpoint; each step replays only the WAL between two
// states. A standby that reached a bad state cannot go back, so it is dropped.
struct Walker {
  std::string id;
  int at = 0;        // the state it serves: an index of the window's points, -1 its start
  uint64_t lsn = 0;  // its replay position
  ConnPtr conn;
};
using WalkerPtr = std::unique_ptr<Walker>;

class Prober {
 public:
  Prober(Engine* engine, const proxy::auth::TokenSigner* tokens, std::string project,
         std::string branch, EndpointRecord base, const BisectRequest& r,
         const std::vector<storage::Store::WalPoint>& points, int64_t start_time)
      : engine_(engine),
        tokens_(tokens),
        project_(std::move(project)),
        branch_(std::move(branch)),
        base_(std::move(base)),
        r_(r),
        points_(points),
        start_time_(start_time) {}

  // A new standby at state `at` (-1: the window's start, by time), connected. Thread-safe.
  Result<WalkerPtr> Start(int at) {
    auto w = std::make_unique<Walker>();
    w->at = at;
    std::optional<int64_t> time;
    std::optional<uint64_t> lsn;
    if (at < 0) {
      time = start_time_;
    } else {
      lsn = points_[at].end.value();
    }
    std::optional<Lsn> at_lsn;
    if (lsn) at_lsn = Lsn(*lsn);
    // Unique in the daemon: two searches may start standbys at the same state.
    static std::atomic<uint64_t> serial = 0;
    ++started_;
    w->id = api::PinnedEndpointId(time, at_lsn) + "-bisect" + std::to_string(++serial);
    ARBOR_RETURN_IF_ERROR(
        engine_->CreatePinnedEndpoint(project_, branch_, w->id, time, lsn, 300).status());
    auto connected = [&]() -> Status {
      ARBOR_ASSIGN_OR_RETURN(EndpointState st, engine_->StartEndpoint(project_, branch_, w->id));
      std::string scope =
          "projects/" + project_ + "/branches/" + branch_ + "/endpoints/" + base_.id;
      ARBOR_ASSIGN_OR_RETURN(
          std::string token,
          tokens_->Issue(scope, compute::kOwnerRole, 600, WallMicros() / 1'000'000, base_.uid));
      std::string conninfo = "host=127.0.0.1 port=" + std::to_string(st.port) +
                             " user=" + compute::kOwnerRole + " dbname=" + Quoted(r_.database) +
                             " password=" + Quoted(token) +
                             " connect_timeout=30 application_name=arbor-bisect";
      w->conn.reset(PQconnectdb(conninfo.c_str()));
      if (w->conn == nullptr || PQstatus(w->conn.get()) != CONNECTION_OK) {
        return Status::Unavailable(
            "cannot connect to a probe: " +
            OneLine(w->conn ? PQerrorMessage(w->conn.get()) : "out of memory"));
      }
      ARBOR_ASSIGN_OR_RETURN(w->lsn, ReplayLsn(w->conn.get()));
      return Status::Ok();
    }();
    if (!connected.ok()) {
      Drop(std::move(w));
      return connected;
    }
    return w;
  }

  // Moves `w` forward to state `at`. FailedPrecondition when the WAL between is gone (the
  // caller starts a new standby there instead).
  Status Advance(Walker& w, int at) {
    uint64_t to = points_[at].end.value();
    if (to > w.lsn) {
      ++walks_;
      ARBOR_ASSIGN_OR_RETURN(
          uint64_t stop, engine_->AdvancePinnedEndpoint(project_, branch_, w.id, w.lsn, to, &wal_));
      // It replays what was written; the wait is for that WAL, bounded like a start.
      auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
      while (true) {
        ARBOR_ASSIGN_OR_RETURN(uint64_t now, ReplayLsn(w.conn.get()));
        if (now >= stop) {
          w.lsn = now;
          break;
        }
        if (cancelled_) return Status::Unavailable("the search is over");
        if (std::chrono::steady_clock::now() > deadline) {
          return Status::Unavailable("a probe did not replay up to " + api::FormatLsn(Lsn(stop)) +
                                     " within 120 s");
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(2));
      }
    }
    w.at = at;
    return Status::Ok();
  }

  // Runs the check on `w`. InvalidArgument when the check is not one boolean.
  Result<Probe> Check(Walker& w) {
    ++count_;
    Probe p = RunCheck(w.conn.get(), r_.check);
    if (!p.bad_input.empty()) return Status::InvalidArgument(p.bad_input);
    if (PQstatus(w.conn.get()) != CONNECTION_OK) {
      return Status::Unavailable("a probe's connection broke: " + p.error);
    }
    return p;
  }

  // A standby at state `at`, checked: `w` walked there if there is one, else a new one.
  Result<std::pair<Probe, WalkerPtr>> ProbeAt(WalkerPtr w, int at) {
    if (w != nullptr) {
      Status moved = Advance(*w, at);
      if (!moved.ok()) {
        Drop(std::move(w));
        if (moved.code() != Code::kFailedPrecondition) return moved;
      }
    }
    if (w == nullptr) {
      ARBOR_ASSIGN_OR_RETURN(w, Start(at));
    }
    auto p = Check(*w);
    if (!p.ok()) {
      Drop(std::move(w));
      return p.status();
    }
    return std::make_pair(*p, std::move(w));
  }

  void Drop(WalkerPtr w) {
    if (w == nullptr) return;
    w->conn.reset();
    (void)engine_->DeleteEndpoint(project_, branch_, w->id);
  }

  // Ends the walks of spares under way: the search no longer needs them.
  void Cancel() { cancelled_ = true; }
  int count() const { return count_.load(); }
  int started() const { return started_.load(); }
  int walks() const { return walks_.load(); }

 private:
  Engine* engine_;
  const proxy::auth::TokenSigner* tokens_;
  std::string project_, branch_;
  EndpointRecord base_;
  const BisectRequest& r_;
  const std::vector<storage::Store::WalPoint>& points_;
  int64_t start_time_;
  Engine::WalCache wal_;  // the window's WAL, read from the store once for every walker
  std::atomic<int> count_ = 0, started_ = 0, walks_ = 0;
  std::atomic<bool> cancelled_ = false;
};

}  // namespace

Result<json> RunBisect(Engine* engine, const proxy::auth::TokenSigner* tokens,
                       const std::string& project, const std::string& branch,
                       const BisectRequest& request) {
  if (request.check.empty()) {
    return Status::InvalidArgument("check is required: a query returning one boolean");
  }
  if (tokens == nullptr) return Status::Unavailable("this server issues no credentials");
  ARBOR_ASSIGN_OR_RETURN(EndpointRecord base, engine->DefaultEndpoint(project, branch));
  int64_t now = WallMicros();
  ARBOR_ASSIGN_OR_RETURN(
      auto points,
      engine->HistoryPoints(project, branch, request.since_us.value_or(Engine::kEarliest),
                            request.until_us.value_or(now)));
  auto not_found = [&](const std::string& why) {
    return json{{"found", false}, {"reason", why}, {"points", points.size()}};
  };
  if (points.empty()) return not_found("no commit of the branch in the window");
  // The state at the end of the window must be bad, and the one at its start good. Without
  // since the window starts at the first point still available.
  const bool since = request.since_us.has_value();
  int64_t start_time = since ? *request.since_us : points.front().time_us - 1;
  int lo = since ? -1 : 0, hi = static_cast<int>(points.size()) - 1;
  if (hi <= lo) return not_found("the window holds one state only: widen it with since");
  Prober prober(engine, tokens, project, branch, base, request, points, start_time);
  // The walkers in play; every one is dropped (its endpoint deleted) however this ends.
  WalkerPtr leader;                      // at the newest good state
  std::future<Result<WalkerPtr>> spare;  // one more at a good state, made or moved meanwhile
  auto finish = [&]() {
    prober.Cancel();
    prober.Drop(std::move(leader));
    if (spare.valid()) {
      auto w = spare.get();
      if (w.ok()) prober.Drop(std::move(*w));
    }
  };
  struct Cleanup {
    std::function<void()> f;
    ~Cleanup() { f(); }
  } cleanup{finish};

  // The window's start must be good. A spare standby starts there too, on the other core:
  // standbys start cheaply at the start (little WAL since the checkpoint before it) and walk
  // forward from there on WAL the search has already read.
  const int first = lo;
  auto spare_at = [&prober, first](int at) {
    return std::async(std::launch::async, [&prober, first, at]() -> Result<WalkerPtr> {
      ARBOR_ASSIGN_OR_RETURN(WalkerPtr w, prober.Start(first));
      if (at > first) {
        Status st = prober.Advance(*w, at);
        if (!st.ok()) {
          prober.Drop(std::move(w));
          return st;
        }
      }
      return w;
    });
  };
  spare = spare_at(first);
  ARBOR_ASSIGN_OR_RETURN(auto start_probe, prober.ProbeAt(nullptr, lo));
  leader = std::move(start_probe.second);
  const Probe& start = start_probe.first;
  std::string start_text = api::FormatTime(since ? start_time : points.front().time_us);
  if (!start.error.empty()) {
    return Status::InvalidArgument("the check fails at the start of the window (" + start_text +
                                   "), so it cannot tell good from bad there: " + start.error);
  }
  if (!start.good) {
    return not_found("the check is already false at the start of the window (" + start_text +
                     "): widen it with since");
  }
  // A binary search, one probe a round, on the leader walked forward. The window's end is
  // taken as bad until a probe shows it (last, if every other probe is good). When the leader
  // lands on a bad state it is dropped and the spare, kept at or behind the last good state,
  // takes over; a new spare starts meanwhile on the other core.
  std::optional<Probe> first_bad;
  while (hi - lo > 1 || !first_bad) {
    if (leader == nullptr && spare.valid()) {
      auto w = spare.get();
      if (w.ok()) leader = std::move(*w);
    }
    if (!spare.valid()) spare = spare_at(lo);
    int m = hi - lo > 1 ? api::NextProbes(lo, hi, 1).front() : hi;
    ARBOR_ASSIGN_OR_RETURN(auto got, prober.ProbeAt(std::move(leader), m));
    auto& [probe, walker] = got;
    if (probe.good && m == static_cast<int>(points.size()) - 1) {
      prober.Drop(std::move(walker));
      return not_found("the check is true at the end of the window (" +
                       api::FormatTime(points.back().time_us) + "): it never turns false");
    }
    if (probe.good) {
      lo = m;
      leader = std::move(walker);
      // The spare follows at a distance, on the other core, once it is ready.
      if (spare.wait_for(std::chrono::seconds(0)) == std::future_status::ready) {
        auto w = spare.get();
        if (w.ok() && (*w)->at < lo) {
          int at = lo;
          spare = std::async(std::launch::async,
                             [&prober, at, w = std::move(*w)]() mutable -> Result<WalkerPtr> {
                               Status st = prober.Advance(*w, at);
                               if (!st.ok()) {
                                 prober.Drop(std::move(w));
                                 return st;
                               }
                               return std::move(w);
                             });
        } else if (w.ok()) {
          std::promise<Result<WalkerPtr>> ready;
          ready.set_value(std::move(*w));
          spare = ready.get_future();
        }
      }
    } else {
      hi = m;
      first_bad = probe;
      prober.Drop(std::move(walker));
    }
  }
  int64_t good_time = lo >= 0 ? points[lo].time_us : start_time;
  const auto& bad = points[hi];
  json j{{"found", true},
         {"last_good_time", api::FormatTime(good_time)},
         {"last_good_time_us", good_time},
         {"first_bad_time", api::FormatTime(bad.time_us)},
         {"first_bad_time_us", bad.time_us},
         {"first_bad_lsn", api::FormatLsn(bad.end)},
         {"points", points.size()},
         {"probes", prober.count()},
         {"standbys", prober.started()},
         {"walks", prober.walks()}};
  if (lo >= 0) j["last_good_lsn"] = api::FormatLsn(points[lo].end);
  if (!first_bad->replay_time.empty()) j["first_bad_commit_time"] = first_bad->replay_time;
  return j;
}

}  // namespace arbor::control
