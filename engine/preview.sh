#!/usr/bin/env bash
# make preview STACK=<name>: the real `pulumi preview --diff` of a stack through the engine that
# `make engine` built. The provider plugins the program needs are checked first (engine/plugins.sh:
# each Python SDK in the virtualenv names its plugin and version, and the engine never downloads
# one), so a missing plugin stops here with its name and how to install it.
#
# The policy pack (policy/) runs in the preview when a Python language host that runs policy packs is
# installed (engine/language-host.sh); its virtualenv (PulumiPolicy.yaml: venv) is the project's,
# which holds pulumi-policy, so nothing is installed or downloaded for it. Without such a host the
# preview runs without the pack and says so; `make plan` judges the stack with the same pack.
set -euo pipefail
stack=${1:?usage: engine/preview.sh STACK}
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
engine/plugins.sh --check >/dev/null 2>&1 || {
  echo "make preview: provider plugins are missing; nothing was previewed:" >&2
  engine/plugins.sh --check 2>&1 | grep -v '^  [a-z]* [0-9.]*: installed' >&2 || true
  exit 1
}
engine/pulumi stack select --create "$stack"
pack=()
if [ -n "$(bash engine/language-host.sh)" ]; then
  [ -e policy/venv ] || ln -s ../.venv policy/venv
  pack=(--policy-pack policy --policy-pack-config "policy/config/$stack.json")
else
  echo "make preview: no Python language host that runs policy packs is installed (engine/language-host.sh" \
    "says how to add one), so this preview runs without the policy pack; make plan judges $stack with it." >&2
fi
exec engine/pulumi preview --diff --stack "$stack" "${pack[@]}"
