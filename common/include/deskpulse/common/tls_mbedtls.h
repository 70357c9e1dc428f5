#pragma once

#include <memory>

#include "deskpulse/common/byte_stream.h"
#include "deskpulse/common/status.h"

namespace deskpulse {

/// A TLS 1.2 client on Mbed TLS that trusts `options.ca_file`: ECDHE key
/// exchange and AEAD ciphers only, randomness from getrandom(2). It is the
/// agent's client because on a thin client it costs a fraction of OpenSSL 3's
/// memory (docs/architecture.md §3); it speaks to the collector's OpenSSL server.
Result<std::shared_ptr<TlsClient>> MakeMbedTlsClient(const TlsOptions& options);

}  // namespace deskpulse
