// GET /metrics (docs/metrics.md) on a real daemon, scraped by a real Prometheus: what an
// operator's dashboard and alerts rely on.
#include <gtest/gtest.h>
#include <httplib.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "testutil/daemon.h"

namespace arbor::testutil {
namespace {

namespace fs = std::filesystem;

uint16_t FreePort() {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

// host:port of an http://host:port URL.
std::string HostPort(const std::string& url) { return url.substr(url.find("//") + 2); }

httplib::Result Scrape(const std::string& base, const std::string& token) {
  httplib::Client c(base);
  httplib::Headers h;
  if (!token.empty()) h.emplace("Authorization", "Bearer " + token);
  return c.Get("/metrics", h);
}

// The value of the sample `series` (name and labels exactly as written), or -1.
double Sample(const std::string& text, const std::string& series) {
  size_t at = text.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  return std::atof(text.c_str() + at + series.size() + 2);
}

std::string Ep(const std::string& name) {
  return name + "{project=\"default\",branch=\"production\",endpoint=\"primary\"}";
}

// A real Prometheus, stopped and removed with the object.
class Prometheus {
 public:
  Prometheus(const std::string& config, uint16_t port) : dir_(fs::temp_directory_path()) {
    std::string tmpl = (dir_ / "arbor-prometheus-XXXXXX").string();
    dir_ = mkdtemp(tmpl.data());
    std::ofstream(dir_ / "prometheus.yml") << config;
    port_ = port;
    pid_ = fork();
    if (pid_ == 0) {
      int log = open((dir_ / "prometheus.log").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
      dup2(log, 1);
      dup2(log, 2);
      std::string cfg = "--config.file=" + (dir_ / "prometheus.yml").string();
      std::string data = "--storage.tsdb.path=" + (dir_ / "data").string();
      std::string listen = "--web.listen-address=127.0.0.1:" + std::to_string(port);
      execlp("prometheus", "prometheus", cfg.c_str(), data.c_str(), listen.c_str(),
             static_cast<char*>(nullptr));
      _exit(127);
    }
  }
  ~Prometheus() {
    if (pid_ > 0) {
      kill(pid_, SIGTERM);
      int status;
      waitpid(pid_, &status, 0);
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // The result vector of an instant query, or an empty array while there is none.
  json Query(const std::string& promql) {
    httplib::Client c("127.0.0.1", port_);
    auto r = c.Get("/api/v1/query", httplib::Params{{"query", promql}}, httplib::Headers{});
    if (!r || r->status != 200) return json::array();
    json j = json::parse(r->body, nullptr, false);
    if (!j.is_object() || j.value("status", "") != "success") return json::array();
    return j["data"].value("result", json::array());
  }
  // Prometheus's error for `promql`, or "" when it evaluates.
  std::string Error(const std::string& promql) {
    httplib::Client c("127.0.0.1", port_);
    auto r = c.Get("/api/v1/query", httplib::Params{{"query", promql}}, httplib::Headers{});
    if (!r) return "no answer";
    json j = json::parse(r->body, nullptr, false);
    if (j.is_object() && j.value("status", "") == "success") return "";
    return r->body;
  }
  std::string Log() {
    std::ifstream in(dir_ / "prometheus.log");
    return std::string(std::istreambuf_iterator<char>(in), {});
  }

 private:
  fs::path dir_;
  uint16_t port_ = 0;
  pid_t pid_ = -1;
};

class MetricsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    metrics_port_ = FreePort();
    d_ = Daemon::StartWith("metrics",
                           {"--metrics-listen", "127.0.0.1:" + std::to_string(metrics_port_)});
  }
  // A connection through the proxy to production's endpoint while it is stopped: a wake.
  void ConnectWhileStopped() {
    auto stop = d_->Call("POST", "projects/default/branches/production/endpoints/primary:stop");
    ASSERT_EQ(stop.status, 200) << stop.body.dump();
    auto ep = d_->Call("GET", "projects/default/branches/production/endpoints/primary");
    ASSERT_EQ(ep.body["status"].value("current_state", ""), "IDLE");
    auto cred = d_->Call("POST", "credentials",
                         {{"endpoint", "projects/default/branches/production/endpoints/primary"}});
    ASSERT_EQ(cred.status, 200) << cred.body.dump();
    port_ = ep.body["status"].value("port", 0);
    Pg pg("host=127.0.0.1 port=" + std::to_string(port_) +
          " user=owner dbname=postgres sslmode=disable password=" + cred.body.value("token", ""));
    ASSERT_TRUE(pg.ok());
    EXPECT_EQ(pg.One("SELECT repeat('x', 20000)").size(), 20000u);
  }
  std::unique_ptr<Daemon> d_;
  uint16_t metrics_port_ = 0;
  int port_ = 0;
};

TEST_F(MetricsTest, CountsWhatAnOperatorWatches) {
  ConnectWhileStopped();
  // A wrong password is refused at the proxy and counted by reason.
  {
    PGconn* bad = PQconnectdb(("host=127.0.0.1 port=" + std::to_string(port_) +
                               " user=owner dbname=postgres sslmode=disable password=nope")
                                  .c_str());
    EXPECT_NE(PQstatus(bad), CONNECTION_OK);
    PQfinish(bad);
  }
  // Without a token: refused, as every API call.
  auto anon = Scrape(d_->api(), "");
  ASSERT_TRUE(anon);
  EXPECT_EQ(anon->status, 401);
  auto forged = Scrape(d_->api(), std::string(64, 'a'));
  ASSERT_TRUE(forged);
  EXPECT_EQ(forged->status, 401);

  std::string text;
  // The relayed bytes are counted when the session ends, which the proxy sees a moment later.
  for (int i = 0; i < 100; ++i) {
    auto r = Scrape(d_->api(), d_->admin_token());
    ASSERT_TRUE(r);
    ASSERT_EQ(r->status, 200) << r->body;
    EXPECT_NE(r->get_header_value("Content-Type").find("text/plain"), std::string::npos);
    text = "\n" + r->body;
    if (Sample(text,
               "arbor_endpoint_relayed_bytes_total{project=\"default\",branch=\"production\","
               "endpoint=\"primary\",direction=\"to_client\"}") > 0) {
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  // A request is counted once its answer is sent: the last scrape's own count may lag.
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto last = Scrape(d_->api(), d_->admin_token());
  ASSERT_TRUE(last);
  text = "\n" + last->body;
  EXPECT_EQ(Sample(text, Ep("arbor_endpoint_wakes_total")), 1) << text;
  EXPECT_GE(Sample(text, Ep("arbor_endpoint_starts_total")), 1) << text;
  // The usage meter's CU-seconds of the running compute (it meters every second).
  EXPECT_GT(Sample(text, Ep("arbor_endpoint_cu_seconds_total")), 0) << text;
  EXPECT_EQ(Sample(text,
                   "arbor_endpoint_state{project=\"default\",branch=\"production\","
                   "endpoint=\"primary\",state=\"ACTIVE\"}"),
            1)
      << text;
  EXPECT_EQ(Sample(text,
                   "arbor_endpoint_state{project=\"default\",branch=\"production\","
                   "endpoint=\"primary\",state=\"IDLE\"}"),
            0);
  EXPECT_EQ(Sample(text,
                   "arbor_endpoint_wake_seconds_count{project=\"default\",branch=\""
                   "production\",endpoint=\"primary\"}"),
            1);
  EXPECT_EQ(Sample(text,
                   "arbor_endpoint_auth_failures_total{project=\"default\",branch=\""
                   "production\",endpoint=\"primary\",reason=\"wrong_password\"}"),
            1)
      << text;
  // The 20 kB answer came back through the relay.
  EXPECT_GT(Sample(text,
                   "arbor_endpoint_relayed_bytes_total{project=\"default\",branch=\""
                   "production\",endpoint=\"primary\",direction=\"to_client\"}"),
            20000)
      << text;
  EXPECT_GT(Sample(text,
                   "arbor_branch_logical_size_bytes{project=\"default\",branch=\""
                   "production\"}"),
            1e6);
  EXPECT_GT(Sample(text, "arbor_store_disk_bytes"), 0);
  EXPECT_GE(Sample(text, "arbor_store_block_cache_hit_ratio"), 0);
  EXPECT_EQ(Sample(text,
                   "arbor_api_requests_total{method=\"POST\",route=\"projects/{id}/"
                   "branches/{id}/endpoints/{id}:stop\",code=\"200\"}"),
            1)
      << text;
  EXPECT_NE(text.find("arbor_api_request_seconds_bucket{route=\"credentials\",le=\"+Inf\"}"),
            std::string::npos);
  // Every family is described.
  EXPECT_NE(text.find("# TYPE arbor_endpoint_wake_seconds histogram"), std::string::npos);
  // The unauthenticated scrapes were counted, under one route for every refused caller.
  EXPECT_EQ(Sample(text,
                   "arbor_api_requests_total{method=\"GET\",route=\"unauthenticated\","
                   "code=\"401\"}"),
            2)
      << text;
}

// Clients choose paths: the route labels must not grow with what they send, with a token or
// without one.
TEST_F(MetricsTest, PathsClientsInventDoNotGrowTheSeries) {
  httplib::Client c(d_->api());
  httplib::Headers admin{{"Authorization", "Bearer " + d_->admin_token()}};
  for (int i = 0; i < 30; ++i) {
    std::string verb = "zz" + std::string(1, static_cast<char>('a' + i % 26)) + std::to_string(i);
    ASSERT_TRUE(c.Get("/api/2.0/postgres/projects/x:" + verb));  // no token: 401
    ASSERT_TRUE(c.Get("/api/2.0/postgres/projects/default:" + verb, admin));
    ASSERT_TRUE(c.Get("/api/2.0/postgres/branches/" + verb + "/roles/x/endpoints/y", admin));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto r = Scrape(d_->api(), d_->admin_token());
  ASSERT_TRUE(r);
  EXPECT_EQ(r->body.find("zz"), std::string::npos) << r->body;
  std::string text = "\n" + r->body;
  EXPECT_EQ(Sample(text,
                   "arbor_api_requests_total{method=\"GET\",route=\"unauthenticated\","
                   "code=\"401\"}"),
            30);
  EXPECT_GE(Sample(text,
                   "arbor_api_requests_total{method=\"GET\",route=\"other\","
                   "code=\"404\"}"),
            30)
      << r->body;
}

// The tokenless listener answers its address, not a page of some site whose name was made to
// point here (DNS rebinding).
TEST_F(MetricsTest, TheOpenListenerRefusesOtherHostNames) {
  httplib::Client c("127.0.0.1", metrics_port_);
  auto ok = c.Get("/metrics");
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  auto rebound = c.Get("/metrics",
                       httplib::Headers{{"Host", "evil.example:" + std::to_string(metrics_port_)}});
  ASSERT_TRUE(rebound);
  EXPECT_EQ(rebound->status, 403);
  EXPECT_EQ(rebound->body.find("arbor_"), std::string::npos);
}

TEST_F(MetricsTest, AProjectTokenSeesOnlyItsProject) {
  auto p = d_->Call("POST", "projects?project_id=other", json{{"spec", json::object()}});
  ASSERT_EQ(p.status, 200) << p.body.dump();
  httplib::Client c(d_->api());
  httplib::Headers admin{{"Authorization", "Bearer " + d_->admin_token()}};
  auto t = c.Post("/api/2.0/tokens", admin,
                  json{{"name", "watcher"}, {"role", "viewer"}, {"project", "other"}}.dump(),
                  "application/json");
  ASSERT_TRUE(t);
  ASSERT_EQ(t->status, 200) << t->body;
  std::string token = json::parse(t->body).value("token", "");
  auto r = Scrape(d_->api(), token);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_NE(r->body.find("project=\"other\""), std::string::npos) << r->body;
  EXPECT_EQ(r->body.find("project=\"default\""), std::string::npos) << r->body;
  // Nothing shared by every project: the store and the API's own counters.
  EXPECT_EQ(r->body.find("arbor_store_"), std::string::npos);
  EXPECT_EQ(r->body.find("arbor_api_"), std::string::npos);
  // Nor the way to them: status names no tokenless listener and no store size to it.
  auto st = d_->Call("GET", "status", json(), token);
  ASSERT_EQ(st.status, 200) << st.body.dump();
  EXPECT_FALSE(st.body.contains("metrics")) << st.body.dump();
  EXPECT_FALSE(st.body.contains("store_bytes")) << st.body.dump();
  EXPECT_NE(d_->Call("GET", "status").body.value("metrics", ""), "");
}

TEST_F(MetricsTest, ARealPrometheusScrapesBothListeners) {
  ConnectWhileStopped();
  // The token goes in a file Prometheus reads (0600), never in its config or argv.
  fs::path token_file = fs::path(d_->home()) / "prometheus-token";
  { std::ofstream(token_file) << d_->admin_token(); }
  chmod(token_file.c_str(), 0600);
  uint16_t prom_port = FreePort();
  std::string config =
      "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
      "scrape_configs:\n"
      "  - job_name: arbor\n"
      "    authorization: {type: Bearer, credentials_file: '" +
      token_file.string() + "'}\n" + "    static_configs: [{targets: ['" + HostPort(d_->api()) +
      "']}]\n" + "  - job_name: arbor_open\n" +
      "    static_configs: [{targets: ['127.0.0.1:" + std::to_string(metrics_port_) + "']}]\n";
  Prometheus prom(config, prom_port);
  json wakes, open_up;
  for (int i = 0; i < 600 && (wakes.empty() || open_up.empty()); ++i) {
    wakes = prom.Query("arbor_endpoint_wakes_total{job=\"arbor\",branch=\"production\"}");
    open_up = prom.Query("up{job=\"arbor_open\"} == 1");
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  ASSERT_EQ(wakes.size(), 1u) << prom.Log();
  // [time, "value"]
  EXPECT_EQ(wakes[0]["value"][1].get<std::string>(), "1") << wakes.dump();
  EXPECT_EQ(open_up.size(), 1u) << prom.Log();
  // The open listener serves the same series without a token.
  json store = prom.Query("arbor_store_disk_bytes{job=\"arbor_open\"} > 0");
  for (int i = 0; i < 50 && store.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    store = prom.Query("arbor_store_disk_bytes{job=\"arbor_open\"} > 0");
  }
  EXPECT_EQ(store.size(), 1u) << prom.Log();
  // Every query of the Grafana dashboard we ship evaluates in this Prometheus.
  std::ifstream in(std::string(ARBOR_SOURCE_DIR) + "/docs/grafana-dashboard.json");
  json dashboard = json::parse(in, nullptr, false);
  ASSERT_TRUE(dashboard.is_object());
  int queries = 0;
  for (const json& panel : dashboard["panels"]) {
    for (const json& target : panel["targets"]) {
      std::string expr =
          std::regex_replace(target.value("expr", ""), std::regex("\\$project"), ".*");
      EXPECT_EQ(prom.Error(expr), "") << panel.value("title", "") << ": " << expr;
      ++queries;
    }
  }
  EXPECT_GT(queries, 10);
}

}  // namespace
}  // namespace arbor::testutil
