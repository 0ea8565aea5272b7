#pragma once

// Wiring: the control plane's Mounter, made of arborfs mounts. Lives in apps/ because it is
// the one place that sees both control and fs.

#include <memory>
#include <string>

#include "common/log.h"
#include "control/engine.h"
#include "fs/arborfs.h"

namespace arbor::app {

class ArborfsMount : public control::MountHandle {
 public:
  explicit ArborfsMount(std::unique_ptr<fs::Mount> m) : mount_(std::move(m)) {}
  ~ArborfsMount() override {
    Status st = mount_->Unmount();
    if (!st.ok()) log::warn("unmounting {}: {}", mount_->mountpoint(), st.ToString());
  }
  void SetWriteRate(uint64_t bytes_per_s) override { mount_->SetWriteRate(bytes_per_s); }
  uint64_t WriteThrottledNanos() const override { return mount_->WriteThrottledNanos(); }
  uint64_t Fsyncs() const override { return mount_->Fsyncs(); }
  void DiscardWrites() override { mount_->DiscardWrites(); }

 private:
  std::unique_ptr<fs::Mount> mount_;
};

class ArborfsMounter : public control::Mounter {
 public:
  ArborfsMounter(storage::Store* store, std::string store_path)
      : store_(store), store_path_(std::move(store_path)) {}

  Result<std::unique_ptr<control::MountHandle>> Mount(TimelineId timeline,
                                                      const std::string& path) override {
    fs::MountOptions o;
    o.store_path = store_path_;
    ARBOR_ASSIGN_OR_RETURN(auto m, fs::Mount::Start(store_, timeline, path, o));
    return std::unique_ptr<control::MountHandle>(std::make_unique<ArborfsMount>(std::move(m)));
  }

 private:
  storage::Store* store_;
  std::string store_path_;
};

}  // namespace arbor::app
