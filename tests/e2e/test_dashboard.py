"""The web dashboard in real headless Chromium (Debian's chromium, driven by
playwright-core from collector/web/node_modules): log in and see the fleet,
open a customer whose charts render with data, a customer-admin that cannot
reach another customer through the UI or by editing the URL, markup in a
customer, site and device name shown as text, the CSP header present and no
console errors. Screenshots go to build-test/artifacts/dashboard/.

The store holds the demo's three customers (fleetsim, with the sample business
signals) and a fourth whose name, site and a device's name are markup, reported
by the real agent from a copy of the thin client's USB fixture tree."""
import json
import os
import shutil
import subprocess
import time
import unittest

import dp
from test_agent import THIN_CLIENT_TREE, agent_config, thin_client_peripherals

CUSTOMERS = [("Northwind Health", "healthy"), ("Contoso Legal", "typical"),
             ("Fabrikam Logistics", "struggling")]
EVIL = "Tailspin <img src=x onerror=window.__xss=1> & Co"
EVIL_SITE = "<script>window.__xss=2</script>lab"
EVIL_DEVICE = "<b>Evil</b> Scanner <img src=x onerror=window.__xss=3>"
AGENT = os.path.join(dp.BIN, "agent", "deskpulse-agent")
WEB = os.path.join(dp.SOURCE_DIR, "collector", "web")
SCRIPT = os.path.join(dp.SOURCE_DIR, "tests", "browser", "dashboard.mjs")
ARTIFACTS = os.path.join(dp.BIN, "artifacts", "dashboard")
CONFIG = """
[store]
rollup_flush_s = 0.2
[http]
health_refresh_s = 1
"""


def evil_tree(work):
    """The thin client's USB fixture tree with one device's product name as markup."""
    tree = os.path.join(work, "usb")
    shutil.copytree(THIN_CLIENT_TREE, tree, symlinks=True)
    for root, _, files in os.walk(os.path.join(tree, "sys")):
        if "product" in files and "LaserJet" in dp.read_text(os.path.join(root, "product")):
            with open(os.path.join(root, "product"), "w") as f:
                f.write(EVIL_DEVICE + "\n")
            if "manufacturer" in files:
                os.remove(os.path.join(root, "manufacturer"))  # the name is then the product's
            break
    else:
        raise AssertionError("the fixture tree has no LaserJet")
    return tree


class DashboardTest(unittest.TestCase):
    def test_dashboard_in_headless_chromium(self):
        with dp.tempdir() as work:
            db = os.path.join(work, "store.db")
            tokens = dp.create_tokens(db, work, CUSTOMERS)
            r = dp.run([dp.COLLECTOR, "token", "create", "--db", db, "--customer", EVIL])
            self.assertEqual(r.returncode, 0, r.stderr)
            agent_token = r.stdout.strip().split()[-1]
            config = os.path.join(work, "collector.toml")
            with open(config, "w") as fh:
                fh.write(CONFIG)
            collector = dp.Collector(work, db, extra=["--config", config, "--catalog", dp.CATALOG],
                                     http=True)
            try:
                r, _ = dp.fleetsim(collector.address, tokens, 60, "--days", 5, "--seed", 3)
                self.assertEqual(r.returncode, 0, r.stderr[-2000:])
                for kind in ("contracts", "surveys", "tickets", "reviews"):
                    r = dp.run([dp.COLLECTOR, "import", "--db", db, "--kind", kind,
                                os.path.join(dp.SOURCE_DIR, "collector", "samples", f"{kind}.csv")])
                    self.assertEqual(r.returncode, 0, r.stderr)
                tree = evil_tree(work)
                agent_toml = agent_config(work, "agent", collector.address, agent_token,
                                          tail=thin_client_peripherals("", tree),
                                          agent_extra=f'site = "{EVIL_SITE}"')
                with open(os.path.join(work, "agent.log"), "w") as log:
                    agent = dp.track(subprocess.Popen([AGENT, "--config", agent_toml],
                                                      stdout=log, stderr=subprocess.STDOUT))
                try:
                    dp.wait_until(lambda: dp.query(
                        db, "SELECT count(*) FROM peripheral_instances p JOIN customers c "
                        "USING(customer_id) WHERE c.name=?", EVIL)[0][0] > 0, 60,
                        "the agent's devices to be rolled up")
                finally:
                    agent.terminate()
                    agent.wait(30)
                evil_id = dp.query(db, "SELECT customer_id FROM customers WHERE name=?", EVIL)[0][0]
                ids = {name: dp.query(db, "SELECT customer_id FROM customers WHERE name=?", name)[0][0]
                       for name, _ in CUSTOMERS}
                setup = {
                    "url": f"http://127.0.0.1:{collector.http_port}/",
                    "vendor": dp.api_token(db, "vendor"),
                    "admin": dp.api_token(db, "customer-admin", "Contoso Legal"),
                    "admin_customer": ids["Contoso Legal"],
                    "other_customer": ids["Fabrikam Logistics"],
                    "customers": [name for name, _ in CUSTOMERS] + [EVIL],
                    "evil": {"id": evil_id, "name": EVIL, "site": EVIL_SITE, "device": EVIL_DEVICE},
                    "artifacts": ARTIFACTS,
                }
                os.makedirs(ARTIFACTS, exist_ok=True)
                env = dict(os.environ, DESKPULSE_DASHBOARD_TEST=json.dumps(setup),
                           NODE_PATH=os.path.join(WEB, "node_modules"))
                r = subprocess.run(["node", "--test", "--test-reporter=spec", SCRIPT], env=env,
                                   capture_output=True, text=True, timeout=600)
                print(r.stdout[-6000:], r.stderr[-3000:])
                self.assertEqual(r.returncode, 0, r.stdout[-6000:] + r.stderr[-3000:])
            finally:
                self.assertEqual(collector.stop(), 0)


if __name__ == "__main__":
    unittest.main()
