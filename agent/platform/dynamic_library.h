#pragma once

#include <dlfcn.h>

#include <string>

#include "deskpulse/common/status.h"

namespace deskpulse::agent {

/// A shared library loaded only if it is installed: thin-client images are
/// vendor-built and may lack CUPS, PC/SC, libvirt or even libsystemd, and the
/// agent must run without them.
class DynamicLibrary {
 public:
  static Result<DynamicLibrary> Open(const std::string& soname) {
    void* h = ::dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h == nullptr) {
      const char* e = ::dlerror();
      return Unavailable(soname + " is not installed (" + (e ? e : "dlopen failed") + ")");
    }
    return DynamicLibrary(h, soname);
  }
  DynamicLibrary(DynamicLibrary&& o) noexcept : handle_(o.handle_), name_(std::move(o.name_)) {
    o.handle_ = nullptr;
  }
  DynamicLibrary& operator=(DynamicLibrary&&) = delete;
  ~DynamicLibrary() {
    if (handle_ != nullptr) ::dlclose(handle_);
  }

  /// Resolve `symbol` into the function pointer `*fn`.
  template <typename Fn>
  Status Bind(const char* symbol, Fn* fn) const {
    ::dlerror();
    void* p = ::dlsym(handle_, symbol);
    if (p == nullptr) return Unavailable(name_ + " lacks " + symbol);
    *fn = reinterpret_cast<Fn>(p);
    return Status::Ok();
  }

 private:
  DynamicLibrary(void* handle, std::string name) : handle_(handle), name_(std::move(name)) {}
  void* handle_;
  std::string name_;
};

}  // namespace deskpulse::agent
