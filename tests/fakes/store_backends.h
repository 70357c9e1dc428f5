#pragma once

// The two store backends as the tests get them: a fresh, empty store each,
// and the few backend-specific moves the conformance suite needs (making a
// commit fail, undoing the last migration, corrupting a watermark). The
// PostgreSQL one uses the throwaway cluster the test run starts
// (tests/fakes/pg_cluster.sh, ctest fixture "suite"): one new database per test.

#include <memory>
#include <string>

#include "collector/store/store.h"
#include "tests/fakes/temp_dir.h"

namespace deskpulse::testing {

class StoreBackend {
 public:
  virtual ~StoreBackend() = default;
  /// "sqlite" or "postgresql".
  virtual std::string name() const = 0;
  /// The --db of this test's store (empty until first opened).
  virtual std::string db() const = 0;
  /// Makes every commit of a report fail (true) until called with false.
  virtual void FailReportInserts(bool fail) = 0;
  /// Sets a stream's watermark behind the store's back.
  virtual void SetWatermark(std::int64_t stream_id, std::int64_t seq) = 0;
  /// Runs SQL on the store from a connection of its own.
  virtual void Sql(const std::string& sql) = 0;
  /// The first column of the first row of `sql`, as an integer.
  virtual std::int64_t QueryInt(const std::string& sql) = 0;

  Result<std::unique_ptr<collector::Store>> Open(collector::StoreOptions options = {}) {
    options.db = db();
    return collector::OpenStore(options);
  }
};

std::unique_ptr<StoreBackend> MakeSqliteBackend();
/// Fails the calling test if the test cluster is not running.
std::unique_ptr<StoreBackend> MakePostgresBackend();
std::unique_ptr<StoreBackend> MakeBackend(const std::string& name);

/// The superuser URI of the test cluster ("" if none), and a URI for a new
/// empty database on it.
std::string TestClusterUri();
std::string NewTestDatabase();

}  // namespace deskpulse::testing
