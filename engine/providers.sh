#!/usr/bin/env bash
# Asks the Go module proxy, through `go`, whether it serves the Go modules of the resource providers the
# program uses, at the release commits known for them (command 1.2.1 and libvirt 0.5.4 are the pinned
# versions; docker 5.1.0, random 4.21.1 and tls 5.5.1 are a little older than the pins, whose commits are
# not known). Prints one line per provider and exits 1 while any is refused; `make preview` runs it to
# say why a provider plugin is missing. Nothing is built or installed.
set -uo pipefail
cd "$(dirname "$0")/cli" || exit 2
status=0
# provider  Go module of its provider binary  release commit of the pinned Python SDK's version
while read -r name module commit; do
  if answer=$(GOFLAGS=-mod=mod go list -m -json "$module@$commit" 2>&1); then
    echo "$name: $module@$commit is served"
  else
    status=1
    echo "$name: $module@$commit is not served: $(echo "$answer" | grep -o 'server response: .*' | head -n 1)"
  fi
done <<'LIST'
command github.com/pulumi/pulumi-command/provider 7f3eb6f3b77cd0fa3895ba437a695dd393f7dd25
libvirt github.com/pulumi/pulumi-libvirt/provider 551204e65927f56394ce673106d009d7e93dd26a
docker github.com/pulumi/pulumi-docker/provider/v5 e944612c4c970123d9a16a48c40d37dc84c89a70
random github.com/pulumi/pulumi-random/provider/v4 f2d8b029d0f708bd14bad9479e016560de9c0b6d
tls github.com/pulumi/pulumi-tls/provider/v5 c3b9a61e70758bd93edf5699ed8c8ac9d1f53224
LIST
exit "$status"
