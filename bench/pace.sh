#!/usr/bin/env bash
# How well `jlp-rts` finds and holds a server's pace, against the built-in
# simulated JLP on loopback. Prints figures; asserts nothing about time.
#
#   bash bench/pace.sh            # uses target/release/jlp-rts (builds it if missing)
#   BIN=/path/to/jlp-rts bash bench/pace.sh
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-target/release/jlp-rts}
[ -x "$BIN" ] || cargo build --release --locked
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY

TMP=$(mktemp -d)
SANDBOX_PID=
cleanup() {
    [ -n "$SANDBOX_PID" ] && kill "$SANDBOX_PID" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

make_rows() {
    python3 - "$1" "$2" <<'PY'
import sys
rows, path = int(sys.argv[1]), sys.argv[2]
with open(path, "w", newline="") as f:
    f.write("customer_encoded_id,name,return_reason\r\n")
    for i in range(rows):
        f.write(f"PC{i // 10000:02d}-{i % 10000:04d}-AAAA-BBBB,Supporter {i},Moved away\r\n")
PY
}

# start_sandbox KNOBS...: serves on a fresh port, sets URL.
start_sandbox() {
    [ -n "$SANDBOX_PID" ] && kill "$SANDBOX_PID" 2>/dev/null && wait "$SANDBOX_PID" 2>/dev/null || true
    local port; port=$(free_port)
    "$BIN" sandbox --port "$port" "$@" >"$TMP/sandbox.log" 2>&1 &
    SANDBOX_PID=$!
    URL="http://127.0.0.1:$port"
    for _ in $(seq 50); do curl -fs "$URL/_sandbox/stats" >/dev/null 2>&1 && return; sleep 0.1; done
    echo "the sandbox did not start" >&2; exit 1
}

# run_case NAME ROWS SUBMIT-ARGS...: prints rate, calls and refusals.
run_case() {
    local name=$1 rows=$2; shift 2
    make_rows "$rows" "$TMP/in.csv"
    rm -f "$TMP/in.results.csv" "$TMP/summary.json"
    JLP_USERNAME=demo JLP_PASSWORD=demo "$BIN" submit "$TMP/in.csv" --base-url "$URL" \
        --summary-json "$TMP/summary.json" -q "$@" || echo "exit code $?"
    python3 - "$name" "$TMP/summary.json" "$URL/_sandbox/stats" <<'PY'
import json, sys, urllib.request
name, summary_path, stats_url = sys.argv[1:4]
summary = json.load(open(summary_path))
stats = json.load(urllib.request.urlopen(stats_url))
calls = stats["rts_calls"]
refused = stats["rate_limited"]
accepted = summary["this_run"]["accepted"]
print(f"{name:<44} {accepted:>6} rows in {summary['seconds']:6.2f} s = {summary['rate_per_second']:7.1f} rows/s;"
      f" calls {calls}, 429s {refused} ({100.0 * refused / max(calls, 1):.1f}%)")
PY
}

echo "== rate-limited server: 300 calls/s, 429 with Retry-After beyond"
start_sandbox --rate-limit 300
run_case "concurrency auto, 3000 rows" 3000 --concurrency auto
start_sandbox --rate-limit 300
run_case "concurrency 8 (fixed), 3000 rows" 3000 --concurrency 8
echo "   target: >= 270 rows/s (90% of 300) with < 5% refused"

echo "== 50 ms latency, no limit"
start_sandbox --latency-ms 50
run_case "concurrency 16 (allows 320/s), 3000 rows" 3000 --concurrency 16
start_sandbox --latency-ms 50
run_case "concurrency 64 (allows 1280/s), 6000 rows" 6000 --concurrency 64
start_sandbox --latency-ms 50
run_case "concurrency auto (up to 64: 1280/s), 6000 rows" 6000 --concurrency auto
echo "   target: >= 90% of concurrency / latency"

echo "== --max-rate 200"
start_sandbox
run_case "--max-rate 200, 4000 rows" 4000 --max-rate 200 --concurrency 16
echo "   target: within 5% of 200 rows/s"
