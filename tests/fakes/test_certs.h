#pragma once

#include <string>

namespace deskpulse::testing {

/// A throwaway self-signed EC P-256 certificate for `localhost` and
/// 127.0.0.1, written as PEM files; a client that loads cert_file as its CA
/// trusts it.
struct TestCert {
  std::string cert_file;
  std::string key_file;
};

TestCert WriteSelfSignedCert(const std::string& dir, const std::string& name);

}  // namespace deskpulse::testing
