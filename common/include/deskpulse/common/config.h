#pragma once

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "deskpulse/common/status.h"

namespace deskpulse {

/// Reads a TOML configuration file. Every getter leaves its output alone when
/// the key is absent (so the caller's default stands) and fails, naming the key,
/// when the value has the wrong type or is out of range. CheckNoUnknownKeys()
/// then rejects anything the program did not ask for, so a typo is an error
/// rather than a silently ignored setting.
class ConfigReader {
 public:
  static Result<ConfigReader> FromFile(const std::string& path);
  static Result<ConfigReader> FromString(std::string_view text, std::string source);

  ConfigReader(ConfigReader&&) noexcept;
  ConfigReader& operator=(ConfigReader&&) noexcept;
  ~ConfigReader();

  Status GetString(std::string_view key, std::string* out);
  Status GetInt(std::string_view key, std::int64_t min, std::int64_t max, std::int64_t* out);
  Status GetDouble(std::string_view key, double min, double max, double* out);
  Status GetBool(std::string_view key, bool* out);
  /// An array of strings; every element must be a string.
  Status GetStringList(std::string_view key, std::vector<std::string>* out);
  /// An array of integers, each within min..max.
  Status GetIntList(std::string_view key, std::int64_t min, std::int64_t max,
                    std::vector<std::int64_t>* out);

  /// The names of the tables within table `key` (`[webhooks.crm]` →
  /// "crm"), in name order; none when `key` is absent. Each name must be a
  /// bare key of letters, digits, '-' and '_'.
  Status GetTableNames(std::string_view key, std::vector<std::string>* out);

  Status CheckNoUnknownKeys() const;
  const std::string& source() const { return source_; }

 private:
  struct Impl;
  ConfigReader(std::unique_ptr<Impl> impl, std::string source);
  Status KeyError(std::string_view key, std::string_view what) const;

  std::unique_ptr<Impl> impl_;
  std::string source_;
  std::set<std::string, std::less<>> known_;
};

}  // namespace deskpulse
