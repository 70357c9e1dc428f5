// The peripheral catalog, built from the public catalogs installed on this
// machine (scripts/setup.sh installs hwdata, libsane1, foomatic-db, libccid and
// a kernel image), then read back and used to classify real device ids.
#include "deskpulse/common/catalog.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "collector/catalog/builder.h"
#include "collector/catalog/lookup.h"
#include "collector/catalog/sources.h"

namespace deskpulse::catalog {
namespace {

namespace fs = std::filesystem;

std::string ReadAll(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

class CatalogTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(fs::temp_directory_path() /
                        ("deskpulse-catalog-test-" + std::to_string(::getpid())));
    fs::create_directories(*dir_);
    BuildOptions o;
    o.out = (*dir_ / "catalog.sqlite").string();
    auto s = BuildCatalog(o);
    ASSERT_TRUE(s.ok()) << s.status().message();
    summary_ = new BuildSummary(*s);
  }
  static void TearDownTestSuite() {
    fs::remove_all(*dir_);
    delete dir_;
    delete summary_;
  }
  void SetUp() override {
    auto r = Reader::Open((*dir_ / "catalog.sqlite").string(), LinkedSqliteApi());
    ASSERT_TRUE(r.ok()) << r.status().message();
    reader_.emplace(std::move(*r));
  }

  Facts Look(const Observation& o) {
    auto f = reader_->Lookup(o);
    EXPECT_TRUE(f.ok()) << f.status().message();
    return f.ok() ? *f : Facts{};
  }
  static Observation Usb(std::uint16_t v, std::uint16_t p, std::vector<std::uint8_t> classes = {},
                         std::vector<std::string> drivers = {}) {
    Observation o;
    o.vendor_id = v;
    o.product_id = p;
    o.interface_classes = std::move(classes);
    o.drivers = std::move(drivers);
    return o;
  }
  static Observation Printer(std::string ieee1284) {
    Observation o;
    o.ieee1284_id = std::move(ieee1284);
    return o;
  }

  static inline fs::path* dir_ = nullptr;
  static inline BuildSummary* summary_ = nullptr;
  std::optional<Reader> reader_;
};

TEST_F(CatalogTest, RecordsEverySourceWithItsPackageAndVersion) {
  auto sources = reader_->Sources();
  ASSERT_TRUE(sources.ok());
  std::map<std::string, SourceRecord> by_name;
  for (const auto& s : *sources) by_name[s.source] = s;
  const std::map<std::string, std::string> packages = {{"usb.ids", "usb.ids"},
                                                       {"sane", "libsane1"},
                                                       {"foomatic", "foomatic-db"},
                                                       {"ccid", "libccid"},
                                                       {"kernel", "linux-image-"}};
  for (const auto& [name, package] : packages) {
    ASSERT_TRUE(by_name.count(name)) << name;
    const auto& s = by_name[name];
    EXPECT_TRUE(s.package.starts_with(package)) << name << ": " << s.package;
    EXPECT_FALSE(s.package_version.empty()) << name;
    EXPECT_FALSE(s.source_version.empty()) << name;
  }
  // Sizes of Debian 12's catalogs, with room for point releases.
  EXPECT_GT(by_name["usb.ids"].entries, 20000);
  EXPECT_GT(by_name["sane"].entries, 1000);
  EXPECT_GT(by_name["foomatic"].entries, 5000);
  EXPECT_GT(by_name["ccid"].entries, 400);
  EXPECT_GT(by_name["kernel"].entries, 5000);
  EXPECT_EQ(reader_->version(), summary_->catalog_version);
  EXPECT_TRUE(reader_->version().starts_with("1-"));
}

TEST_F(CatalogTest, RebuildIsByteForByteIdentical) {
  BuildOptions o;
  o.out = (*dir_ / "again.sqlite").string();
  auto s = BuildCatalog(o);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_EQ(s->catalog_version, summary_->catalog_version);
  const std::string a = ReadAll((*dir_ / "catalog.sqlite").string());
  const std::string b = ReadAll(o.out);
  EXPECT_GT(a.size(), 1'000'000u);
  EXPECT_TRUE(a == b) << "two builds from the same packages differ";
  EXPECT_FALSE(fs::exists(o.out + ".tmp"));
}

TEST_F(CatalogTest, KnowsUsbNames) {
  const Facts f = Look(Usb(0x1d6b, 0x0002));
  EXPECT_EQ(f.vendor_name, "Linux Foundation");
  EXPECT_EQ(f.product_name, "2.0 root hub");
}

TEST_F(CatalogTest, KnowsSaneScanners) {
  const Facts f = Look(Usb(0x04a9, 0x1909, {0xff}));  // Canon CanoScan LiDE 110
  ASSERT_TRUE(f.sane_models.has_value());
  EXPECT_NE(f.sane_models->find("LiDE 110"), std::string::npos) << *f.sane_models;
  const Classification c = Classify(Usb(0x04a9, 0x1909, {0xff}), f);
  EXPECT_EQ(c.verdict, Verdict::kSupported);
  EXPECT_EQ(c.source, "sane");
}

TEST_F(CatalogTest, KnowsFoomaticPrintersAndTheirRating) {
  const Facts f = Look(Printer("MFG:Hewlett-Packard;MDL:HP LaserJet 1020;CMD:ACL;CLS:PRINTER;"));
  ASSERT_TRUE(f.printer.has_value());
  EXPECT_EQ(f.printer->foomatic_id, "HP-LaserJet_1020");
  EXPECT_EQ(f.printer->make, "HP");
  EXPECT_EQ(f.printer->model, "LaserJet 1020");
  EXPECT_EQ(f.printer->rating, PrinterRating::kMostly);
  EXPECT_EQ(f.printer->driver, "foo2zjs-z1");
}

TEST_F(CatalogTest, KnowsCcidReaders) {
  const Facts f = Look(Usb(0x08e6, 0x3437, {0x0b}));
  ASSERT_TRUE(f.ccid_reader.has_value());
  EXPECT_EQ(*f.ccid_reader, "Gemalto PC Twin Reader");
  EXPECT_EQ(Classify(Usb(0x08e6, 0x3437, {0x0b}), f).source, "ccid");
}

TEST_F(CatalogTest, KnowsKernelDriversByIdAndByClass) {
  const Facts nic = Look(Usb(0x0bda, 0x8153, {0xff, 0x02, 0x0a}));
  EXPECT_NE(std::find(nic.kernel_by_id.begin(), nic.kernel_by_id.end(), "r8152"),
            nic.kernel_by_id.end());
  // Any printer-class interface: usblp; any video-class interface: uvcvideo.
  const Facts printer = Look(Usb(0x1234, 0x5678, {0x07}));
  EXPECT_NE(std::find(printer.kernel_by_class.begin(), printer.kernel_by_class.end(), "usblp"),
            printer.kernel_by_class.end());
  const Facts cam = Look(Usb(0x1234, 0x5679, {0x0e, 0x01}));
  EXPECT_NE(std::find(cam.kernel_by_class.begin(), cam.kernel_by_class.end(), "uvcvideo"),
            cam.kernel_by_class.end());
}

// ---------------------------------------------------------------- classification

TEST_F(CatalogTest, UnknownDevice) {
  auto c = reader_->Classify(Usb(0xfffe, 0x0f0f, {0xff}));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->verdict, Verdict::kUnknown);
  EXPECT_EQ(c->source, "");
  EXPECT_NE(c->detail.find("no catalog source knows fffe:0f0f"), std::string::npos) << c->detail;
}

TEST_F(CatalogTest, PrinterMatchedOnlyByItsIeee1284Id) {
  // A print queue: no USB ids at all, only the device id the printer reported.
  auto c = reader_->Classify(
      Printer("MANUFACTURER:Hewlett-Packard;COMMAND SET:PJL,PCL,POSTSCRIPT;MODEL:HP LaserJet "
              "4050 Series;CLASS:PRINTER;"));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->verdict, Verdict::kSupported);
  EXPECT_EQ(c->source, "foomatic");
  EXPECT_EQ(c->model, "HP LaserJet 4050");
  EXPECT_NE(c->detail.find("matched by its IEEE-1284 id"), std::string::npos) << c->detail;
}

TEST_F(CatalogTest, PrinterTheCatalogRatesPartial) {
  // OpenPrinting: Brother PT-1950 works "partially".
  auto c = reader_->Classify(Printer("MFG:Brother;CMD:PT-CBP;MDL:1950;CLS:PRINTER;"));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->verdict, Verdict::kPartial);
  EXPECT_EQ(c->source, "foomatic");
  EXPECT_NE(c->detail.find("'partially'"), std::string::npos) << c->detail;
}

TEST_F(CatalogTest, PaperweightPrinterIsUnsupportedEvenThoughUsblpWouldBind) {
  Observation o = Usb(0x03f0, 0x0000, {0x07}, {"usblp"});
  o.ieee1284_id = "MFG:Hewlett-Packard;MDL:HP LaserJet 3100;CLS:PRINTER;";
  auto c = reader_->Classify(o);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->verdict, Verdict::kUnsupported);
  EXPECT_EQ(c->source, "foomatic");
}

TEST_F(CatalogTest, SupportedDeviceWithNoDriverBoundOnTheEndpoint) {
  // Logitech C920: uvcvideo claims it, yet nothing is bound here.
  auto c = reader_->Classify(Usb(0x046d, 0x082d, {0x0e, 0x0e, 0x01, 0x01}));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->verdict, Verdict::kSupported);
  EXPECT_EQ(c->source, "kernel");
  EXPECT_EQ(c->driver, "uvcvideo");
  EXPECT_NE(c->detail.find("no driver is bound on the endpoint although uvcvideo matches it"),
            std::string::npos)
      << c->detail;

  // Bound: nothing to add. Redirected: the session drives it, not the endpoint.
  auto bound = reader_->Classify(Usb(0x046d, 0x082d, {0x0e, 0x01}, {"uvcvideo", "snd-usb-audio"}));
  ASSERT_TRUE(bound.ok());
  EXPECT_EQ(bound->detail.find("no driver"), std::string::npos) << bound->detail;
  Observation redirected = Usb(0x046d, 0x082d, {0x0e, 0x01}, {"usbip-host"});
  redirected.redirected = true;
  auto r = reader_->Classify(redirected);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->verdict, Verdict::kSupported);
  EXPECT_EQ(r->detail.find("instead of"), std::string::npos) << r->detail;
}

TEST_F(CatalogTest, SmartCardReaderOutsideLibccidsListIsPartial) {
  auto c = reader_->Classify(Usb(0xfffe, 0x0b0b, {0x0b}));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->verdict, Verdict::kPartial);
  EXPECT_EQ(c->source, "ccid");
}

TEST_F(CatalogTest, ScannerSaneDoesNotListIsUnsupported) {
  // Facts as the reader returns them for a device usb.ids calls a scanner and
  // SANE does not list.
  Facts f;
  f.vendor_name = "Visioneer";
  f.product_name = "Strobe XP 450 Scanner";
  Observation o = Usb(0x04a7, 0x0462, {0xff});
  const Classification c = Classify(o, f);
  EXPECT_EQ(c.verdict, Verdict::kUnsupported);
  EXPECT_EQ(c.source, "sane");
  // A barcode scanner is not SANE's business.
  f.product_name = "Barcode scanner";
  EXPECT_EQ(Classify(o, f).verdict, Verdict::kUnknown);
}

// ---------------------------------------------------------------- parsers on bad input

TEST(CatalogSources, UsbIdsErrorsNameTheLine) {
  std::istringstream in("# Version: 2099.01.01\n0001  Vendor\n\tzz  broken\n");
  std::string version;
  auto r = ParseUsbIds(in, "usb.ids", &version);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "usb.ids:3: expected '<tab>XXXX  name'");
}

TEST(CatalogSources, UsbIdsStopsAtTheClassTables) {
  std::istringstream in(
      "# Version: 2099.01.01\n0001  Vendor\n\t0002  Thing\n\t\t00  iface\nC 00  (Defined at "
      "Interface level)\n\t01  Audio\n");
  std::string version;
  auto r = ParseUsbIds(in, "usb.ids", &version);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(version, "2099.01.01");
  ASSERT_EQ(r->size(), 2u);
  EXPECT_EQ((*r)[1].name, "Thing");
}

TEST(CatalogSources, SaneHwdbJoinsModelsAndRejectsBadIds) {
  std::istringstream ok(
      "# A One\nusb:v0001p0002*\n libsane_matched=yes\n\n# A Two\n"
      "usb:v0001p0002*\n libsane_matched=yes\n");
  auto r = ParseSaneHwdb(ok, "sane.hwdb");
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].name, "A One | A Two");
  std::istringstream bad("# A\nusb:v00Zp0002*\n libsane_matched=yes\n");
  auto e = ParseSaneHwdb(bad, "sane.hwdb");
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.status().message().find("sane.hwdb:2:"), std::string::npos);
}

TEST(CatalogSources, CcidPlistArraysMustAgree) {
  const std::string xml =
      "<plist><dict><key>ifdVendorID</key><array><string>0x08E6</string><string>0x04E6"
      "</string></array><key>ifdProductID</key><array><string>0x3437</string></array>"
      "<key>ifdFriendlyName</key><array><string>A</string></array></dict></plist>";
  auto r = ParseCcidInfoPlist(xml, "Info.plist");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("differ in length (2, 1, 1)"), std::string::npos);
  auto broken = ParseCcidInfoPlist("<plist><dict>", "Info.plist");
  ASSERT_FALSE(broken.ok());
  EXPECT_NE(broken.status().message().find("Info.plist: not well-formed XML"), std::string::npos);
}

TEST(CatalogSources, FoomaticPrinterWithoutRatingIsSkippedNotAnError) {
  auto r = ParseFoomaticPrinter(
      "<printer id=\"printer/X-Y\"><make>X</make><model>Y</model></printer>", "X-Y.xml");
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->has_value());
  auto bad =
      ParseFoomaticPrinter("<printer id=\"printer/X-Y\"><make>X</make></printer>", "X-Y.xml");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("X-Y.xml"), std::string::npos);
}

TEST(CatalogSources, ModulesAlias) {
  std::istringstream in(
      "# Aliases extracted from modules themselves.\n"
      "alias pci:v00008086d* e1000e\n"
      "alias usb:v03F0p2B17d*dc*dsc*dp*ic*isc*ip*in* usblp\n"
      "alias usb:v*p*d*dc*dsc*dp*ic07isc01ip02in* usblp\n"
      "alias usb:v0403p6001d0[0-5]*dc*dsc*dp*ic*isc*ip*in* ftdi_sio\n");
  auto r = ParseModulesAlias(in, "modules.alias");
  ASSERT_TRUE(r.ok()) << r.status().message();
  ASSERT_EQ(r->size(), 3u);
  EXPECT_EQ((*r)[0].vendor_id, 0x03f0);
  EXPECT_EQ((*r)[0].product_id, 0x2b17);
  EXPECT_FALSE((*r)[1].vendor_id.has_value());
  EXPECT_EQ((*r)[1].interface_class, 0x07);
  EXPECT_EQ((*r)[1].interface_subclass, 0x01);
  EXPECT_EQ((*r)[2].product_id, 0x6001);
  std::istringstream bad("alias usb:v*\n");
  EXPECT_FALSE(ParseModulesAlias(bad, "modules.alias").ok());
}

TEST(CatalogSources, PrinterKeysFoldMakesAndModels) {
  EXPECT_EQ(*PrinterKeyFromIeee1284("MFG:Hewlett-Packard;MDL:HP LaserJet 1020;"),
            PrinterKeyFromName("HP", "LaserJet 1020"));
  EXPECT_EQ(*PrinterKeyFromIeee1284("MANUFACTURER:EPSON;MODEL:Stylus Photo R300;"),
            PrinterKeyFromName("Epson", "Stylus Photo R300"));
  EXPECT_FALSE(PrinterKeyFromIeee1284("CMD:PCL;CLS:PRINTER;").has_value());
  EXPECT_EQ(Ieee1284Field("MFG:Brother; MDL: HL-2140 ;", "MDL"), "HL-2140");
}

TEST(CatalogLookup, FlagsNameTheirErrors) {
  LookupFlags f;
  EXPECT_EQ(ObservationFromFlags("3f0:2b17", f).status().message(),
            "VID:PID '3f0:2b17' is not two 4-digit hex numbers (e.g. 03f0:2b17)");
  EXPECT_EQ(ObservationFromFlags("-", f).status().message(),
            "give a VID:PID, or '-' with --ieee1284 for a printer");
  f.interface_classes = "07,zz";
  EXPECT_EQ(ObservationFromFlags("03f0:2b17", f).status().message(),
            "--interface-classes: 'zz' is not a hex number up to ff");
}

TEST(CatalogReader, RefusesAFileThatIsNotACatalog) {
  const std::string path = (fs::temp_directory_path() / "deskpulse-not-a-catalog").string();
  std::ofstream(path) << "hello";
  auto r = Reader::Open(path, LinkedSqliteApi());
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("is not a DeskPulse catalog"), std::string::npos)
      << r.status().message();
  fs::remove(path);
  EXPECT_EQ(Reader::Open("/nonexistent/catalog.sqlite", LinkedSqliteApi()).status().code(),
            Code::kNotFound);
}

}  // namespace
}  // namespace deskpulse::catalog
