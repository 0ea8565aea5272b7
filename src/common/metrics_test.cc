#include "common/metrics.h"

#include <gtest/gtest.h>

namespace arbor::metrics {
namespace {

TEST(MetricsWriter, WritesFamiliesOnceAndEscapesLabels) {
  Writer w;
  w.Family("arbor_x_total", "counter", "Things.");
  w.Sample("arbor_x_total", {{"branch", "a\"b\\c\nd"}}, 3);
  w.Family("arbor_x_total", "counter", "Things.");
  w.Sample("arbor_x_total", {}, 0.5);
  EXPECT_EQ(w.Take(),
            "# HELP arbor_x_total Things.\n# TYPE arbor_x_total counter\n"
            "arbor_x_total{branch=\"a\\\"b\\\\c\\nd\"} 3\narbor_x_total 0.5\n");
}

TEST(MetricsHistogram, BucketsAreCumulativeWithInf) {
  Histogram h({0.1, 1});
  h.Observe(0.05);
  h.Observe(0.1);  // on the bound: counted in le="0.1"
  h.Observe(5);
  Writer w;
  w.Family("h", "histogram", "H.");
  h.Write(&w, "h", {{"e", "x"}});
  std::string out = w.Take();
  EXPECT_NE(out.find("h_bucket{e=\"x\",le=\"0.1\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("h_bucket{e=\"x\",le=\"1\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("h_bucket{e=\"x\",le=\"+Inf\"} 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("h_sum{e=\"x\"} 5.15\n"), std::string::npos) << out;
  EXPECT_NE(out.find("h_count{e=\"x\"} 3\n"), std::string::npos) << out;
}

}  // namespace
}  // namespace arbor::metrics
