"""An agent process imports the SDK and the ABI, nothing of the kernel (the layers, enforced)."""

from __future__ import annotations

import json
import subprocess
import sys


def test_importing_the_sdk_loads_no_kernel_module() -> None:
    code = (
        "import sys, json, aios.sdk, aios.sdk.fabric, aios.sdk.semantic;"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('aios'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert "aios.sdk" in loaded and "aios.abi.trap" in loaded
    assert [m for m in loaded if not m.startswith(("aios.sdk", "aios.abi")) and m != "aios"] == []


def test_the_abi_imports_nothing_of_aios() -> None:
    code = (
        "import sys, json, pkgutil, importlib, aios.abi;"
        "[importlib.import_module(m.name) for m in pkgutil.iter_modules(aios.abi.__path__, 'aios.abi.')];"
        "print(json.dumps(sorted(m for m in sys.modules if m.startswith('aios'))))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert all(m == "aios" or m.startswith("aios.abi") for m in json.loads(out.stdout))
