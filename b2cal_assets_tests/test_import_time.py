"""Loading the code location imports only what defining its assets, sensors and jobs needs.

Every Dagster run worker and step process imports ``b2cal_assets.definitions`` before doing
anything, so a heavy import there lengthens every run (issue 18, prompt latency).
"""

from __future__ import annotations

import subprocess
import sys

# Imported only by the work that needs them, never by loading the code location: the DiracX
# client and schema with its transports (accounts sync), awkward and uproot (collectors and
# payload files), matplotlib (report figures), cryptography (the proxy's authenticator).
# `diracx` itself is absent from the list: diracx-client's .pth file imports that namespace
# package into every interpreter at start-up; its subpackages are what cost.
DEFERRED_MODULES = (
    "diracx.core",
    "diracx.client",
    "httpx2",
    "jwt",
    "azure.core",
    "awkward",
    "uproot",
    "matplotlib",
    "cryptography.x509",
)


def test_loading_the_code_location_skips_the_heavy_modules_only_some_steps_use() -> None:
    # A fresh interpreter: this session has imported most of them already.
    probe = (
        "import sys\n"
        "import b2cal_assets.definitions\n"
        f"print(' '.join(name for name in {DEFERRED_MODULES!r} if name in sys.modules))\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [], f"imported by b2cal_assets.definitions: {result.stdout.strip()}"
