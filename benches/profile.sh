#!/usr/bin/env bash
# Where sluice's CPU goes under load: perf samples of one pinned worker.
#
#   bash benches/profile.sh [small|16k|close] [seconds]    # default: small 8
#
# Builds sluice in release mode with frame pointers (target/profile-build),
# starts one nginx backend (answering from memory) and wrk on CPU 1, sluice
# with one worker on CPU 0, and samples sluice with `perf record -e
# cpu-clock -g` (this VM has no hardware counters). Prints the top symbols
# (`perf report --no-children --sort dso,sym`) and the user/kernel split.
# 127.0.0.1 only; everything it starts is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
need_packages nginx:nginx-light wrk:wrk perf:linux-perf
SCENARIO=${1:-small}
SECONDS_=${2:-8}
RUSTFLAGS="-C force-frame-pointers=yes" cargo build --release --quiet --target-dir target/profile-build
work=$(mktemp -d /tmp/sluice-profile-XXXX)
chmod 755 "$work"
printf 'x%.0s' $(seq 16384) > "$work/16k"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
b1=$(port); b2=$(port); sp=$(port)
cat > "$work/backend.conf" <<CONF
worker_processes 1; daemon off; pid $work/backend.pid; error_log $work/backend.err crit;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  server { listen 127.0.0.1:$b1 backlog=4096; listen 127.0.0.1:$b2 backlog=4096;
    location = /16k { default_type text/plain; root $work; }
    location / { default_type text/plain; return 200 "ok"; } } }
CONF
cat > "$work/sluice.toml" <<CONF
[runtime]
worker_threads = 1
[log]
level = "error"
access_log = false
[[listener]]
name = "bench"
bind = "127.0.0.1:$sp"
max_connections = 20000
[[route]]
pool = "p"
[pool.p]
strategy = "round_robin"
backends = [{ addr = "127.0.0.1:$b1" }, { addr = "127.0.0.1:$b2" }]
CONF
taskset -c 1 nginx -c "$work/backend.conf" & nginx_pid=$!
taskset -c 0 target/profile-build/release/sluice --config "$work/sluice.toml" & sluice_pid=$!
trap 'kill $sluice_pid $nginx_pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
sleep 1
case "$SCENARIO" in
  small) path=/; extra=() ;;
  16k) path=/16k; extra=() ;;
  close) path=/; extra=(-H "Connection: close") ;;
esac
taskset -c 1 wrk -t1 -c64 -d$((SECONDS_ + 4))s "${extra[@]}" "http://127.0.0.1:$sp$path" > "$work/wrk.txt" &
wrk_pid=$!
sleep 2
perf record -q -e cpu-clock -F 4999 -g -p $sluice_pid -o "$work/perf.data" -- sleep "$SECONDS_" 2>/dev/null
wait $wrk_pid
grep -E "Requests/sec" "$work/wrk.txt"
echo "== user vs kernel"
perf report -i "$work/perf.data" --no-children --sort dso --stdio 2>/dev/null | grep -E "^ +[0-9]" | head -8
echo "== top symbols"
perf report -i "$work/perf.data" --no-children --sort dso,sym --stdio -g none 2>/dev/null | grep -E "^ +[0-9]" | head -${TOP:-45}
