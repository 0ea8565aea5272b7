// The web console end to end (docs/console.md): a real daemon serving the built console, and
// tests/console/console_test.mjs driving Debian's Chromium through Playwright against it. This
// wrapper starts and stops the daemon (so it is cleaned up even when the browser test fails)
// and checks the server's side of the console's security with plain HTTP.
#include <gtest/gtest.h>
#include <httplib.h>

#include <cstdlib>
#include <filesystem>

#include "testutil/daemon.h"

namespace arbor::testutil {
namespace {

namespace fs = std::filesystem;

std::string CookieOf(const httplib::Result& r) {
  std::string c = r->get_header_value("Set-Cookie");
  return c.substr(0, c.find(';'));
}

TEST(ConsoleServer, SessionsAreCookiesWithCsrf) {
  auto d = Daemon::Start("console-srv");
  httplib::Client c(d->api());
  // The page itself needs no token, and says where it may load from.
  auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->get_header_value("Content-Security-Policy").find("default-src 'self'"),
            std::string::npos);
  EXPECT_EQ(page->get_header_value("X-Frame-Options"), "DENY");
  // A wrong token gets the API's sentence and no cookie.
  auto bad = c.Post("/api/2.0/console/session", json{{"token", "nope"}}.dump(), "application/json");
  ASSERT_TRUE(bad);
  EXPECT_EQ(bad->status, 401);
  EXPECT_NE(json::parse(bad->body).value("message", "").find("wrong token"), std::string::npos)
      << bad->body;
  EXPECT_TRUE(bad->get_header_value("Set-Cookie").empty());

  // Another site's page cannot log this browser in (to the attacker's token): a form posts
  // text/plain, and the browser says where a request comes from.
  auto form = c.Post("/api/2.0/console/session",
                     "{\"token\":\"=\",\"token\":\"" + d->admin_token() + "\"}", "text/plain");
  ASSERT_TRUE(form);
  EXPECT_EQ(form->status, 400) << form->body;
  EXPECT_TRUE(form->get_header_value("Set-Cookie").empty());
  // Malformed bodies and unknown codes get a clear answer and no cookie.
  for (const std::string& junk :
       {std::string("{\"token\": "), std::string("[1]"), std::string("{\"token\": 7}"),
        std::string("{}"), std::string("{\"token\": \"a\", \"code\": \"b\"}")}) {
    auto r = c.Post("/api/2.0/console/session", junk, "application/json");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 400) << junk << ": " << r->body;
    EXPECT_TRUE(r->get_header_value("Set-Cookie").empty()) << junk;
  }
  auto unknown = c.Post("/api/2.0/console/session", json{{"code", std::string(64, 'f')}}.dump(),
                        "application/json");
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->status, 401) << unknown->body;
  auto cross =
      c.Post("/api/2.0/console/session", httplib::Headers{{"Sec-Fetch-Site", "cross-site"}},
             json{{"token", d->admin_token()}}.dump(), "application/json");
  ASSERT_TRUE(cross);
  EXPECT_EQ(cross->status, 400) << cross->body;
  EXPECT_TRUE(cross->get_header_value("Set-Cookie").empty());

  auto ok = c.Post("/api/2.0/console/session", json{{"token", d->admin_token()}}.dump(),
                   "application/json");
  ASSERT_TRUE(ok);
  ASSERT_EQ(ok->status, 200) << ok->body;
  std::string set_cookie = ok->get_header_value("Set-Cookie");
  EXPECT_NE(set_cookie.find("HttpOnly"), std::string::npos) << set_cookie;
  EXPECT_NE(set_cookie.find("SameSite=Strict"), std::string::npos) << set_cookie;
  // Named by the daemon's port: another daemon on this host has its own.
  EXPECT_EQ(set_cookie.rfind("arbor_console_" + d->api().substr(d->api().rfind(':') + 1) + "=", 0),
            0u)
      << set_cookie;
  std::string csrf = json::parse(ok->body).value("csrf_token", "");
  ASSERT_EQ(csrf.size(), 64u);
  httplib::Headers cookie{{"Cookie", CookieOf(ok)}};

  // Reads with the cookie alone; a change without the CSRF header is refused and changes
  // nothing; with it, it goes through.
  auto list = c.Get("/api/2.0/postgres/projects/default/branches", cookie);
  ASSERT_TRUE(list);
  EXPECT_EQ(list->status, 200);
  const std::string create = "/api/2.0/postgres/projects/default/branches?branch_id=csrf";
  const std::string body = json{{"spec", {{"no_expiry", true}}}}.dump();
  auto forged = c.Post(create, cookie, body, "application/json");
  ASSERT_TRUE(forged);
  EXPECT_EQ(forged->status, 403) << forged->body;
  EXPECT_EQ(d->Call("GET", "projects/default/branches/csrf").status, 404);
  httplib::Headers wrong = cookie;
  wrong.emplace("X-Arbor-CSRF", std::string(64, '0'));
  auto wrong_csrf = c.Post(create, wrong, body, "application/json");
  ASSERT_TRUE(wrong_csrf);
  EXPECT_EQ(wrong_csrf->status, 403);
  httplib::Headers with = cookie;
  with.emplace("X-Arbor-CSRF", csrf);
  auto made = c.Post(create, with, body, "application/json");
  ASSERT_TRUE(made);
  EXPECT_EQ(made->status, 200) << made->body;

  // A one-time link works once.
  auto link = c.Post("/api/2.0/console/links",
                     httplib::Headers{{"Authorization", "Bearer " + d->admin_token()}}, "{}",
                     "application/json");
  ASSERT_TRUE(link);
  ASSERT_EQ(link->status, 200) << link->body;
  std::string code = json::parse(link->body).value("code", "");
  auto first = c.Post("/api/2.0/console/session", json{{"code", code}}.dump(), "application/json");
  ASSERT_TRUE(first);
  EXPECT_EQ(first->status, 200) << first->body;
  auto again = c.Post("/api/2.0/console/session", json{{"code", code}}.dump(), "application/json");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->status, 401);

  // A revoked token ends its sessions.
  httplib::Headers admin{{"Authorization", "Bearer " + d->admin_token()}};
  auto tok = c.Post("/api/2.0/tokens", admin, json{{"name", "qa"}, {"role", "developer"}}.dump(),
                    "application/json");
  ASSERT_TRUE(tok);
  ASSERT_EQ(tok->status, 200) << tok->body;
  auto qa =
      c.Post("/api/2.0/console/session",
             json{{"token", json::parse(tok->body).value("token", "")}}.dump(), "application/json");
  ASSERT_TRUE(qa);
  ASSERT_EQ(qa->status, 200);
  httplib::Headers qa_cookie{{"Cookie", CookieOf(qa)}};
  EXPECT_EQ(c.Get("/api/2.0/postgres/projects", qa_cookie)->status, 200);
  auto revoked = c.Delete("/api/2.0/tokens/qa", admin);
  ASSERT_TRUE(revoked);
  ASSERT_EQ(revoked->status, 200) << revoked->body;
  EXPECT_EQ(c.Get("/api/2.0/postgres/projects", qa_cookie)->status, 401);

  // Logging out ends the session.
  auto out = c.Delete("/api/2.0/console/session", with);
  ASSERT_TRUE(out);
  EXPECT_EQ(out->status, 200);
  EXPECT_EQ(c.Get("/api/2.0/postgres/projects", cookie)->status, 401);
}

TEST(ConsoleBrowser, PlaywrightDrivesChromium) {
  auto d = Daemon::Start("console");
  fs::path profile = fs::path(d->home()) / "browser";
  std::string env = "ARBOR_CONSOLE_URL='" + d->api() + "' ARBOR_ADMIN_TOKEN='" + d->admin_token() +
                    "' ARBOR_BIN='" + ARBOR_BINARY + "' ARBOR_HOME='" + d->home() +
                    "' ARBOR_BROWSER_PROFILE='" + profile.string() + "'";
  if (const char* shots = std::getenv("ARBOR_SCREENSHOTS")) {
    env += " ARBOR_SCREENSHOTS='" + std::string(shots) + "'";
  }
  auto r = RunShell(env + " node --test --test-reporter=spec '" ARBOR_CONSOLE_TEST "' 2>&1",
                    d->home() + "/console-test.err");
  EXPECT_EQ(r.rc, 0) << r.out << r.err;
}

}  // namespace
}  // namespace arbor::testutil
