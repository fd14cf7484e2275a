#!/usr/bin/env bash
# Coverage-guided fuzzing of the parsers at Bursar's edge (fuzz/): builds the targets, writes the
# seed corpus, and runs each target for SECONDS (default 12: about a minute for all five). A
# crash stops the script with its input in fuzz/artifacts/<target>/. See docs/fuzzing.md.
#
# The machine's stable toolchain is enough: RUSTC_BOOTSTRAP=1 lets it take the -Z flags
# cargo-fuzz passes. No sanitizer (-s none): the code is safe Rust, and a sanitizer build of
# every dependency would cost more build time than the run itself.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds="${1:-12}"
export RUSTC_BOOTSTRAP=1
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked --quiet
build=(-s none --dev --codegen-units 16)
cargo fuzz build "${build[@]}"
bin=target/x86_64-unknown-linux-gnu/debug
rm -rf seeds && "$bin/seeds" seeds
for target in signature_header event_envelope api_bodies key_entry_form signed_links; do
  mkdir -p "corpus/$target"
  echo "== fuzz $target (${seconds}s)"
  log="target/fuzz-$target.log"
  status=0
  cargo fuzz run "${build[@]}" "$target" "corpus/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -max_len=65536 -print_final_stats=1 >"$log" 2>&1 || status=$?
  grep -E '^(Done|stat::number_of_executed_units|stat::new_units_added)' "$log" || true
  if [ "$status" != 0 ]; then
    tail -n 40 "$log" >&2
    echo "fuzz: $target failed (exit $status); its input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
