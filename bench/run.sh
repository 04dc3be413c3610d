#!/usr/bin/env bash
# Throughput benchmark for jlp-rts against a canned admin API on loopback.
#
# Serves the two endpoints jlp-rts uses from a throwaway nginx on
# 127.0.0.1, measures what a plain load generator (wrk) gets out of that
# server, times `jlp-rts submit` over a generated CSV against the same
# server, measures wrk once more, and prints them side by side. See bench/README.md.
#
# Knobs (environment):
#   ROWS=200000            rows in the generated CSV
#   BIN=target/release/jlp-rts   binary to time (default built if missing)
#   JLP_ARGS=""            extra arguments for `jlp-rts submit` (split on spaces)
#   DURATION=10s           length of each wrk run
#   CONCURRENCY=64         wrk connections and jlp-rts --concurrency
#   RUNS=3                 timed jlp-rts runs, each followed by a wrk run
#   WRK_THREADS=2          wrk threads
#   NGINX_WORKERS=1        nginx worker processes
#   KEEP_TMP=1             keep the temporary directory (path is printed)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ROWS=${ROWS:-200000}
DURATION=${DURATION:-10s}
CONCURRENCY=${CONCURRENCY:-64}
RUNS=${RUNS:-3}
WRK_THREADS=${WRK_THREADS:-2}
NGINX_WORKERS=${NGINX_WORKERS:-1}
JLP_ARGS=${JLP_ARGS:-}
DEFAULT_BIN=0
if [[ -z "${BIN:-}" ]]; then
    BIN="$ROOT/target/release/jlp-rts"
    DEFAULT_BIN=1
fi

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'bench: %s\n' "$*" >&2; exit 1; }

[[ "$ROWS" =~ ^[1-9][0-9]*$ ]] || die "ROWS must be a positive integer (got '$ROWS')"
[[ "$CONCURRENCY" =~ ^[1-9][0-9]*$ ]] || die "CONCURRENCY must be a positive integer"
[[ "$RUNS" =~ ^[1-9][0-9]*$ ]] || die "RUNS must be a positive integer"

# Everything below talks to 127.0.0.1 only; keep any proxy settings in the
# caller's environment from redirecting curl, wrk or jlp-rts elsewhere.
unset http_proxy HTTP_PROXY https_proxy HTTPS_PROXY all_proxy ALL_PROXY
export no_proxy=127.0.0.1,localhost NO_PROXY=127.0.0.1,localhost
# Nor let a settings file or password file named in the environment change
# what is measured (max_rate, fields, ...) or be read at all.
unset JLP_RTS_CONFIG JLP_PASSWORD_FILE JLP_BASE_URL

# --- 1. tools ---------------------------------------------------------------
find_nginx() { command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true; }
have_gnu_time() { [[ -x /usr/bin/time ]] && /usr/bin/time --version 2>&1 | grep -q 'GNU'; }

missing=()
[[ -n "$(find_nginx)" ]] || missing+=(nginx)
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
have_gnu_time || missing+=(time)
command -v curl >/dev/null 2>&1 || missing+=(curl)
command -v python3 >/dev/null 2>&1 || missing+=(python3)

if ((${#missing[@]})); then
    [[ "$(id -u)" == 0 ]] || die "missing ${missing[*]}; run as root or install them first"
    say "installing: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    pkgs=()
    for m in "${missing[@]}"; do
        if [[ "$m" == nginx ]]; then
            if apt-cache policy nginx-light 2>/dev/null | grep -q 'Candidate: [0-9]'; then
                pkgs+=(nginx-light)
            else
                pkgs+=(nginx)
            fi
        else
            pkgs+=("$m")
        fi
    done
    apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi
NGINX=$(find_nginx)
[[ -n "$NGINX" ]] || die "nginx not found after install"
have_gnu_time || die "GNU time (/usr/bin/time) not found after install"

# --- binary -----------------------------------------------------------------
if [[ ! -x "$BIN" ]]; then
    if ((DEFAULT_BIN)); then
        say "building jlp-rts (cargo build --release --locked)"
        (cd "$ROOT" && cargo build --release --locked)
    fi
    [[ -x "$BIN" ]] || die "binary not found or not executable: $BIN"
fi

# --- temp dir and cleanup ---------------------------------------------------
TMP=$(mktemp -d "${TMPDIR:-/tmp}/jlp-rts-bench.XXXXXX")
NGINX_PID=
cleanup() {
    local rc=$?
    if [[ -n "$NGINX_PID" ]] && kill -0 "$NGINX_PID" 2>/dev/null; then
        kill -TERM "$NGINX_PID" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$NGINX_PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
    fi
    if [[ -n "${KEEP_TMP:-}" ]]; then
        say "kept $TMP"
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --- 2. canned API on nginx -------------------------------------------------
LOGIN_BODY='{"messages":[],"result":{"access_token":"bench-access","refresh_token":"bench-refresh","admin":{"capabilities":["customer.communication_rts"],"channels":[{"channel_key":"main","channel_name":"Main","is_default":true}],"email":"bench@example.org","id":1,"name":"Bench"}}}'
RTS_BODY='{"result":true,"messages":[]}'

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

write_nginx_conf() {
    local port=$1 p="$TMP/nginx"
    mkdir -p "$p/tmp"
    cat >"$p/nginx.conf" <<EOF
daemon off;
master_process on;
worker_processes $NGINX_WORKERS;
pid $p/nginx.pid;
error_log $p/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    client_body_temp_path $p/tmp/body;
    proxy_temp_path $p/tmp/proxy;
    fastcgi_temp_path $p/tmp/fastcgi;
    uwsgi_temp_path $p/tmp/uwsgi;
    scgi_temp_path $p/tmp/scgi;
    keepalive_requests 100000;
    keepalive_timeout 120s;
    client_max_body_size 1m;
    default_type application/json;
    server {
        listen 127.0.0.1:$port backlog=4096;
        server_name bench;
        location = /api-admin/login {
            return 200 '$LOGIN_BODY';
        }
        location ~ ^/api-admin/customer/[^/]+/communication/rts\$ {
            return 202 '$RTS_BODY';
        }
        location = /bench-status {
            stub_status;
        }
        location / {
            return 404 '{"result":null,"messages":["not found"]}';
        }
    }
}
EOF
}

start_nginx() {
    local attempt
    for attempt in 1 2 3; do
        PORT=$(free_port)
        write_nginx_conf "$PORT"
        "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/error.log" &
        NGINX_PID=$!
        for _ in $(seq 50); do
            if curl -s -o /dev/null "http://127.0.0.1:$PORT/bench-status"; then
                return 0
            fi
            kill -0 "$NGINX_PID" 2>/dev/null || break
            sleep 0.1
        done
        kill -TERM "$NGINX_PID" 2>/dev/null || true
        wait "$NGINX_PID" 2>/dev/null || true
        NGINX_PID=
        say "nginx did not come up on port $PORT (attempt $attempt)"
        cat "$TMP/nginx/error.log" >&2 2>/dev/null || true
    done
    die "could not start nginx"
}

start_nginx
BASE="http://127.0.0.1:$PORT"
say "nginx on $BASE (pid $NGINX_PID)"

# Check the canned responses before measuring anything.
check() { # name expected-status expected-body curl-args...
    local name=$1 want=$2 body=$3; shift 3
    local got ctype
    got=$(curl -sS -o "$TMP/check.body" -w '%{http_code} %{content_type}' "$@") || die "$name: request failed"
    ctype=${got#* }; got=${got%% *}
    [[ "$got" == "$want" ]] || die "$name: HTTP $got, expected $want"
    [[ "$ctype" == application/json* ]] || die "$name: Content-Type '$ctype'"
    [[ "$(cat "$TMP/check.body")" == "$body" ]] || die "$name: unexpected body: $(head -c 200 "$TMP/check.body")"
}
check login 200 "$LOGIN_BODY" -X POST -H 'Content-Type: application/json' \
    --data '{"username":"bench","password":"bench"}' "$BASE/api-admin/login"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["result"]["access_token"]=="bench-access"' \
    "$TMP/check.body" || die "login body is not the expected JSON"
check rts 202 "$RTS_BODY" -X POST -H 'Authorization: Bearer bench-access' \
    -F 'return_reason=Addressee unknown' "$BASE/api-admin/customer/AB12-CD34-EF56-GH78/communication/rts"
code=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$BASE/api-admin/customer/AB12/communication/rts/extra")
[[ "$code" == 404 ]] || die "unmatched path answered $code, expected 404"
say "canned responses OK"

nginx_requests() { # total requests nginx has handled so far
    curl -s "$BASE/bench-status" | awk 'NR==3 {print $3}'
}

# --- 3. load generator baseline ---------------------------------------------
cat >"$TMP/post.lua" <<'EOF'
local boundary = "jlprtsbenchboundary"
wrk.method = "POST"
wrk.headers["Authorization"] = "Bearer bench-access"
wrk.headers["Content-Type"] = "multipart/form-data; boundary=" .. boundary
wrk.body = "--" .. boundary .. "\r\n"
    .. "Content-Disposition: form-data; name=\"return_reason\"\r\n\r\n"
    .. "Addressee unknown\r\n"
    .. "--" .. boundary .. "--\r\n"
EOF
# Measured before and after jlp-rts: on a shared machine the server's pace
# drifts, and the mean of the two brackets the run being compared.
run_wrk() { # label -> prints requests a second
    say "wrk -t$WRK_THREADS -c$CONCURRENCY -d$DURATION ($1)"
    wrk -t"$WRK_THREADS" -c"$CONCURRENCY" -d"$DURATION" -s "$TMP/post.lua" \
        "$BASE/api-admin/customer/AB12-CD34-EF56-GH78/communication/rts" >"$TMP/wrk.txt" 2>&1 \
        || { cat "$TMP/wrk.txt" >&2; die "wrk failed"; }
    local rps bad sockerr
    rps=$(awk '/^Requests\/sec:/ {print $2}' "$TMP/wrk.txt")
    [[ -n "$rps" ]] || { cat "$TMP/wrk.txt" >&2; die "could not read Requests/sec from wrk"; }
    bad=$(awk '/Non-2xx or 3xx responses:/ {print $NF}' "$TMP/wrk.txt")
    sockerr=$(grep -o 'Socket errors:.*' "$TMP/wrk.txt" || true)
    [[ -z "$bad" ]] || say "wrk saw $bad non-2xx responses"
    [[ -z "$sockerr" ]] || say "wrk: $sockerr"
    echo "$rps"
}
WRK_BEFORE=$(run_wrk "before run 1")

# --- 4. input CSV -----------------------------------------------------------
CSV="$TMP/bench-$ROWS.csv"
python3 - "$CSV" "$ROWS" <<'EOF'
import csv, math, sys

path, rows = sys.argv[1], int(sys.argv[2])
digits = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
space = 36 ** 16
mult = 0x5DEECE66D1  # coprime with 36, so i -> i*mult mod 36^16 is one-to-one
assert math.gcd(mult, 36) == 1 and rows < space

def encoded_id(i):
    n = (i * mult) % space
    s = []
    for _ in range(16):
        n, r = divmod(n, 36)
        s.append(digits[r])
    s = "".join(reversed(s))
    return "-".join(s[k:k + 4] for k in range(0, 16, 4))

reasons = ["Addressee unknown", "Moved away", "Refused", "Insufficient address", "Deceased"]
with open(path, "w", encoding="utf-8", newline="") as fh:
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(["customer_encoded_id", "name", "return_reason"])
    for i in range(1, rows + 1):
        name = f"Sample, Person {i}" if i % 7 == 0 else f"Person {i} Sample"
        w.writerow([encoded_id(i), name, reasons[i % len(reasons)]])
EOF
say "generated $ROWS rows ($(du -h "$CSV" | cut -f1))"

# --- 5. time jlp-rts, RUNS times, each followed by wrk again ---------------
read -r -a EXTRA <<<"$JLP_ARGS"
tv() { # value after the last ': ' on the line of time -v file $1 holding $2
    awk -v k="$2" 'index($0, k) { sub(/.*: /, ""); print; exit }' "$1"
}

# time_run N: one timed `jlp-rts submit`; appends a line to $TMP/runs.tsv.
time_run() {
    local n=$1 results="$TMP/out-$1.results.csv" timing="$TMP/time-$1.txt"
    local before after t0 t1 rc user sys rss result_rows accepted
    before=$(nginx_requests)
    say "timing run $n: $BIN submit ... --concurrency $CONCURRENCY ${JLP_ARGS}"
    set +e
    t0=$(date +%s%N)
    JLP_USERNAME=bench JLP_PASSWORD=bench /usr/bin/time -v -o "$timing" \
        "$BIN" submit "$CSV" --base-url "$BASE" --concurrency "$CONCURRENCY" \
        --results "$results" -q "${EXTRA[@]}" >"$TMP/jlp.stdout" 2>"$TMP/jlp.stderr"
    rc=$?
    t1=$(date +%s%N)
    set -e
    after=$(nginx_requests)

    user=$(tv "$timing" 'User time (seconds)')
    sys=$(tv "$timing" 'System time (seconds)')
    rss=$(tv "$timing" 'Maximum resident set size (kbytes)')
    if [[ -z "$user" || -z "$rss" ]]; then
        cat "$timing" "$TMP/jlp.stderr" >&2 || true
        die "jlp-rts did not run (no timing output)"
    fi
    [[ -n "$(tv "$timing" 'Exit status')" ]] && rc=$(tv "$timing" 'Exit status')
    # A run that failed measured nothing worth printing as a rate.
    if [[ "$rc" != 0 ]]; then
        say "jlp-rts exited with $rc; last lines of its stderr:"
        tail -n 20 "$TMP/jlp.stderr" >&2 || true
        exit 1
    fi

    result_rows=missing accepted=missing
    if [[ -f "$results" ]]; then
        result_rows=$(( $(wc -l <"$results") - 1 ))
        # Rows whose rts_status is "accepted" (the file starts with a UTF-8 BOM).
        accepted=$(python3 - "$results" <<'PY'
import csv, sys
with open(sys.argv[1], encoding="utf-8-sig", newline="") as fh:
    print(sum(1 for row in csv.DictReader(fh) if row.get("rts_status") == "accepted"))
PY
) || accepted="n/a"
        [[ -n "${KEEP_TMP:-}" ]] || rm -f "$results"
    fi
    # The server's count, minus the status request that read it.
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$((t1 - t0))" "$user" "$sys" "$rss" \
        "$result_rows" "$accepted" "$((after - before - 1))" >>"$TMP/runs.tsv"
}

: >"$TMP/runs.tsv"
WRK_RUNS=("$WRK_BEFORE")
for ((n = 1; n <= RUNS; n++)); do
    time_run "$n"
    WRK_RUNS+=("$(run_wrk "after run $n")")
done

# --- 6. report --------------------------------------------------------------
python3 - "$TMP/runs.tsv" "$ROWS" "$CONCURRENCY" "$DURATION" "${WRK_RUNS[@]}" <<'PY'
import statistics, sys

path, rows, conc, dur = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
wrk = [float(x) for x in sys.argv[5:]]
runs = [line.rstrip("\n").split("\t") for line in open(path)]

print()
print("wrk (c=%s, %s each), before and after each run: %s req/s"
      % (conc, dur, " / ".join("%.0f" % w for w in wrk)))
print()
print("%-4s %10s %10s %7s %10s %12s  %s" % (
    "run", "rows/s", "wrk mean", "ratio", "peak RSS", "CPU/1k rows",
    "results rows, accepted, requests seen by server"))
rates, ratios, rss, cpu = [], [], [], []
for i, (wall_ns, user, sys_, rss_kb, result_rows, accepted, served) in enumerate(runs):
    rate = rows / (int(wall_ns) / 1e9)
    # The wrk runs just before and just after this one bracket it.
    reference = (wrk[i] + wrk[i + 1]) / 2
    rates.append(rate)
    ratios.append(100.0 * rate / reference)
    rss.append(int(rss_kb) / 1024.0)
    cpu.append((float(user) + float(sys_)) / rows * 1000.0)
    print("%-4d %10.0f %10.0f %6.1f%% %6.1f MiB %10.4f s  %s, %s, %s" % (
        i + 1, rate, reference, ratios[-1], rss[-1], cpu[-1], result_rows, accepted, served))
    if result_rows != str(rows) or accepted != str(rows) or int(served) < rows:
        print("     note: not every row was recorded as accepted, so rows/s is not a request rate")

lines = [
    ("jlp-rts rows a run", "%d" % rows),
    ("jlp-rts throughput, median", "%.0f rows/s" % statistics.median(rates)),
    ("ratio jlp-rts / wrk, median", "%.1f %%" % statistics.median(ratios)),
    ("peak RSS, highest", "%.1f MiB" % max(rss)),
    ("CPU per 1,000 rows, median", "%.4f s" % statistics.median(cpu)),
]
width = max(len(k) for k, _ in lines)
print()
for k, v in lines:
    print(f"{k:<{width}}  {v}")
PY
