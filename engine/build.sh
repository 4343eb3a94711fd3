#!/usr/bin/env bash
# make engine: build the real Pulumi engine from its Go modules with this machine's Go, into .engine/.
#
#   .engine/bin/pulumi                         the CLI           (engine/cli: github.com/pulumi/pulumi/pkg/v3)
#   .engine/bin/pulumi-language-python         the Python host   (engine/language-python: sdk/v3, see its go.mod)
#   .engine/bin/pulumi-language-python-exec    the host's executor script, from the sdk/v3 module of the
#                                              Python SDK pinned in requirements.txt
#
# Binaries are cached outside the repository, keyed by module version and by the hash of the wrapper's
# go.mod/go.sum and build flags, so a second run (or a fresh clone on the same machine) takes seconds.
# Provider plugins are not built here: `make plugins` (engine/plugins.sh) installs them in the plugin
# cache every checkout shares ($PULUMI_HOME, default ~/.pulumi); see docs/engine.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/.engine
cache=${VIRTFLEET_ENGINE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/virtfleet-engine}

die() { echo "make engine: $*" >&2; exit 1; }

command -v go >/dev/null 2>&1 || die "Go is not installed (go 1.26 or newer builds the engine); install it, then run 'make engine' again"
go_version=$(go env GOVERSION)
case "$go_version" in
  go1.2[6-9]* | go1.[3-9][0-9]*) ;;
  *) die "Go $go_version is too old: the engine's modules need go1.26 or newer" ;;
esac
export CGO_ENABLED=0 GOFLAGS=-mod=readonly GOTOOLCHAIN=local

# module_version DIR MODULE: the version of MODULE that the wrapper module in DIR resolves.
module_version() {
  (cd "$1" && go list -m -f '{{.Version}}' "$2") 2>/dev/null
}

# fetch DIR: download the wrapper's modules, with a clear message when the proxy cannot be reached.
fetch() {
  local log
  if ! log=$(cd "$1" && go mod download 2>&1); then
    echo "$log" | tail -n 5 >&2
    die "downloading the modules of $1 failed: is the Go module proxy ($(go env GOPROXY)) reachable?"
  fi
}

# build NAME DIR PACKAGE VERSION TAGS LDFLAGS: build PACKAGE of the wrapper module DIR into the cache and
# install it as .engine/bin/NAME; prints one progress line.
step=0
build() {
  local name=$1 dir=$2 package=$3 version=$4 tags=$5 ldflags=$6
  step=$((step + 1))
  local key
  key=$(cat "$dir/go.mod" "$dir/go.sum" <(echo "$package $tags $ldflags $go_version") | sha256sum | cut -c1-16)
  local cached=$cache/$name-$version-$key/$name
  if [ -x "$cached" ]; then
    echo "[$step/2] $name $version: cached ($cached)"
  else
    echo "[$step/2] $name $version: building (module download + compile; minutes on a cold machine) ..."
    local start=$SECONDS
    fetch "$dir"
    mkdir -p "$(dirname "$cached")"
    (cd "$dir" && go build -trimpath -tags "$tags" -ldflags "$ldflags" -o "$cached.tmp" "$package") \
      || die "building $name from $dir failed (output above)"
    mv "$cached.tmp" "$cached"
    echo "[$step/2] $name $version: built in $((SECONDS - start)) s"
  fi
  install -D -m 0755 "$cached" "$out/bin/$name"
}

cli_version=$(module_version engine/cli github.com/pulumi/pulumi/pkg/v3) || true
[ -n "$cli_version" ] || { fetch engine/cli; cli_version=$(module_version engine/cli github.com/pulumi/pulumi/pkg/v3); }
host_version=$(module_version engine/language-python github.com/pulumi/pulumi/sdk/v3) || true
[ -n "$host_version" ] || { fetch engine/language-python; host_version=$(module_version engine/language-python github.com/pulumi/pulumi/sdk/v3); }

build pulumi engine/cli github.com/pulumi/pulumi/pkg/v3/cmd/pulumi "$cli_version" "osusergo grpcnotrace" \
  "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$cli_version"
build pulumi-language-python engine/language-python github.com/pulumi/pulumi/sdk/v3/python/cmd/pulumi-language-python \
  "$host_version" "osusergo" "-s -w -X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=$host_version"

# The executor script the host runs programs with must match the Python SDK the program imports: take it
# from the sdk/v3 module of the same version as requirements.txt's pulumi pin.
sdk_version=v$(sed -n 's/^pulumi==\([0-9.]*\)$/\1/p' requirements.txt)
[ "$sdk_version" != v ] || die "requirements.txt has no 'pulumi==X.Y.Z' pin"
sdk_dir=$(cd engine/cli && go mod download -json "github.com/pulumi/pulumi/sdk/v3@$sdk_version" \
  | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[ -f "$sdk_dir/python/cmd/pulumi-language-python-exec" ] \
  || die "github.com/pulumi/pulumi/sdk/v3@$sdk_version has no python/cmd/pulumi-language-python-exec"
install -m 0755 "$sdk_dir/python/cmd/pulumi-language-python-exec" "$out/bin/pulumi-language-python-exec"
echo "      pulumi-language-python-exec: from sdk/v3 $sdk_version (the pinned Python SDK)"

rm -rf "${out:?}/home"  # the plugin home of earlier versions: plugins live in the user's plugin cache now
echo "engine ready in .engine/: $("$out/bin/pulumi" version) (CLI), $host_version (Python language host)."
echo "provider plugins: 'make plugins' checks the plugin cache (${PULUMI_HOME:-$HOME/.pulumi}) and installs what is missing."
