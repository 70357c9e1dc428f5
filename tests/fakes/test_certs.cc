#include "tests/fakes/test_certs.h"

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <cstdio>
#include <memory>
#include <stdexcept>

namespace deskpulse::testing {

namespace {
template <typename T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;

void Check(bool ok, const char* what) {
  if (!ok) throw std::runtime_error(std::string("test certificate: ") + what);
}

void AddExtension(X509* x, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, x, x, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  Check(ext != nullptr, "extension");
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
}
}  // namespace

TestCert WriteSelfSignedCert(const std::string& dir, const std::string& name,
                             const std::string& names) {
  PkeyPtr key(EVP_EC_gen("P-256"));
  Check(key != nullptr, "key");
  X509Ptr x(X509_new());
  X509_set_version(x.get(), 2);
  unsigned char serial[8];
  RAND_bytes(serial, sizeof serial);
  ASN1_INTEGER_set(X509_get_serialNumber(x.get()), (serial[0] << 16) | (serial[1] << 8) | 1);
  X509_gmtime_adj(X509_getm_notBefore(x.get()), -3600);
  X509_gmtime_adj(X509_getm_notAfter(x.get()), 2L * 86400);
  X509_set_pubkey(x.get(), key.get());
  X509_NAME* subject = X509_get_subject_name(x.get());
  X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC,
                             reinterpret_cast<const unsigned char*>(name.c_str()), -1, -1, 0);
  X509_set_issuer_name(x.get(), subject);
  AddExtension(x.get(), NID_basic_constraints, "critical,CA:TRUE");
  AddExtension(x.get(), NID_subject_alt_name, names.c_str());
  Check(X509_sign(x.get(), key.get(), EVP_sha256()) > 0, "sign");

  TestCert out{dir + "/" + name + ".crt", dir + "/" + name + ".key"};
  FILE* c = std::fopen(out.cert_file.c_str(), "w");
  Check(c && PEM_write_X509(c, x.get()) == 1, "write certificate");
  std::fclose(c);
  FILE* k = std::fopen(out.key_file.c_str(), "w");
  Check(k && PEM_write_PrivateKey(k, key.get(), nullptr, nullptr, 0, nullptr, nullptr) == 1,
        "write key");
  std::fclose(k);
  return out;
}

}  // namespace deskpulse::testing
