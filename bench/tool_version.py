"""--version for the benchmarks and rigs: the project's version (CMakeLists.txt's)."""
import os
import re


def version():
    top = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "CMakeLists.txt")
    with open(top) as f:
        m = re.search(r"^project\(deskpulse VERSION ([0-9.]+)", f.read(), re.M)
    return m.group(1) if m else "unknown"


def add_version(parser):
    """Adds --version to an argparse parser."""
    parser.add_argument("--version", action="version", version=f"%(prog)s {version()}")
