#pragma once

#include <string>

namespace deskpulse::testing {

/// A throwaway self-signed EC P-256 certificate, written as PEM files; a
/// client that loads cert_file as its CA trusts it. `names` are its
/// subjectAltNames in OpenSSL's notation.
struct TestCert {
  std::string cert_file;
  std::string key_file;
};

TestCert WriteSelfSignedCert(const std::string& dir, const std::string& name,
                             const std::string& names = "IP:127.0.0.1,DNS:localhost");

}  // namespace deskpulse::testing
