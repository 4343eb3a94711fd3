#!/usr/bin/env bash
# Prints the directory of the newest Python language host in the plugin cache that can run policy
# packs ($PULUMI_HOME/plugins/language-python-vX.Y.Z, with its executor beside it), or nothing.
#
# `make engine` builds v3.68.0, the newest host the Go module proxy serves: it predates the RunPlugin
# call Python policy packs need. A current one is installed the way provider plugins are (docs/engine.md,
# "The real engine"), e.g. `PULUMI_DEV=true engine/pulumi plugin install language python 3.259.0
# --file BINARY` plus its pulumi-language-python-exec beside it; engine/pulumi then runs with it.
set -euo pipefail
home=${PULUMI_HOME:-$HOME/.pulumi}
best=""
for dir in "$home"/plugins/language-python-v*/; do
  if [ ! -x "$dir/pulumi-language-python" ] || [ ! -x "$dir/pulumi-language-python-exec" ]; then continue; fi
  version=${dir%/}
  version=${version##*-v}
  # RunPlugin (policy packs in Python) arrived in v3.100.0.
  [ "$(printf '%s\n' 3.100.0 "$version" | sort -V | head -n 1)" = 3.100.0 ] || continue
  best=$(printf '%s\n' "$best" "${dir%/}" | sed '/^$/d' | sort -V -t v -k 3 | tail -n 1)
done
echo "$best"
