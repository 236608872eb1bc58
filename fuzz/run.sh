#!/usr/bin/env bash
# Runs every fuzz target for SECONDS (default 10) each on its checked-in corpus, with cargo-fuzz
# on the stable toolchain (`-s none`: coverage-guided, no sanitizer). CI runs it after the test
# command; run it longer by hand, e.g. `bash fuzz/run.sh 3600`. New inputs go to a scratch
# corpus, never into fuzz/corpus/; a crash fails the run and leaves its input in
# fuzz/artifacts/TARGET/ (copy it to fuzz/regressions/TARGET/ with the fix).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${1:-10}
version=0.13.2

if ! cargo fuzz --version 2>/dev/null | grep -q "$version"; then
    echo "==> installing cargo-fuzz $version"
    cargo install cargo-fuzz --locked --version "$version"
fi

targets=$(cargo fuzz list)
echo "==> cargo fuzz build -s none (${targets//$'\n'/ })"
cargo fuzz build -s none

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in $targets; do
    echo "==> fuzz $target for ${seconds}s"
    mkdir -p "$scratch/$target"
    cargo fuzz run -s none "$target" "$scratch/$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 2>&1 |
        { grep -E '^(#[0-9]+: |stat::|==[0-9]+== ERROR|SUMMARY|Test unit written)|DONE' || true; } |
        tail -n 6
done
