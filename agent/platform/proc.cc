#include "agent/platform/proc.h"

#include <fcntl.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace deskpulse::agent {

Result<std::string> ReadSmallFile(const std::string& path, std::size_t max_bytes) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    if (e == ENOENT) return NotFound(path + " does not exist");
    return IoError("cannot read " + path + ": " + std::strerror(e));
  }
  std::string out;
  char buf[4096];
  while (out.size() < max_bytes) {
    const ssize_t n = ::read(fd, buf, std::min(sizeof buf, max_bytes - out.size()));
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      return IoError("cannot read " + path + ": " + std::strerror(e));
    }
    if (n == 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

std::optional<std::string> ReadLine(const std::string& path) {
  auto text = ReadSmallFile(path, 4096);
  if (!text.ok()) return std::nullopt;
  std::string line = text->substr(0, text->find('\n'));
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
  return line;
}

Result<std::string> ReadBootId(const std::string& proc_root) {
  const std::string path = proc_root + "/sys/kernel/random/boot_id";
  auto line = ReadLine(path);
  if (!line || line->size() != 36) return NotFound("no boot id in " + path);
  return *line;
}

Result<double> ReadUptime(const std::string& proc_root) {
  const std::string path = proc_root + "/uptime";
  auto line = ReadLine(path);
  if (!line) return NotFound(path + " is not readable");
  char* end = nullptr;
  const double v = std::strtod(line->c_str(), &end);
  if (end == line->c_str() || v < 0)
    return InvalidArgument(path + ": cannot parse '" + *line + "'");
  return v;
}

std::int64_t BootedAtUnixMs() {
  timespec real{}, boot{};
  ::clock_gettime(CLOCK_REALTIME, &real);
  ::clock_gettime(CLOCK_BOOTTIME, &boot);
  const std::int64_t real_ms = real.tv_sec * 1000LL + real.tv_nsec / 1'000'000;
  const std::int64_t boot_ms = boot.tv_sec * 1000LL + boot.tv_nsec / 1'000'000;
  return real_ms - boot_ms;
}

std::int64_t NowUnixMs() {
  timespec real{};
  ::clock_gettime(CLOCK_REALTIME, &real);
  return real.tv_sec * 1000LL + real.tv_nsec / 1'000'000;
}

Status WriteFileAtomically(const std::string& path, const std::string& content) {
  const std::string tmp = path + ".tmp";
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return IoError("cannot write " + tmp + ": " + std::strerror(errno));
  const char* p = content.data();
  std::size_t left = content.size();
  while (left > 0) {
    const ssize_t n = ::write(fd, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      return IoError("cannot write " + tmp + ": " + std::strerror(e));
    }
    p += n;
    left -= static_cast<std::size_t>(n);
  }
  ::fdatasync(fd);
  ::close(fd);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    return IoError("cannot rename " + tmp + ": " + std::strerror(errno));
  }
  return Status::Ok();
}

}  // namespace deskpulse::agent
