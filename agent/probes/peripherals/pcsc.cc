#include "agent/probes/peripherals/pcsc.h"

#include <winscard.h>

#include <cstdio>
#include <optional>

#include "agent/platform/dynamic_library.h"

namespace deskpulse::agent {

struct PcscClient::Api {
  explicit Api(DynamicLibrary l) : lib(std::move(l)) {}
  DynamicLibrary lib;
  decltype(&::SCardEstablishContext) establish = nullptr;
  decltype(&::SCardReleaseContext) release = nullptr;
  decltype(&::SCardListReaders) list = nullptr;
  decltype(&::SCardGetStatusChange) status_change = nullptr;
  decltype(&::pcsc_stringify_error) stringify = nullptr;
};

namespace {

std::string Describe(const char* (*stringify)(LONG), LONG rc) {
  char hex[16];
  std::snprintf(hex, sizeof hex, "0x%08lX", static_cast<unsigned long>(rc) & 0xFFFFFFFFul);
  std::string s = stringify ? stringify(rc) : "PC/SC error";
  return s + " (" + hex + ")";
}

}  // namespace

Result<std::unique_ptr<PcscClient>> PcscClient::Load() {
  DP_ASSIGN_OR_RETURN(DynamicLibrary lib, DynamicLibrary::Open("libpcsclite.so.1"));
  auto api = std::make_unique<Api>(std::move(lib));
  DP_RETURN_IF_ERROR(api->lib.Bind("SCardEstablishContext", &api->establish));
  DP_RETURN_IF_ERROR(api->lib.Bind("SCardReleaseContext", &api->release));
  DP_RETURN_IF_ERROR(api->lib.Bind("SCardListReaders", &api->list));
  DP_RETURN_IF_ERROR(api->lib.Bind("SCardGetStatusChange", &api->status_change));
  DP_RETURN_IF_ERROR(api->lib.Bind("pcsc_stringify_error", &api->stringify));
  return std::unique_ptr<PcscClient>(new PcscClient(std::move(api)));
}

PcscClient::PcscClient(std::unique_ptr<Api> api) : api_(std::move(api)) {}
PcscClient::~PcscClient() = default;

Result<std::vector<SmartCardReader>> PcscClient::Readers() {
  SCARDCONTEXT ctx = 0;
  LONG rc = api_->establish(SCARD_SCOPE_SYSTEM, nullptr, nullptr, &ctx);
  if (rc == SCARD_E_NO_SERVICE) {
    return Unavailable("pcscd is not running: " + Describe(api_->stringify, rc));
  }
  if (rc != SCARD_S_SUCCESS)
    return Unavailable("SCardEstablishContext: " + Describe(api_->stringify, rc));
  struct Release {
    Api* api;
    SCARDCONTEXT ctx;
    ~Release() { api->release(ctx); }
  } release{api_.get(), ctx};

  DWORD len = 0;
  rc = api_->list(ctx, nullptr, nullptr, &len);
  std::vector<SmartCardReader> readers;
  if (rc == SCARD_E_NO_READERS_AVAILABLE) return readers;
  if (rc != SCARD_S_SUCCESS)
    return Unavailable("SCardListReaders: " + Describe(api_->stringify, rc));
  std::string names(len, '\0');
  rc = api_->list(ctx, nullptr, names.data(), &len);
  if (rc == SCARD_E_NO_READERS_AVAILABLE) return readers;
  if (rc != SCARD_S_SUCCESS)
    return Unavailable("SCardListReaders: " + Describe(api_->stringify, rc));
  names.resize(std::min<std::size_t>(len, names.size()));

  std::vector<SCARD_READERSTATE> states;
  for (std::size_t at = 0; at < names.size() && names[at] != '\0';) {
    const std::size_t end = names.find('\0', at);
    SmartCardReader r;
    r.name = names.substr(at, end == std::string::npos ? std::string::npos : end - at);
    readers.push_back(std::move(r));
    if (end == std::string::npos) break;
    at = end + 1;
  }
  states.resize(readers.size());
  for (std::size_t i = 0; i < readers.size(); ++i) {
    states[i] = SCARD_READERSTATE{};
    states[i].szReader = readers[i].name.c_str();
    states[i].dwCurrentState = SCARD_STATE_UNAWARE;
  }
  if (!states.empty()) {
    rc = api_->status_change(ctx, 0, states.data(), static_cast<DWORD>(states.size()));
    if (rc != SCARD_S_SUCCESS && rc != SCARD_E_TIMEOUT) {
      return Unavailable("SCardGetStatusChange: " + Describe(api_->stringify, rc));
    }
    for (std::size_t i = 0; i < readers.size(); ++i) {
      readers[i].event_state = static_cast<std::uint32_t>(states[i].dwEventState & 0xFFFF);
      readers[i].card_present = (states[i].dwEventState & SCARD_STATE_PRESENT) != 0;
    }
  }
  return readers;
}

}  // namespace deskpulse::agent
