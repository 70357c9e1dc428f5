#include "collector/store/rollup.h"

#include <gtest/gtest.h>

#include "collector/store/row_codec.h"

namespace deskpulse::collector {
namespace {

constexpr std::int64_t kDay0 = 1'795'046'400'000;  // a midnight UTC

TEST(Rollup, ExpandsIntoHourAndDayAtEndpointAndCustomerLevel) {
  RollupAccumulator acc;
  v1::Report r;
  r.set_seq(1);
  r.set_observed_at_unix_ms(kDay0 + 9 * kHourMs + 5);
  r.mutable_boot()->set_login_ready_ms(45'000);
  r.mutable_boot()->set_booted_at_unix_ms(kDay0 + 8 * kHourMs + 10);
  acc.AddReport(7, 70, r);
  const auto rows = acc.Expand();
  int boots = 0;
  for (const auto& row : rows) {
    if (row.metric != Metric::kBootLoginMs) continue;
    ++boots;
    EXPECT_EQ(row.customer_id, 7);
    EXPECT_TRUE(row.endpoint_id == 70 || row.endpoint_id == 0);
    EXPECT_EQ(row.bucket_start_ms,
              row.grain == Grain::kHour ? kDay0 + 8 * kHourMs : kDay0);  // booted_at decides
    EXPECT_EQ(row.cell.count, 1);
    EXPECT_EQ(row.cell.sum, 45'000);
  }
  EXPECT_EQ(boots, 4);
}

TEST(Rollup, BootPhasesAreTotalledWithTheGapsToLoginAndDesktop) {
  RollupAccumulator acc;
  v1::Report full;
  full.set_observed_at_unix_ms(kDay0 + kHourMs);
  auto* b = full.mutable_boot();
  b->set_firmware_ms(4'000);
  b->set_loader_ms(1'000);
  b->set_kernel_ms(3'000);
  b->set_initrd_ms(2'000);
  b->set_userspace_ms(20'000);
  b->set_login_ready_ms(36'000);    // 6 s after userspace's end
  b->set_desktop_ready_ms(41'000);  // 5 s after login-ready
  acc.AddReport(1, 10, full);
  v1::Report bare;  // no firmware figures, a desktop-ready before login-ready
  bare.set_observed_at_unix_ms(kDay0 + 2 * kHourMs);
  b = bare.mutable_boot();
  b->set_kernel_ms(2'000);
  b->set_initrd_ms(1'000);
  b->set_userspace_ms(10'000);
  b->set_login_ready_ms(13'000);
  b->set_desktop_ready_ms(12'000);
  acc.AddReport(1, 11, bare);

  scoring::WindowRollup w;
  for (const auto& row : acc.Expand()) {
    if (row.grain == Grain::kDay && row.endpoint_id == 0) {
      AddToWindow(row.metric, row.cell.count, row.cell.sum, row.cell.hist, &w);
    }
  }
  auto phase = [&w](BootPhase p) { return w.boot_phases[static_cast<std::size_t>(p)]; };
  EXPECT_EQ(phase(BootPhase::kFirmware).boots, 1);
  EXPECT_EQ(phase(BootPhase::kFirmware).ms, 4'000);
  EXPECT_EQ(phase(BootPhase::kKernel).boots, 2);
  EXPECT_EQ(phase(BootPhase::kKernel).ms, 5'000);
  EXPECT_EQ(phase(BootPhase::kUserspace).ms, 30'000);
  EXPECT_EQ(phase(BootPhase::kToLogin).boots, 2);
  EXPECT_EQ(phase(BootPhase::kToLogin).ms, 6'000);   // 6 s and 0 s
  EXPECT_EQ(phase(BootPhase::kToDesktop).boots, 1);  // the inverted one is left out
  EXPECT_EQ(phase(BootPhase::kToDesktop).ms, 5'000);
  EXPECT_EQ(w.boot_ms.TotalWeight(), 2u);
  EXPECT_STREQ(BootPhaseName(BootPhase::kToDesktop), "to desktop-ready");
}

TEST(Rollup, LatencyCellsCarryRttLossAndSeconds) {
  RollupAccumulator acc;
  v1::Report r;
  r.set_observed_at_unix_ms(kDay0);
  auto* w = r.add_sessions();
  w->set_window_s(600);
  w->set_rtt_p95_us(120'000);
  w->set_retransmit_ppm(20'000);
  auto* unknown_loss = r.add_sessions();
  unknown_loss->set_window_s(60);
  unknown_loss->set_rtt_p95_us(50'000);
  auto* no_rtt = r.add_sessions();  // nothing to score: skipped
  no_rtt->set_window_s(60);
  acc.AddReport(1, 2, r);
  for (const auto& row : acc.Expand()) {
    if (row.metric != Metric::kLatency || row.endpoint_id != 0 || row.grain != Grain::kDay) {
      continue;
    }
    EXPECT_EQ(row.cell.count, 2);
    EXPECT_EQ(row.cell.sum, 660);
    const std::uint64_t loss = 20'000;
    EXPECT_EQ(row.cell.hist.Weight(latency_cells::Key(120'000, &loss)), 600u);
    EXPECT_EQ(row.cell.hist.Weight(latency_cells::Key(50'000, nullptr)), 60u);
  }
}

TEST(Rollup, PlannedEventsDoNotCountAsDowntime) {
  RollupAccumulator acc;
  v1::Report r;
  r.set_observed_at_unix_ms(kDay0);
  auto* s = r.mutable_stability();
  s->set_session_s(3600);
  auto* planned = s->add_session_events();
  planned->set_kind(v1::SESSION_EVENT_KIND_DISCONNECT);
  planned->set_planned(true);
  planned->set_downtime_ms(600'000);
  auto* outage = s->add_session_events();
  outage->set_kind(v1::SESSION_EVENT_KIND_DISCONNECT);
  outage->set_downtime_ms(30'000);
  auto* crash = s->add_crashes();
  crash->set_downtime_ms(5'000);
  acc.AddReport(1, 2, r);
  double downtime = 0;
  std::int64_t disconnects = 0;
  for (const auto& row : acc.Expand()) {
    if (row.endpoint_id != 0 || row.grain != Grain::kDay) continue;
    if (row.metric == Metric::kDowntimeMs) downtime = row.cell.sum;
    if (row.metric == Metric::kDisconnects) disconnects = row.cell.count;
  }
  EXPECT_EQ(downtime, 35'000);
  EXPECT_EQ(disconnects, 1);
}

TEST(Rollup, AStallIsDowntimeForAsLongAsTheDisplayWasFrozen) {
  RollupAccumulator acc;
  v1::Report r;
  r.set_observed_at_unix_ms(kDay0);
  auto* s = r.mutable_stability();
  s->set_session_s(3600);
  auto* recovered = s->add_stalls();  // a 30 s cut that TCP's backoff stretched to 51 s
  recovered->set_start_unix_ms(kDay0 - 60'000);
  recovered->set_duration_ms(30'000);
  recovered->set_frozen_ms(51'000);
  auto* closed = s->add_stalls();  // closed while still frozen
  closed->set_start_unix_ms(kDay0 - 10'000);
  closed->set_duration_ms(4'000);
  acc.AddReport(1, 2, r);
  double downtime = 0;
  std::int64_t stalls = 0;
  for (const auto& row : acc.Expand()) {
    if (row.endpoint_id != 0 || row.grain != Grain::kDay) continue;
    if (row.metric == Metric::kDowntimeMs) downtime += row.cell.sum;
    if (row.metric == Metric::kStalls) stalls += row.cell.count;
  }
  EXPECT_EQ(downtime, 55'000);
  EXPECT_EQ(stalls, 2);
}

TEST(Rollup, DeviceInstancesRememberFailuresAndReconnects) {
  RollupAccumulator acc;
  auto report = [](std::int64_t t, v1::DeviceState state) {
    v1::Report r;
    r.set_observed_at_unix_ms(t);
    auto* p = r.add_peripherals();
    p->set_vendor_id(0x03f0);
    p->set_product_id(0x2b17);
    p->set_serial_hash("abc");
    p->set_state(state);
    return r;
  };
  acc.AddReport(1, 2, report(kDay0 + 1000, v1::DEVICE_STATE_NO_DRIVER));
  acc.AddReport(1, 2, report(kDay0 + 2000, v1::DEVICE_STATE_WORKING));
  v1::Report ev;
  ev.set_observed_at_unix_ms(kDay0 + 3000);
  auto* e = ev.add_peripheral_events();
  e->set_kind(v1::PERIPHERAL_EVENT_KIND_RECONNECT);
  e->set_vendor_id(0x03f0);
  e->set_product_id(0x2b17);
  e->set_serial_hash("abc");
  acc.AddReport(1, 2, ev);
  ASSERT_EQ(acc.instances().size(), 1u);
  const auto& inst = acc.instances().begin()->second;
  EXPECT_EQ(inst.device_key, "usb:03f0:2b17:abc");
  EXPECT_EQ(inst.first_seen_ms, kDay0 + 1000);
  EXPECT_EQ(inst.last_seen_ms, kDay0 + 2000);
  EXPECT_EQ(inst.last.state(), v1::DEVICE_STATE_WORKING);
  EXPECT_EQ(inst.last_fail_ms, kDay0 + 1000);
  EXPECT_EQ(inst.observations, 2);
  EXPECT_EQ(inst.fail_observations, 1);
  EXPECT_EQ(inst.reconnects, 1);
}

TEST(Rollup, MergeEqualsAddingEverythingToOne) {
  v1::Report a;
  a.set_observed_at_unix_ms(kDay0);
  a.mutable_boot()->set_login_ready_ms(30'000);
  v1::Report b = a;
  b.mutable_boot()->set_login_ready_ms(90'000);
  RollupAccumulator one, left, right;
  one.AddReport(1, 2, a);
  one.AddReport(1, 2, b);
  left.AddReport(1, 2, a);
  right.AddReport(1, 2, b);
  left.Merge(std::move(right));
  EXPECT_TRUE(right.empty());  // NOLINT(bugprone-use-after-move): Merge leaves it empty
  const auto x = one.Expand();
  const auto y = left.Expand();
  ASSERT_EQ(x.size(), y.size());
  for (std::size_t i = 0; i < x.size(); ++i) {
    EXPECT_EQ(x[i].cell.count, y[i].cell.count);
    EXPECT_EQ(x[i].cell.hist, y[i].cell.hist);
  }
}

}  // namespace
}  // namespace deskpulse::collector
