#include "control/bisect.h"

#include <libpq-fe.h>

#include <atomic>
#include <future>
#include <memory>
#include <utility>
#include <vector>

#include "api/bisect.h"
#include "api/names.h"
#include "common/clock.h"
#include "compute/supervisor.h"

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

std::string OneLine(const char* text) {
  std::string s = text == nullptr ? "" : text;
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  for (char& c : s) {
    if (c == '\n') c = ' ';
  }
  return s;
}

// Runs the check on `conninfo`: its one row of one boolean says whether the state is good.
Result<Probe> RunCheck(const std::string& conninfo, const std::string& sql) {
  std::unique_ptr<PGconn, decltype(&PQfinish)> conn(PQconnectdb(conninfo.c_str()), PQfinish);
  if (conn == nullptr || PQstatus(conn.get()) != CONNECTION_OK) {
    return Status::Unavailable("cannot connect to a probe: " +
                               OneLine(conn ? PQerrorMessage(conn.get()) : "out of memory"));
  }
  Probe out;
  {
    std::unique_ptr<PGresult, decltype(&PQclear)> r(PQexec(conn.get(), sql.c_str()), PQclear);
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
  std::unique_ptr<PGresult, decltype(&PQclear)> t(
      PQexec(conn.get(), "select pg_last_xact_replay_timestamp()"), PQclear);
  if (PQresultStatus(t.get()) == PGRES_TUPLES_OK && PQntuples(t.get()) == 1 &&
      !PQgetisnull(t.get(), 0, 0)) {
    out.replay_time = PQgetvalue(t.get(), 0, 0);
  }
  return out;
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

class Prober {
 public:
  Prober(Engine* engine, const proxy::auth::TokenSigner* tokens, std::string project,
         std::string branch, EndpointRecord base, const BisectRequest& r)
      : engine_(engine),
        tokens_(tokens),
        project_(std::move(project)),
        branch_(std::move(branch)),
        base_(std::move(base)),
        r_(r) {}

  // The state at a time or an LSN. Thread-safe.
  Result<Probe> At(std::optional<int64_t> time_us, std::optional<uint64_t> lsn) {
    ++count_;
    std::optional<Lsn> at_lsn;
    if (lsn) at_lsn = Lsn(*lsn);
    std::string id = api::PinnedEndpointId(time_us, at_lsn);
    auto made = engine_->CreatePinnedEndpoint(project_, branch_, id, time_us, lsn, 300);
    if (!made.ok() && made.status().code() != Code::kAlreadyExists) return made.status();
    auto probe = [&]() -> Result<Probe> {
      ARBOR_ASSIGN_OR_RETURN(EndpointState st, engine_->StartEndpoint(project_, branch_, id));
      std::string scope =
          "projects/" + project_ + "/branches/" + branch_ + "/endpoints/" + base_.id;
      ARBOR_ASSIGN_OR_RETURN(
          std::string token,
          tokens_->Issue(scope, compute::kOwnerRole, 600, WallMicros() / 1'000'000, base_.uid));
      std::string conninfo = "host=127.0.0.1 port=" + std::to_string(st.port) +
                             " user=" + compute::kOwnerRole + " dbname=" + Quoted(r_.database) +
                             " password=" + Quoted(token) +
                             " connect_timeout=30 application_name=arbor-bisect";
      return RunCheck(conninfo, r_.check);
    }();
    // A probe's endpoint made here goes at once (its files are thrown away).
    if (made.ok()) (void)engine_->DeleteEndpoint(project_, branch_, id);
    return probe;
  }

  // The probes at `at`, at once, one thread each: the cores replay their WAL in parallel.
  Result<std::vector<Probe>> All(
      const std::vector<std::pair<std::optional<int64_t>, std::optional<uint64_t>>>& at) {
    std::vector<std::future<Result<Probe>>> running;
    for (const auto& [t, l] : at) {
      running.push_back(std::async(std::launch::async, [this, t, l] { return At(t, l); }));
    }
    std::vector<Result<Probe>> got;
    for (auto& f : running) got.push_back(f.get());
    std::vector<Probe> out;
    for (auto& r : got) {
      ARBOR_RETURN_IF_ERROR(r.status());
      if (!r->bad_input.empty()) return Status::InvalidArgument(r->bad_input);
      out.push_back(*r);
    }
    return out;
  }
  int count() const { return count_.load(); }

 private:
  Engine* engine_;
  const proxy::auth::TokenSigner* tokens_;
  std::string project_, branch_;
  EndpointRecord base_;
  const BisectRequest& r_;
  std::atomic<int> count_ = 0;
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
  Prober prober(engine, tokens, project, branch, base, request);
  // The state at the end of the window must be bad, and the one at its start good. Without
  // since the window starts at the first point still available.
  const bool since = request.since_us.has_value();
  int64_t start_time = since ? *request.since_us : points.front().time_us - 1;
  int lo = since ? -1 : 0, hi = static_cast<int>(points.size()) - 1;
  if (hi <= lo) return not_found("the window holds one state only: widen it with since");
  using At = std::pair<std::optional<int64_t>, std::optional<uint64_t>>;
  At start_at = since ? At{start_time, std::nullopt} : At{std::nullopt, points.front().end.value()};
  ARBOR_ASSIGN_OR_RETURN(std::vector<Probe> ends,
                         prober.All({At{std::nullopt, points.back().end.value()}, start_at}));
  const Probe& start = ends[1];
  std::string start_text = api::FormatTime(since ? start_time : points.front().time_us);
  if (!start.error.empty()) {
    return Status::InvalidArgument("the check fails at the start of the window (" + start_text +
                                   "), so it cannot tell good from bad there: " + start.error);
  }
  if (ends[0].good) {
    return not_found("the check is true at the end of the window (" +
                     api::FormatTime(points.back().time_us) + "): it never turns false");
  }
  if (!start.good) {
    return not_found("the check is already false at the start of the window (" + start_text +
                     "): widen it with since");
  }
  Probe first_bad = ends[0];
  while (hi - lo > 1) {
    std::vector<int> mids = api::NextProbes(lo, hi);
    std::vector<At> at;
    for (int m : mids) at.push_back({std::nullopt, points[m].end.value()});
    ARBOR_ASSIGN_OR_RETURN(std::vector<Probe> got, prober.All(at));
    std::vector<bool> good;
    for (const Probe& p : got) good.push_back(p.good);
    int bad = api::Narrow(mids, good, &lo, &hi);
    if (bad >= 0) first_bad = got[bad];
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
         {"probes", prober.count()}};
  if (lo >= 0) j["last_good_lsn"] = api::FormatLsn(points[lo].end);
  if (!first_bad.replay_time.empty()) j["first_bad_commit_time"] = first_bad.replay_time;
  return j;
}

}  // namespace arbor::control
