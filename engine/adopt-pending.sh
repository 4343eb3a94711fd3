#!/usr/bin/env bash
# engine/adopt-pending.sh STACK URN ID [URN ID ...]: adopt pending creates whose objects do exist (an
# update was killed after the provider had asked for them, before the engine recorded the result):
# each goes from the state's pending_operations into its resources with the object's ID, through
# `stack export` / `stack import`; the next `pulumi refresh` reads them back from the provider.
# `stack import` drops every other pending operation (it says so): that is the "forget" of the
# creates that never happened, so name every object to adopt in this one call.
#
# `pulumi refresh --import-pending-creates URN ID` was made for this, but the CLI this project builds
# (v3.274.1) turns the operation into a pending import that the refresh then drops: the object stays
# on the host unknown to the state and the next `up` fails on its name ("already exists").
# docs/team-state.md says when to adopt and when to forget; tests/test_lab_team_state.py runs it.
set -euo pipefail
if [ $# -lt 3 ] || [ $(($# % 2)) -ne 1 ]; then
  echo "usage: engine/adopt-pending.sh STACK URN ID [URN ID ...]" >&2
  exit 2
fi
stack=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
command -v jq >/dev/null || { echo "engine/adopt-pending.sh: jq is needed (apt-get install jq)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"$root/engine/pulumi" stack export --stack "$stack" --file "$work/state.json"
while [ $# -gt 0 ]; do
  urn=$1 id=$2
  shift 2
  found=$(jq --arg urn "$urn" '[.deployment.pending_operations // [] | .[]
    | select(.type == "creating" and .resource.urn == $urn)] | length' "$work/state.json")
  if [ "$found" != 1 ]; then
    echo "engine/adopt-pending.sh: $urn is not a pending create of stack $stack; nothing was changed" >&2
    exit 1
  fi
  # Its inputs stand for its outputs until the refresh reads the real ones.
  jq --arg urn "$urn" --arg id "$id" '
    (.deployment.pending_operations[] | select(.resource.urn == $urn) | .resource) as $r
    | .deployment.resources += [$r + {id: $id, outputs: $r.inputs}]
    | .deployment.pending_operations |= map(select(.resource.urn != $urn))' \
    "$work/state.json" >"$work/next.json"
  mv "$work/next.json" "$work/state.json"
  echo "adopting $urn as $id"
done
"$root/engine/pulumi" stack import --stack "$stack" --file "$work/state.json"
echo "now: engine/pulumi refresh --stack $stack"
