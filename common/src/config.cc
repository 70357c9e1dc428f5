#include "deskpulse/common/config.h"

#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>
#include <vector>

namespace deskpulse {

struct ConfigReader::Impl {
  toml::table table;
};

ConfigReader::ConfigReader(std::unique_ptr<Impl> impl, std::string source)
    : impl_(std::move(impl)), source_(std::move(source)) {}
ConfigReader::ConfigReader(ConfigReader&&) noexcept = default;
ConfigReader& ConfigReader::operator=(ConfigReader&&) noexcept = default;
ConfigReader::~ConfigReader() = default;

Result<ConfigReader> ConfigReader::FromString(std::string_view text, std::string source) {
  try {
    auto impl = std::make_unique<Impl>();
    impl->table = toml::parse(text, source);
    return ConfigReader(std::move(impl), std::move(source));
  } catch (const toml::parse_error& e) {
    std::ostringstream msg;
    msg << source << ":" << e.source().begin.line << ":" << e.source().begin.column << ": "
        << e.description();
    return InvalidArgument(msg.str());
  }
}

Result<ConfigReader> ConfigReader::FromFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status(Code::kNotFound, "cannot open config file " + path);
  std::stringstream buf;
  buf << in.rdbuf();
  return FromString(buf.str(), path);
}

Status ConfigReader::KeyError(std::string_view key, std::string_view what) const {
  return InvalidArgument(source_ + ": key '" + std::string(key) + "': " + std::string(what));
}

Status ConfigReader::GetTableNames(std::string_view key, std::vector<std::string>* out) {
  known_.emplace(key);
  const toml::node* node = impl_->table.at_path(key).node();
  if (node == nullptr) return Status::Ok();
  const auto* t = node->as_table();
  if (t == nullptr) return KeyError(key, "expected a table of tables");
  out->clear();
  for (const auto& [name, value] : *t) {
    const std::string_view n = name.str();
    const bool bare = !n.empty() && n.size() <= 64 && std::all_of(n.begin(), n.end(), [](char c) {
      return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_';
    });
    if (!bare) return KeyError(key, "a name must be 1-64 letters, digits, '-' or '_'");
    if (!value.is_table()) {
      return KeyError(std::string(key) + "." + std::string(n), "expected a table");
    }
    known_.emplace(std::string(key) + "." + std::string(n));
    out->emplace_back(n);
  }
  return Status::Ok();
}

Status ConfigReader::GetString(std::string_view key, std::string* out) {
  known_.emplace(key);
  const toml::node* node = impl_->table.at_path(key).node();
  if (node == nullptr) return Status::Ok();
  const auto* v = node->as_string();
  if (v == nullptr) return KeyError(key, "expected a string");
  *out = v->get();
  return Status::Ok();
}

Status ConfigReader::GetInt(std::string_view key, std::int64_t min, std::int64_t max,
                            std::int64_t* out) {
  known_.emplace(key);
  const toml::node* node = impl_->table.at_path(key).node();
  if (node == nullptr) return Status::Ok();
  const auto* v = node->as_integer();
  if (v == nullptr) return KeyError(key, "expected an integer");
  if (v->get() < min || v->get() > max) {
    return KeyError(key, "value " + std::to_string(v->get()) + " is outside " +
                             std::to_string(min) + ".." + std::to_string(max));
  }
  *out = v->get();
  return Status::Ok();
}

Status ConfigReader::GetDouble(std::string_view key, double min, double max, double* out) {
  known_.emplace(key);
  const toml::node* node = impl_->table.at_path(key).node();
  if (node == nullptr) return Status::Ok();
  double value = 0;
  if (const auto* f = node->as_floating_point()) {
    value = f->get();
  } else if (const auto* i = node->as_integer()) {
    value = static_cast<double>(i->get());
  } else {
    return KeyError(key, "expected a number");
  }
  if (!(value >= min && value <= max)) {
    std::ostringstream m;
    m << "value " << value << " is outside " << min << ".." << max;
    return KeyError(key, m.str());
  }
  *out = value;
  return Status::Ok();
}

Status ConfigReader::GetBool(std::string_view key, bool* out) {
  known_.emplace(key);
  const toml::node* node = impl_->table.at_path(key).node();
  if (node == nullptr) return Status::Ok();
  const auto* v = node->as_boolean();
  if (v == nullptr) return KeyError(key, "expected true or false");
  *out = v->get();
  return Status::Ok();
}

Status ConfigReader::GetStringList(std::string_view key, std::vector<std::string>* out) {
  known_.emplace(key);
  const toml::node* node = impl_->table.at_path(key).node();
  if (node == nullptr) return Status::Ok();
  const auto* arr = node->as_array();
  if (arr == nullptr) return KeyError(key, "expected an array of strings");
  std::vector<std::string> values;
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const auto* v = arr->get(i)->as_string();
    if (v == nullptr) {
      return KeyError(key, "element " + std::to_string(i) + " is not a string");
    }
    values.push_back(v->get());
  }
  *out = std::move(values);
  return Status::Ok();
}

Status ConfigReader::GetIntList(std::string_view key, std::int64_t min, std::int64_t max,
                                std::vector<std::int64_t>* out) {
  known_.emplace(key);
  const toml::node* node = impl_->table.at_path(key).node();
  if (node == nullptr) return Status::Ok();
  const auto* arr = node->as_array();
  if (arr == nullptr) return KeyError(key, "expected an array of integers");
  std::vector<std::int64_t> values;
  for (std::size_t i = 0; i < arr->size(); ++i) {
    const auto* v = arr->get(i)->as_integer();
    if (v == nullptr) {
      return KeyError(key, "element " + std::to_string(i) + " is not an integer");
    }
    if (v->get() < min || v->get() > max) {
      return KeyError(key, "element " + std::to_string(i) + " (" + std::to_string(v->get()) +
                               ") is outside " + std::to_string(min) + ".." + std::to_string(max));
    }
    values.push_back(v->get());
  }
  *out = std::move(values);
  return Status::Ok();
}

namespace {
void CollectLeaves(const toml::table& table, const std::string& prefix,
                   std::vector<std::string>* out) {
  for (const auto& [k, node] : table) {
    std::string path = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
    if (const auto* sub = node.as_table()) {
      CollectLeaves(*sub, path, out);
    } else {
      out->push_back(std::move(path));
    }
  }
}
}  // namespace

Status ConfigReader::CheckNoUnknownKeys() const {
  std::vector<std::string> leaves;
  CollectLeaves(impl_->table, "", &leaves);
  for (const auto& leaf : leaves) {
    if (!known_.contains(leaf)) return KeyError(leaf, "unknown key");
  }
  return Status::Ok();
}

}  // namespace deskpulse
