#!/usr/bin/env bash
# make plugins: the provider plugin of each Python SDK pin, the way Pulumi users get them.
#
# Each provider SDK in the virtualenv names its plugin and version (pulumi-plugin.json). A plugin
# already in the plugin cache ($PULUMI_HOME/plugins, default ~/.pulumi: outside the clone, so every
# checkout on the machine shares it) is reported as installed; a missing one is asked of
# `pulumi plugin install resource NAME VERSION`, which downloads it on a connected machine. Where
# that fails (no route to the release server), the plugin is named with the command that installs
# a binary you have. Exits 1 while any is missing.
#
#   engine/plugins.sh            check, and install what is missing
#   engine/plugins.sh --check    check only (nothing is downloaded)
#   engine/plugins.sh --list     print "NAME VERSION" of each wanted plugin, one per line
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
mode=${1:-install}
case "$mode" in install | --check | --list) ;; *) echo "usage: engine/plugins.sh [--check|--list]" >&2; exit 2 ;; esac
[ -x .venv/bin/python ] || { echo "make plugins: no .venv here yet: run 'make plan' or 'make test' first" >&2; exit 1; }
home=${PULUMI_HOME:-$HOME/.pulumi}

wanted=$(.venv/bin/python - <<'PY'
import json, pathlib, sysconfig
for f in sorted(pathlib.Path(sysconfig.get_paths()["purelib"]).glob("pulumi_*/pulumi-plugin.json")):
    plugin = json.loads(f.read_text())
    if plugin.get("resource"):
        print(plugin["name"], plugin["version"].lstrip("v"))
PY
)
if [ "$mode" = --list ]; then
  echo "$wanted"
  exit 0
fi

installed() { [ -x "$home/plugins/resource-$1-v$2/pulumi-resource-$1" ]; }
missing=()
while read -r name version; do
  if installed "$name" "$version"; then
    echo "  $name $version: installed ($home/plugins/resource-$name-v$version)"
  elif [ "$mode" = install ] && [ -x .engine/bin/pulumi ] &&
    out=$(engine/pulumi plugin install resource "$name" "$version" 2>&1) && installed "$name" "$version"; then
    echo "  $name $version: downloaded and installed"
  else
    [ "$mode" = install ] && [ -n "${out:-}" ] && echo "  $name $version: download failed: $(echo "$out" | tail -n 1)"
    missing+=("$name $version")
  fi
  out=
done <<<"$wanted"

if [ ${#missing[@]} -gt 0 ]; then
  echo "make plugins: missing from $home/plugins: ${missing[*]/%/,}" | sed 's/,$//' >&2
  echo "  Each one is 'pulumi-resource-NAME' of the provider's release VERSION. With a binary you have:" >&2
  for m in "${missing[@]}"; do
    read -r name version <<<"$m"
    echo "    engine/pulumi plugin install resource $name $version --file /path/to/pulumi-resource-$name" >&2
  done
  echo "  (the tests that need them skip and name them; docs/engine.md says how to build and install each)" >&2
  exit 1
fi
echo "make plugins: every provider plugin of the SDK pins is installed in $home/plugins"
