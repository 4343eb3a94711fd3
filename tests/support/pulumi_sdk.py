"""Where the Go module of the Python SDK that requirements.txt pins lies (its python/ tree carries the
language host's executor and the dynamic provider's launcher)."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def pinned_python_sdk_module() -> Path:
    """The module directory of github.com/pulumi/pulumi/sdk/v3 at requirements.txt's `pulumi==` pin
    (`go mod download`, from the Go module cache when it is there)."""
    sdk = "v" + re.search(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M).group(1)
    download = subprocess.run(
        ["go", "mod", "download", "-json", f"github.com/pulumi/pulumi/sdk/v3@{sdk}"],
        cwd=ROOT / "engine" / "cli",
        capture_output=True,
        text=True,
        check=True,
    )
    return Path(json.loads(download.stdout)["Dir"])
