#!/usr/bin/env bash
# make preview STACK=<name>: the real `pulumi preview --diff` of a stack through the engine that
# `make engine` built. The provider plugins the program needs are checked first: each Python SDK in the
# virtualenv names its plugin and version (pulumi-plugin.json), and the engine never downloads one, so a
# missing plugin stops here with its name and how to install it.
set -euo pipefail
stack=${1:?usage: engine/preview.sh STACK}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
plugins=$root/.engine/home/plugins
missing=()
while IFS=' ' read -r name version; do
  [ -e "$plugins/resource-$name-v$version/pulumi-resource-$name" ] || missing+=("$name v$version")
done < <(.venv/bin/python - <<'PY'
import json, pathlib, sysconfig
for f in sorted(pathlib.Path(sysconfig.get_paths()["purelib"]).glob("pulumi_*/pulumi-plugin.json")):
    plugin = json.loads(f.read_text())
    if plugin.get("resource"):
        print(plugin["name"], plugin["version"].lstrip("v"))
PY
)
if [ ${#missing[@]} -gt 0 ]; then
  echo "make preview: provider plugins missing from .engine/home: ${missing[*]}" >&2
  echo "  They cannot be built on this machine (engine/providers.sh asks the Go module proxy):" >&2
  engine/providers.sh | sed 's/^/    /' >&2 || true
  echo "  With a binary of your own: engine/pulumi plugin install resource NAME VERSION --file BINARY" >&2
  exit 1
fi
engine/pulumi stack select --create "$stack"
exec engine/pulumi preview --diff --stack "$stack" --policy-pack policy --policy-pack-config "policy/config/$stack.json"
