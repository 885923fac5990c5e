#!/usr/bin/env bash
# Two interleaved comparisons, robust to a noisy machine (every competitor runs once per
# round, in a shuffled order, and ratios are taken per round).
#
#   bench-lab/ab.sh floor [rounds]     # the floor table of BENCHMARKS.md (default 5 rounds)
#   bench-lab/ab.sh [rounds]           # A/B of lifecycle against an older commit (21)
#
# `floor`: the interleaved bench (bench-lab/benches/interleaved.rs: query_hit,
# query_miss, revoke_cycle, lifecycle and hot_key, ours against the sharded_map floor,
# 2.0.2 and async_tasks_state_map) and the memory bench, then the table of
# `summarize.py floor`. ATR_IL_WARMUP and ATR_IL_SEED apply (see interleaved.rs).
#
# Otherwise: the `lifecycle` workload of this crate's current source ("after") against
# a reference commit ("before", default 892fe81), both linked into one program built
# from bench-lab/benches/ab_lifecycle.rs, so that every round runs both on the same
# runtime at nearly the same moment.
#
# Environment of the A/B:
#   ATR_AB_BASE        reference commit (default 892fe81)
#   ATR_AB_AFTER       a commit to use as "after" instead of the working tree
#   ATR_AB_ROUNDS, ATR_AB_WARMUP, ATR_AB_TASKS, ATR_AB_SEED   see bench-lab/benches/ab_lifecycle.rs
#   ATR_AB_TARGET_DIR  cargo target dir of the temp build (default
#                      $TMPDIR/atr_ab_target, kept between runs so that tokio and the
#                      other dependencies are built once)
#   ATR_AB_KEEP=1      keep the temp project (its path is printed)
#
# Nothing in the repository is written: the sources are copied (working tree) or
# exported (`git archive`) into a temp project under $TMPDIR, which is built there with
# the repository's Cargo.lock as its starting lock file. Network: at most crates.io, if
# cargo cannot resolve from its local cache.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(git -C "$here" rev-parse --show-toplevel)

if [ "${1:-}" = floor ]; then
    rounds=${2:-5}
    cd "$repo"
    target=$(cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
    echo "$(rustc -V); $(nproc) CPUs; $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
    ATR_IL_ROUNDS=$rounds cargo bench -p atr_bench_lab --bench interleaved
    cargo bench -p atr_bench_lab --bench memory
    echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo
    python3 "$here/summarize.py" floor "$target/criterion"
    exit 0
fi

base=${ATR_AB_BASE:-892fe81}
export ATR_AB_ROUNDS=${1:-${ATR_AB_ROUNDS:-21}}
tmp=${TMPDIR:-/tmp}
target=${ATR_AB_TARGET_DIR:-$tmp/atr_ab_target}
# Read-only git: no index refresh or other optional locks in the repository.
export GIT_OPTIONAL_LOCKS=0

work=$(mktemp -d "$tmp/atr_ab.XXXXXX")
cleanup() {
    if [ "${ATR_AB_KEEP:-0}" = 1 ]; then
        echo "temp project kept: $work"
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

# The crate's manifest as a plain dependency: `version` replaced by $2, and the
# dev-dependencies, bench/test/example targets (whose files are not copied) and the
# workspace (whose members are not copied either) dropped.
strip_manifest() {
    awk -v version="$2" '
        /^\[/ {
            section = $0
            skip = (section ~ /^\[dev-dependencies\]/ ||
                    section ~ /^\[target\..*\.dev-dependencies\]/ ||
                    section ~ /^\[\[(bench|test|example)\]\]/ ||
                    section ~ /^\[workspace/)
        }
        skip { next }
        section == "[package]" && /^version[ \t]*=/ { print "version = \"" version "\""; next }
        { print }
    ' "$1" >"$1.new"
    mv "$1.new" "$1"
}

# before: the reference commit.
# The two copies sit next to the project, not inside it: path dependencies under a
# workspace root would become members of it (and two members may not share a name).
proj=$work/ab
mkdir -p "$work/before" "$work/after" "$proj/src"
git -C "$repo" archive "$base" Cargo.toml README.md src | tar -x -C "$work/before"
strip_manifest "$work/before/Cargo.toml" "0.0.0-before"
base_desc=$(git -C "$repo" log -1 --format='%h %s' "$base")

# after: the working tree (or ATR_AB_AFTER).
if [ -n "${ATR_AB_AFTER:-}" ]; then
    git -C "$repo" archive "$ATR_AB_AFTER" Cargo.toml README.md src | tar -x -C "$work/after"
    after_desc=$(git -C "$repo" log -1 --format='%h %s' "$ATR_AB_AFTER")
else
    cp -R "$repo/Cargo.toml" "$repo/README.md" "$repo/src" "$work/after/"
    after_desc="working tree at $(git -C "$repo" log -1 --format='%h' HEAD)"
    changed=$(git -C "$repo" diff --name-only HEAD -- src Cargo.toml | tr '\n' ' ')
    if [ -n "$changed" ]; then
        after_desc="$after_desc, with uncommitted changes in: $changed"
    fi
fi
strip_manifest "$work/after/Cargo.toml" "3.0.0"

# The harness: benches/ab_lifecycle.rs as a module, driven with both copies.
cp "$here/benches/ab_lifecycle.rs" "$proj/src/harness.rs"
mkdir -p "$proj/src/rounds"
cp "$here/benches/rounds/mod.rs" "$proj/src/rounds/mod.rs"
cat >"$proj/src/main.rs" <<'EOF'
//! Generated by bench-lab/ab.sh: bench-lab/benches/ab_lifecycle.rs with `before` as the reference.

#[allow(dead_code)]
#[macro_use]
mod harness;

fn main() {
    let after = lifecycle_of!(harness, "after", async_tasks_recorder);
    let before = lifecycle_of!(harness, "before", before);
    harness::run(after, Some(before), harness::Config::from_env(false));
}
EOF
cat >"$proj/Cargo.toml" <<'EOF'
[package]
name = "atr_ab_lifecycle"
version = "0.0.0"
edition = "2021"
publish = false

[dependencies]
async_tasks_recorder = { path = "../after" }
before = { package = "async_tasks_recorder", path = "../before" }
tokio = { version = "1.44", features = ["rt", "rt-multi-thread", "sync", "time"] }

# cargo's default release profile, which is also what `cargo bench` uses for this crate.

[workspace]
EOF
# The same dependency versions as the crate's own benches.
cp "$repo/Cargo.lock" "$proj/Cargo.lock"

echo "before: $base_desc"
echo "after:  $after_desc"
echo "building in $proj (target dir $target)"
build() { CARGO_TARGET_DIR="$target" cargo build --release --manifest-path "$proj/Cargo.toml" "$@"; }
if ! build --offline -q 2>/dev/null; then
    echo "(offline build failed; letting cargo reach crates.io)"
    build -q
fi
tokio_version=$(awk '/^name = "tokio"$/ { getline; print $3 }' "$proj/Cargo.lock" | tr -d '"')

echo "$(rustc -V); tokio $tokio_version; $(nproc) CPUs; $(date -u '+%Y-%m-%d %H:%M UTC')"
echo "load average before the run: $(cut -d' ' -f1-3 /proc/loadavg)"
echo
"$target/release/atr_ab_lifecycle"
echo
echo "load average after the run: $(cut -d' ' -f1-3 /proc/loadavg)"
