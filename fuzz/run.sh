#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) for SECONDS (default 10) each on its checked-in
# corpus: coverage-guided libFuzzer, no sanitizer, on the stable toolchain.
#
#   bash fuzz/run.sh                      # 10 s each, as CI runs it
#   bash fuzz/run.sh 3600 jwks path       # an hour each for two targets
#   bash fuzz/run.sh --fast-build 10      # CI: compile in parallel (faster to build, slower to run)
#
# It builds the targets as `cargo fuzz build -s none` does (same instrumentation flags, same
# target directory), so it needs no cargo-fuzz; with cargo-fuzz installed, `cargo fuzz run -s
# none TARGET` works on the same crate. New inputs go to a scratch corpus, never into
# fuzz/corpus/; a crash fails the run and leaves its input in fuzz/artifacts/TARGET/ (fix it, then
# copy the input to fuzz/regressions/TARGET/, which `cargo test -p jwtgate-fuzz` replays).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

codegen_units=1 # cargo-fuzz's release default: slower to build, ~3x faster to run
if [[ ${1:-} == --fast-build ]]; then
    codegen_units=16
    shift
fi
seconds=${1:-10}
shift || true
triple=$(rustc -vV | sed -n 's/^host: //p')

# cargo-fuzz 0.13's flags for `build -s none --release` on Linux.
flags=(
    -Cpasses=sancov-module
    -Cllvm-args=-sanitizer-coverage-level=4
    -Cllvm-args=-sanitizer-coverage-inline-8bit-counters
    -Cllvm-args=-sanitizer-coverage-pc-table
    -Cllvm-args=-sanitizer-coverage-trace-compares
    -Cllvm-args=-sanitizer-coverage-stack-depth
    -Cllvm-args=-simplifycfg-branch-fold-threshold=0
    --cfg fuzzing
    "-Ccodegen-units=$codegen_units"
)

targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | tail -n +2)
fi

echo "==> building the fuzz targets (${targets[*]}), ${codegen_units} codegen unit(s)"
# --target keeps the instrumentation out of build scripts and proc macros.
RUSTFLAGS="${flags[*]} ${RUSTFLAGS:-}" cargo build -q --manifest-path fuzz/Cargo.toml --bins \
    --release --config 'profile.release.debug="line-tables-only"' --target "$triple"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for target in "${targets[@]}"; do
    echo "==> fuzz $target for ${seconds}s"
    mkdir -p "$scratch/$target" "fuzz/artifacts/$target"
    status=0
    "target/$triple/release/$target" "$scratch/$target" "fuzz/corpus/$target" \
        -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
        -artifact_prefix="fuzz/artifacts/$target/" >"$scratch/$target.log" 2>&1 || status=$?
    grep -E '^(#[0-9]+: |stat::number_of_executed_units|stat::peak_rss|==[0-9]+== ERROR|SUMMARY|Test unit written)|DONE' \
        "$scratch/$target.log" | tail -n 4 || true
    if [[ $status -ne 0 ]]; then
        echo "fuzz/run.sh: $target failed (exit $status); its log:" >&2
        # The panic's message first (a backtrace's tail does not show it), then the input.
        grep -A 4 -m 1 'panicked at' "$scratch/$target.log" >&2 || true
        tail -n 40 "$scratch/$target.log" >&2
        for input in "fuzz/artifacts/$target"/*; do
            [[ -f $input ]] || continue
            echo "fuzz/run.sh: input $input, as base64:" >&2
            base64 -w 0 "$input" >&2
            echo >&2
        done
        exit 1
    fi
done
