#!/usr/bin/env bash
# The query page's weight on the wire and the time a person waits for a 1,000-line answer: a
# release Janus with 20,000 pushed lines, Debian's Chromium headless driven over the DevTools
# protocol (tests/support/browser.rs), a new tab per run, from navigation to the lines painted
# (the page stamps `data-first-result-ms`), beside the same query asked of the API alone. Median
# of 15 runs each; the measurement is the ignored test `measure_the_page` in tests/ui.rs.
#
# usage: docs/benchmarks/query_page.sh        (needs chromium: apt-get install -y chromium)
set -euo pipefail
cd "$(dirname "$0")/../.."
JANUS_TEST_CHROMIUM=${JANUS_TEST_CHROMIUM:-$(command -v chromium)}
export JANUS_TEST_CHROMIUM
cargo test --release -q --test ui -- --ignored --nocapture measure_the_page 2>&1 |
  grep -E '^(page weight|1,000-line|last run)'
