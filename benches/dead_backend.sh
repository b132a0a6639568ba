#!/usr/bin/env bash
# A backend killed under keep-alive load: what clients see.
#
#   bash benches/dead_backend.sh       # ~40 s; DURATION=12 KILL_AT=4
#
# Three nginx backends (separate processes), sluice with one worker in
# front of them (round robin, the default [retry] table, no health check,
# no breaker), and wrk (64 keep-alive connections) for DURATION seconds,
# twice: once steady, once with one backend killed (SIGKILL) KILL_AT seconds
# in. Prints errors (socket errors and non-2xx answers) and latency
# percentiles of both runs, and the p99 ratio (target: 0 errors, p99 within
# 1.5x of the steady run). 127.0.0.1 only; everything is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
need_packages nginx:nginx-light wrk:wrk
cargo build --release --quiet
exec python3 - <<'PY'
import os, re, signal, subprocess, sys, tempfile, threading, time
sys.path.insert(0, "benches")
from common import free_port, spawn, wait_port, wrk_ms as ms
DURATION = int(os.environ.get("DURATION", "12"))
KILL_AT = float(os.environ.get("KILL_AT", "4"))
work = tempfile.mkdtemp(prefix="sluice-dead-")

def backend(port):
    conf = os.path.join(work, f"b{port}.conf")
    open(conf, "w").write(f"""
worker_processes 1; daemon off; pid {work}/b{port}.pid; error_log {work}/b{port}.err crit;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  server {{ listen 127.0.0.1:{port} backlog=4096; location / {{ return 200 "ok"; }} }} }}
""")
    p = spawn(["nginx", "-c", conf], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_port(port)
    return p

def run(kill):
    ports = [free_port() for _ in range(3)]
    backends = [backend(p) for p in ports]
    port = free_port()
    conf = os.path.join(work, "sluice.toml")
    open(conf, "w").write(f"""
[runtime]
worker_threads = 1
[log]
level = "error"
access_log = false
[[listener]]
name = "bench"
bind = "127.0.0.1:{port}"
[[route]]
pool = "p"
[pool.p]
strategy = "round_robin"
backends = [{", ".join(f'{{ addr = "127.0.0.1:{p}" }}' for p in ports)}]
[pool.p.retry]
""")
    s = spawn(["target/release/sluice", "--config", conf], stdout=subprocess.DEVNULL)
    wait_port(port)
    if kill:
        def killer():
            time.sleep(KILL_AT)
            victim = backends[1]
            # The master and its worker, as a crash would take them.
            subprocess.run(["pkill", "-KILL", "-P", str(victim.pid)])
            victim.send_signal(signal.SIGKILL)
        threading.Thread(target=killer, daemon=True).start()
    out = subprocess.run(["wrk", "-t1", "-c64", f"-d{DURATION}s", "--latency", f"http://127.0.0.1:{port}/"],
                         capture_output=True, text=True, timeout=DURATION + 30).stdout
    s.terminate(); s.wait()
    for b in backends:
        if b.poll() is None:
            b.terminate(); b.wait()
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    lat = dict(re.findall(r"^\s+(50|90|99)%\s+(\S+)", out, re.M))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    return errors, lat, rps

steady = run(False)
killed = run(True)
print(f"## dead_backend.sh: 3 backends, one killed {KILL_AT:.0f} s into {DURATION} s of wrk (64 keep-alive connections)")
print("| run | req/s | errors | p50 | p90 | p99 |")
print("|---|---|---|---|---|---|")
for name, (errors, lat, rps) in [("steady", steady), ("one backend killed", killed)]:
    print(f"| {name} | {rps:.0f} | {errors} | {lat['50']} | {lat['90']} | {lat['99']} |")
print(f"p99 ratio (killed / steady): {ms(killed[1]['99']) / ms(steady[1]['99']):.2f} (target <= 1.5); errors: {killed[0]} (target 0)")
PY
