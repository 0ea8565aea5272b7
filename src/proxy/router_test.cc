#include "proxy/router.h"

#include <gtest/gtest.h>

namespace arbor::proxy {
namespace {

TEST(Router, ParseEndpointName) {
  auto n = ParseEndpointName("default/main");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, (EndpointName{"default", "main", ""}));
  EXPECT_EQ(*ParseEndpointName("p1/dev-2/ro"), (EndpointName{"p1", "dev-2", "ro"}));
  EXPECT_EQ(*ParseEndpointName("projects/p/branches/b/endpoints/e"), (EndpointName{"p", "b", "e"}));
  EXPECT_EQ(*ParseEndpointName("projects/p/branches/b"), (EndpointName{"p", "b", ""}));
  for (const char* bad : {"", "main", "a/b/c/d", "A/b", "a//b", "1a/b", "a/b/", "a/b c",
                          "projects/p/branchez/b", "a/b/e/f/g/h"}) {
    EXPECT_FALSE(ParseEndpointName(bad).ok()) << bad;
  }
  EXPECT_FALSE(ParseEndpointName(std::string(64, 'a') + "/b").ok());
  EXPECT_EQ(n->ToString(), "default/main");
}

TEST(Router, Sni) {
  EXPECT_EQ(EndpointFromSni("shop--dev.db.example.com"), (EndpointName{"shop", "dev", ""}));
  EXPECT_EQ(EndpointFromSni("shop--dev--ro.localhost"), (EndpointName{"shop", "dev", "ro"}));
  EXPECT_EQ(EndpointFromSni("main.arbor.test"), (EndpointName{"default", "main", ""}));
  EXPECT_FALSE(EndpointFromSni("localhost"));
  EXPECT_FALSE(EndpointFromSni("127.0.0.1"));
  EXPECT_FALSE(EndpointFromSni("::1"));
  EXPECT_FALSE(EndpointFromSni("Shop--dev.x"));
  EXPECT_FALSE(EndpointFromSni("a--b--c--d.x"));
  EXPECT_FALSE(EndpointFromSni(".x"));
  EXPECT_FALSE(EndpointFromSni(""));
}

TEST(Router, Options) {
  auto s = SplitOptions("endpoint=default/main");
  EXPECT_EQ(s.endpoint, "default/main");
  EXPECT_EQ(s.rest, "");
  s = SplitOptions("-c endpoint=p/b -c search_path=a\\ b");
  EXPECT_EQ(s.endpoint, "p/b");
  EXPECT_EQ(s.rest, "-c search_path=a\\ b");
  s = SplitOptions("--endpoint=p/b/e --work_mem=64MB");
  EXPECT_EQ(s.endpoint, "p/b/e");
  EXPECT_EQ(s.rest, "--work_mem=64MB");
  s = SplitOptions("-cendpoint=p/b");
  EXPECT_EQ(s.endpoint, "p/b");
  s = SplitOptions("-c statement_timeout=5s");
  EXPECT_FALSE(s.endpoint);
  EXPECT_EQ(s.rest, "-c statement_timeout=5s");
  s = SplitOptions("-c");
  EXPECT_FALSE(s.endpoint);
  EXPECT_EQ(s.rest, "-c");
  s = SplitOptions("   ");
  EXPECT_EQ(s.rest, "");
}

TEST(Router, Password) {
  auto p = SplitPassword("endpoint=default/main;s3cret");
  EXPECT_EQ(p.endpoint, "default/main");
  EXPECT_EQ(p.password, "s3cret");
  p = SplitPassword("endpoint=a/b;pw;with;semicolons");
  EXPECT_EQ(p.endpoint, "a/b");
  EXPECT_EQ(p.password, "pw;with;semicolons");
  p = SplitPassword("plain");
  EXPECT_FALSE(p.endpoint);
  EXPECT_EQ(p.password, "plain");
  p = SplitPassword("endpoint=no-semicolon");
  EXPECT_FALSE(p.endpoint);
  EXPECT_EQ(p.password, "endpoint=no-semicolon");
}

}  // namespace
}  // namespace arbor::proxy
