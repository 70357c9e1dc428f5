#include "collector/signals/parse.h"

#include <csv.h>
#include <fmt/format.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <ctime>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>

#include "collector/store/store.h"

namespace deskpulse::collector {

namespace {

struct Field {
  const char* name;
  bool required;
};

const std::vector<Field>& Fields(SignalKind k) {
  static const std::vector<Field> surveys = {{"customer", true}, {"date", true},
                                             {"nps", false},     {"ces", false},
                                             {"ves", false},     {"respondents", false}};
  static const std::vector<Field> tickets = {{"customer", true},  {"ticket_id", true},
                                             {"opened", true},    {"first_response", false},
                                             {"resolved", false}, {"severity", false}};
  static const std::vector<Field> contracts = {{"customer", true},
                                               {"tier", true},
                                               {"annual_value", true},
                                               {"start", true},
                                               {"renewal", true},
                                               {"renewal_status", true},
                                               {"expected_savings", false},
                                               {"realised_savings", false},
                                               {"sla_boot_s", false},
                                               {"sla_boot_pct", false},
                                               {"sla_rtt_ms", false},
                                               {"sla_rtt_pct", false},
                                               {"sla_peripherals_pct", false},
                                               {"sla_availability_pct", false}};
  static const std::vector<Field> reviews = {{"customer", true}, {"date", true}};
  switch (k) {
    case SignalKind::kSurveys:
      return surveys;
    case SignalKind::kTickets:
      return tickets;
    case SignalKind::kContracts:
      return contracts;
    case SignalKind::kReviews:
      return reviews;
  }
  return reviews;
}

int FieldIndex(SignalKind k, std::string_view name) {
  const auto& fields = Fields(k);
  for (std::size_t i = 0; i < fields.size(); ++i) {
    if (name == fields[i].name) return static_cast<int>(i);
  }
  return -1;
}

std::string FieldList(SignalKind k) {
  std::string out;
  for (const Field& f : Fields(k)) out += (out.empty() ? "" : ", ") + std::string(f.name);
  return out;
}

/// One row before validation: its values by field index, absent where empty.
struct Record {
  std::string where;
  std::vector<std::optional<std::string>> values;
};

class Errors {
 public:
  explicit Errors(ParseOutcome& out, std::size_t cap) : out_(out), cap_(cap) {}
  void Add(std::string where, std::string field, std::string message) {
    if (out_.errors.size() < cap_) {
      out_.errors.push_back({std::move(where), std::move(field), std::move(message)});
    } else {
      ++out_.more_errors;
    }
  }
  bool any() const { return !out_.errors.empty(); }

 private:
  ParseOutcome& out_;
  std::size_t cap_;
};

/// Text as a person wrote it, shortened for an error message.
std::string Quote(std::string_view v) {
  std::string s(v.substr(0, 40));
  for (char& c : s) {
    if (static_cast<unsigned char>(c) < 0x20) c = ' ';
  }
  return "'" + s + (v.size() > 40 ? "...'" : "'");
}

std::string_view Trim(std::string_view v) {
  while (!v.empty() && (v.front() == ' ' || v.front() == '\t')) v.remove_prefix(1);
  while (!v.empty() && (v.back() == ' ' || v.back() == '\t' || v.back() == '\r')) {
    v.remove_suffix(1);
  }
  return v;
}

// ---- CSV (libcsv: RFC 4180, quoted fields, strict about stray quotes) ----

class CsvReader {
 public:
  CsvReader(SignalKind kind, const SignalLimits& limits, Errors& errors)
      : kind_(kind), limits_(limits), errors_(errors) {}

  /// False when the file cannot be read on (its header is wrong, or a cap).
  bool Read(std::string_view bytes, std::vector<Record>& records) {
    records_ = &records;
    csv_parser p{};
    if (csv_init(&p, CSV_STRICT | CSV_STRICT_FINI | CSV_APPEND_NULL) != 0) {
      errors_.Add("file", "", "out of memory");
      return false;
    }
    // Fed a line at a time, so that each row knows the line it is on.
    std::size_t pos = 0;
    while (pos < bytes.size() && !stop_) {
      const std::size_t nl = bytes.find('\n', pos);
      const std::size_t end = nl == std::string_view::npos ? bytes.size() : nl + 1;
      ++line_;
      if (csv_parse(&p, bytes.data() + pos, end - pos, &OnField, &OnRow, this) != end - pos) {
        errors_.Add(fmt::format("line {}", line_), "", csv_strerror(csv_error(&p)));
        stop_ = true;
      }
      pos = end;
    }
    if (!stop_ && csv_fini(&p, &OnField, &OnRow, this) != 0) {
      errors_.Add(fmt::format("line {}", line_), "", csv_strerror(csv_error(&p)));
      stop_ = true;
    }
    csv_free(&p);
    if (!stop_ && !header_done_) errors_.Add("header", "", "the file is empty: no header line");
    return !stop_;
  }

 private:
  static void OnField(void* s, std::size_t len, void* self) {
    auto* r = static_cast<CsvReader*>(self);
    if (r->stop_) return;
    if (r->row_.empty()) r->row_line_ = r->line_;
    if (len > r->limits_.max_field_bytes) {
      r->too_long_.push_back(r->row_.size());
      len = 0;
    }
    r->row_.emplace_back(static_cast<const char*>(s), len);
  }

  static void OnRow(int /*terminator*/, void* self) {
    auto* r = static_cast<CsvReader*>(self);
    if (r->stop_) return;
    std::vector<std::string> row = std::move(r->row_);
    std::vector<std::size_t> too_long = std::move(r->too_long_);
    r->row_.clear();
    r->too_long_.clear();
    if (!r->header_done_) {
      r->Header(row);
      return;
    }
    const std::string where = fmt::format("line {}", r->row_line_);
    if (r->records_->size() >= r->limits_.max_rows) {
      r->errors_.Add(where, "", fmt::format("more than {} rows", r->limits_.max_rows));
      r->stop_ = true;
      return;
    }
    if (row.size() == 1 && Trim(row[0]).empty()) return;  // a line of blanks
    if (row.size() != r->columns_.size()) {
      r->errors_.Add(where, "",
                     fmt::format("{} fields, the header has {}", row.size(), r->columns_.size()));
      return;
    }
    Record rec{where, std::vector<std::optional<std::string>>(Fields(r->kind_).size())};
    for (std::size_t i = 0; i < row.size(); ++i) {
      const char* name = Fields(r->kind_)[static_cast<std::size_t>(r->columns_[i])].name;
      if (std::find(too_long.begin(), too_long.end(), i) != too_long.end()) {
        r->errors_.Add(where, name,
                       fmt::format("longer than {} bytes", r->limits_.max_field_bytes));
        continue;
      }
      const std::string_view v = Trim(row[i]);
      if (!v.empty()) rec.values[static_cast<std::size_t>(r->columns_[i])] = std::string(v);
    }
    r->records_->push_back(std::move(rec));
  }

  void Header(std::vector<std::string>& names) {
    header_done_ = true;
    if (!names.empty() && names[0].rfind("\xEF\xBB\xBF", 0) == 0) names[0].erase(0, 3);  // BOM
    std::vector<bool> seen(Fields(kind_).size());
    for (const std::string& raw : names) {
      const std::string_view name = Trim(raw);
      const int i = FieldIndex(kind_, name);
      if (i < 0) {
        errors_.Add("header", std::string(name),
                    fmt::format("unknown column for {}; the columns are: {}", SignalKindName(kind_),
                                FieldList(kind_)));
        continue;
      }
      if (seen[static_cast<std::size_t>(i)]) {
        errors_.Add("header", std::string(name), "column given twice");
        continue;
      }
      seen[static_cast<std::size_t>(i)] = true;
      columns_.push_back(i);
    }
    for (std::size_t i = 0; i < seen.size(); ++i) {
      if (!seen[i] && Fields(kind_)[i].required) {
        errors_.Add("header", Fields(kind_)[i].name, "required column missing");
      }
    }
    if (errors_.any()) stop_ = true;
  }

  SignalKind kind_;
  const SignalLimits& limits_;
  Errors& errors_;
  std::vector<Record>* records_ = nullptr;
  std::vector<int> columns_;  // field index of each column
  std::vector<std::string> row_;
  std::vector<std::size_t> too_long_;
  bool header_done_ = false;
  bool stop_ = false;
  int line_ = 0;
  int row_line_ = 0;
};

// ---- JSON: an array of objects, keys as the CSV columns ----

/// How deeply `bytes` nests arrays and objects, strings skipped: checked
/// before parsing, so that no input builds a deep tree.
int NestingDepth(std::string_view bytes) {
  int depth = 0;
  int most = 0;
  bool in_string = false;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const char c = bytes[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      most = std::max(most, ++depth);
    } else if (c == ']' || c == '}') {
      --depth;
    }
  }
  return most;
}

bool ReadJson(SignalKind kind, std::string_view bytes, const SignalLimits& limits, Errors& errors,
              std::vector<Record>& records) {
  if (NestingDepth(bytes) > 2) {
    errors.Add("file", "", "JSON nests deeper than an array of flat objects");
    return false;
  }
  nlohmann::json doc;
  try {
    doc = nlohmann::json::parse(bytes.begin(), bytes.end());
  } catch (const nlohmann::json::parse_error& e) {
    errors.Add(fmt::format("byte {}", e.byte), "", "not valid JSON");
    return false;
  }
  if (!doc.is_array()) {
    errors.Add("file", "", "JSON must be an array of objects, one per row");
    return false;
  }
  if (doc.size() > limits.max_rows) {
    errors.Add("file", "", fmt::format("more than {} rows", limits.max_rows));
    return false;
  }
  for (std::size_t n = 0; n < doc.size(); ++n) {
    const nlohmann::json& obj = doc[n];
    const std::string where = fmt::format("record {}", n + 1);
    if (!obj.is_object()) {
      errors.Add(where, "", "not an object");
      continue;
    }
    Record rec{where, std::vector<std::optional<std::string>>(Fields(kind).size())};
    for (const auto& [key, value] : obj.items()) {
      const int i = FieldIndex(kind, key);
      if (i < 0) {
        errors.Add(where, key,
                   fmt::format("unknown field for {}; the fields are: {}", SignalKindName(kind),
                               FieldList(kind)));
        continue;
      }
      std::string text;
      if (value.is_null()) continue;
      if (value.is_string()) {
        text = value.get<std::string>();
      } else if (value.is_number()) {
        text = value.dump();
      } else {
        errors.Add(where, key, "must be a string or a number");
        continue;
      }
      if (text.size() > limits.max_field_bytes) {
        errors.Add(where, key, fmt::format("longer than {} bytes", limits.max_field_bytes));
        continue;
      }
      const std::string_view v = Trim(text);
      if (!v.empty()) rec.values[static_cast<std::size_t>(i)] = std::string(v);
    }
    records.push_back(std::move(rec));
  }
  return true;
}

// ---- Values ----

/// Reads one record's fields, reporting each problem against its field.
class Row {
 public:
  Row(SignalKind kind, const Record& rec, Errors& errors)
      : kind_(kind), rec_(rec), errors_(errors) {}

  const std::optional<std::string>& Raw(const char* name) const {
    return rec_.values[static_cast<std::size_t>(FieldIndex(kind_, name))];
  }
  void Error(const char* field, std::string message) {
    errors_.Add(rec_.where, field, std::move(message));
    ok_ = false;
  }
  bool ok() const { return ok_; }
  const std::string& where() const { return rec_.where; }

  std::string Text(const char* name, std::size_t max = 200) {
    const auto& v = Raw(name);
    if (!v) {
      Missing(name);
      return {};
    }
    if (v->size() > max) Error(name, fmt::format("longer than {} characters", max));
    return *v;
  }

  std::optional<double> Number(const char* name, double lo, double hi) {
    const auto& v = Raw(name);
    if (!v) {
      Missing(name);
      return std::nullopt;
    }
    errno = 0;
    char* end = nullptr;
    const double x = std::strtod(v->c_str(), &end);
    if (end != v->c_str() + v->size() || errno != 0 || !std::isfinite(x)) {
      Error(name, fmt::format("must be a number, got {}", Quote(*v)));
      return std::nullopt;
    }
    if (x < lo || x > hi) {
      Error(name, fmt::format("must be within {:g}..{:g}, got {:g}", lo, hi, x));
      return std::nullopt;
    }
    return x;
  }

  /// "YYYY-MM-DD" (00:00 UTC) or an RFC 3339 time with its zone.
  std::optional<std::int64_t> Time(const char* name) {
    const auto& v = Raw(name);
    if (!v) {
      Missing(name);
      return std::nullopt;
    }
    auto t = ParseTime(*v);
    if (!t) {
      Error(name, fmt::format("must be a date (2026-11-20) or a time with its zone "
                              "(2026-11-20T09:30:00Z), got {}",
                              Quote(*v)));
    }
    return t;
  }

 private:
  void Missing(const char* name) {
    for (const Field& f : Fields(kind_)) {
      if (f.required && std::string_view(f.name) == name) Error(name, "required, missing");
    }
  }

  static std::optional<std::int64_t> ParseTime(const std::string& s) {
    int y = 0, mo = 0, d = 0, h = 0, mi = 0, sec = 0, consumed = 0;
    if (std::sscanf(s.c_str(), "%4d-%2d-%2d%n", &y, &mo, &d, &consumed) != 3 || consumed != 10) {
      return std::nullopt;
    }
    std::int64_t offset_s = 0;
    if (s.size() > 10) {
      int n = 0;
      if ((s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
          std::sscanf(s.c_str() + 11, "%2d:%2d:%2d%n", &h, &mi, &sec, &n) != 3 || n != 8) {
        return std::nullopt;
      }
      std::size_t p = 19;
      if (p < s.size() && s[p] == '.') {  // fractions of a second, dropped
        ++p;
        while (p < s.size() && s[p] >= '0' && s[p] <= '9') ++p;
      }
      const std::string zone = s.substr(p);
      if (zone == "Z" || zone == "z") {
        offset_s = 0;
      } else if (zone.size() == 6 && (zone[0] == '+' || zone[0] == '-') && zone[3] == ':') {
        int zh = 0, zm = 0;
        if (std::sscanf(zone.c_str() + 1, "%2d:%2d", &zh, &zm) != 2 || zh > 23 || zm > 59) {
          return std::nullopt;
        }
        offset_s = (zone[0] == '+' ? 1 : -1) * (std::int64_t{zh} * 3600 + std::int64_t{zm} * 60);
      } else {
        return std::nullopt;  // a time without its zone is ambiguous
      }
    }
    if (y < 1970 || y > 2200 || mo < 1 || mo > 12 || d < 1 || h > 23 || mi > 59 || sec > 60) {
      return std::nullopt;
    }
    std::tm tm{};
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    const std::time_t t = timegm(&tm);
    if (tm.tm_mday != d || tm.tm_mon != mo - 1) return std::nullopt;  // 2026-02-30
    return (static_cast<std::int64_t>(t) - offset_s) * 1000;
  }

  SignalKind kind_;
  const Record& rec_;
  Errors& errors_;
  bool ok_ = true;
};

std::optional<double> Optional(Row& r, const char* name, double lo, double hi) {
  return r.Raw(name) ? r.Number(name, lo, hi) : std::nullopt;
}

void AddSurvey(Row& r, SignalBatch& b) {
  SurveyRow row;
  row.where = r.where();
  row.customer = r.Text("customer");
  row.survey.date_ms = r.Time("date").value_or(0);
  row.survey.nps = Optional(r, "nps", -100, 100);
  row.survey.ces = Optional(r, "ces", 1, 7);
  row.survey.ves = Optional(r, "ves", 1, 7);
  row.survey.respondents =
      r.Raw("respondents") ? static_cast<std::int64_t>(r.Number("respondents", 1, 1e9).value_or(1))
                           : 1;
  if (r.Raw("respondents") && r.Raw("respondents")->find('.') != std::string::npos) {
    r.Error("respondents", "must be a whole number");
  }
  if (!r.Raw("nps") && !r.Raw("ces") && !r.Raw("ves")) {
    r.Error("nps", "a survey row needs at least one of nps, ces, ves");
  }
  if (r.ok()) b.surveys.push_back(std::move(row));
}

void AddTicket(Row& r, SignalBatch& b) {
  TicketRow row;
  row.where = r.where();
  row.customer = r.Text("customer");
  row.ticket.id = r.Text("ticket_id", 100);
  row.ticket.opened_ms = r.Time("opened").value_or(0);
  if (r.Raw("first_response")) row.ticket.first_response_ms = r.Time("first_response");
  if (r.Raw("resolved")) row.ticket.resolved_ms = r.Time("resolved");
  if (r.Raw("severity")) row.ticket.severity = r.Text("severity", 20);
  if (r.ok() && row.ticket.first_response_ms &&
      *row.ticket.first_response_ms < row.ticket.opened_ms) {
    r.Error("first_response", "is before opened");
  }
  if (r.ok() && row.ticket.resolved_ms && *row.ticket.resolved_ms < row.ticket.opened_ms) {
    r.Error("resolved", "is before opened");
  }
  if (r.ok()) b.tickets.push_back(std::move(row));
}

void AddContract(Row& r, SignalBatch& b) {
  ContractRow row;
  row.where = r.where();
  row.customer = r.Text("customer");
  const std::string tier = r.Text("tier");
  if (tier.size() == 1 && std::string_view("SABCsabc").find(tier[0]) != std::string_view::npos) {
    row.contract.tier = static_cast<char>(std::toupper(static_cast<unsigned char>(tier[0])));
  } else if (r.Raw("tier")) {
    r.Error("tier", fmt::format("must be S, A, B or C, got {}", Quote(tier)));
  }
  row.contract.annual_value = r.Number("annual_value", 0, 1e12).value_or(0);
  row.contract.start_ms = r.Time("start").value_or(0);
  row.contract.renewal_ms = r.Time("renewal").value_or(0);
  const std::string status = r.Text("renewal_status");
  if (auto s = scoring::ParseRenewalStatus(status)) {
    row.contract.renewal_status = *s;
  } else if (r.Raw("renewal_status")) {
    r.Error("renewal_status",
            fmt::format("must be pending, renewed or cancelled, got {}", Quote(status)));
  }
  row.contract.expected_savings = Optional(r, "expected_savings", 0, 1e12);
  row.contract.realised_savings = Optional(r, "realised_savings", 0, 1e12);
  row.sla.boot_s = Optional(r, "sla_boot_s", 1, 3600);
  row.sla.boot_pct = Optional(r, "sla_boot_pct", 0, 100);
  row.sla.rtt_ms = Optional(r, "sla_rtt_ms", 1, 10'000);
  row.sla.rtt_pct = Optional(r, "sla_rtt_pct", 0, 100);
  row.sla.peripherals_pct = Optional(r, "sla_peripherals_pct", 0, 100);
  row.sla.availability_pct = Optional(r, "sla_availability_pct", 0, 100);
  if (r.ok() && row.contract.renewal_ms < row.contract.start_ms) {
    r.Error("renewal", "is before start");
  }
  if (r.ok()) b.contracts.push_back(std::move(row));
}

void AddReview(Row& r, SignalBatch& b) {
  ReviewRow row;
  row.where = r.where();
  row.customer = r.Text("customer");
  row.date_ms = r.Time("date").value_or(0);
  if (r.ok()) b.reviews.push_back(std::move(row));
}

/// Keeps the last row of each natural key, in the order of their first.
template <typename RowT, typename KeyFn>
void KeepLast(std::vector<RowT>& rows, KeyFn key) {
  std::map<decltype(key(rows[0])), std::size_t> at;
  std::vector<RowT> out;
  for (RowT& r : rows) {
    auto [it, fresh] = at.emplace(key(r), out.size());
    if (fresh) {
      out.push_back(std::move(r));
    } else {
      out[it->second] = std::move(r);
    }
  }
  rows = std::move(out);
}

}  // namespace

std::optional<SignalFormat> ParseSignalFormat(std::string_view s) {
  if (s == "csv") return SignalFormat::kCsv;
  if (s == "json") return SignalFormat::kJson;
  return std::nullopt;
}

SignalFormat SignalFormatOf(std::string_view file_name, std::string_view bytes) {
  auto ends = [&](std::string_view ext) {
    return file_name.size() >= ext.size() &&
           std::equal(ext.rbegin(), ext.rend(), file_name.rbegin(), [](char a, char b) {
             return a == std::tolower(static_cast<unsigned char>(b));
           });
  };
  if (ends(".csv")) return SignalFormat::kCsv;
  if (ends(".json")) return SignalFormat::kJson;
  const std::string_view t = Trim(bytes.substr(0, 64));
  return !t.empty() && t.front() == '[' ? SignalFormat::kJson : SignalFormat::kCsv;
}

std::vector<std::string> SignalFields(SignalKind kind) {
  std::vector<std::string> out;
  for (const Field& f : Fields(kind)) out.emplace_back(f.name);
  return out;
}

std::string ParseOutcome::Summary() const {
  if (errors.empty()) return "no error";
  const FieldError& e = errors.front();
  const std::size_t n = errors.size() + more_errors;
  return fmt::format("{}{}: {}{}", e.where, e.field.empty() ? "" : ", field " + e.field, e.message,
                     n > 1 ? fmt::format(" (and {} more problems)", n - 1) : "");
}

ParseOutcome ParseSignals(SignalKind kind, SignalFormat format, std::string_view bytes,
                          const SignalLimits& limits) {
  ParseOutcome out;
  Errors errors(out, limits.max_errors);
  if (bytes.size() > limits.max_bytes) {
    errors.Add("file", "",
               fmt::format("{} bytes, over the {} byte limit", bytes.size(), limits.max_bytes));
    return out;
  }
  std::vector<Record> records;
  const bool read = format == SignalFormat::kCsv
                        ? CsvReader(kind, limits, errors).Read(bytes, records)
                        : ReadJson(kind, bytes, limits, errors, records);
  if (!read) return out;

  SignalBatch batch;
  batch.kind = kind;
  for (const Record& rec : records) {
    Row r(kind, rec, errors);
    switch (kind) {
      case SignalKind::kSurveys:
        AddSurvey(r, batch);
        break;
      case SignalKind::kTickets:
        AddTicket(r, batch);
        break;
      case SignalKind::kContracts:
        AddContract(r, batch);
        break;
      case SignalKind::kReviews:
        AddReview(r, batch);
        break;
    }
  }
  if (errors.any()) return out;
  if (!batch.surveys.empty()) {
    KeepLast(batch.surveys,
             [](const SurveyRow& r) { return std::pair(r.customer, r.survey.date_ms); });
  }
  if (!batch.tickets.empty()) {
    KeepLast(batch.tickets, [](const TicketRow& r) { return std::pair(r.customer, r.ticket.id); });
  }
  if (!batch.contracts.empty()) {
    KeepLast(batch.contracts, [](const ContractRow& r) { return r.customer; });
  }
  if (!batch.reviews.empty()) {
    KeepLast(batch.reviews, [](const ReviewRow& r) { return std::pair(r.customer, r.date_ms); });
  }
  batch.content_sha256 = Sha256Hex(bytes);
  out.batch = std::move(batch);
  return out;
}

std::optional<std::int64_t> DateMs(std::string_view date) {
  if (date.size() != 10) return std::nullopt;
  const std::string d(date);
  std::tm tm{};
  const char* end = strptime(d.c_str(), "%Y-%m-%d", &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  const int day = tm.tm_mday;
  const std::time_t t = timegm(&tm);
  if (tm.tm_mday != day) return std::nullopt;  // 2026-02-30
  return static_cast<std::int64_t>(t) * 1000;
}

Result<scoring::Override> MakeOverride(std::string_view factor, double value,
                                       std::string_view reason, std::string_view expires,
                                       std::int64_t now_ms, std::string* field) {
  const auto f = scoring::ParseFactor(factor);
  if (!f || *f == scoring::Factor::kTechnical) {
    *field = "factor";
    return InvalidArgument(
        "factor must be value, service, brand or relationship (technical is "
        "measured)");
  }
  if (!(value >= 0 && value <= 100)) {
    *field = "value";
    return InvalidArgument("value must be a number from 0 to 100");
  }
  if (reason.empty() || reason.size() > 500) {
    *field = "reason";
    return InvalidArgument("reason must be 1..500 characters: say why");
  }
  const auto at = DateMs(expires);
  if (!at) {
    *field = "expires";
    return InvalidArgument("expires must be a date, YYYY-MM-DD");
  }
  if (*at <= now_ms) {
    *field = "expires";
    return InvalidArgument("expires must be in the future");
  }
  return scoring::Override{
      .factor = *f, .value = value, .reason = std::string(reason), .expires_ms = *at};
}

}  // namespace deskpulse::collector
