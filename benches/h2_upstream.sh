#!/usr/bin/env bash
# HTTP/2 to backends: what a pool with protocol = "h2c" costs against one
# with HTTP/1.1, next to HAProxy doing the same (`proto h2`), in one run.
#
#   bash benches/h2_upstream.sh        # ~2 min; ROUNDS=3 DURATION=6
#
# One nginx backend (one worker, answering "ok" from memory) listens twice:
# HTTP/1.1 on one port, cleartext HTTP/2 (prior knowledge) on another.
# sluice and HAProxy, one worker each pinned to CPU 0, each get two
# frontends: one to the HTTP/1.1 port (pooled keep-alive), one to the h2c
# port (multiplexed). wrk (one thread, 64 keep-alive HTTP/1.1 connections,
# CPU 1) loads each in turn. Per case: requests/s, p99, and the proxy's CPU
# microseconds per request (utime+stime from /proc over the requests).
# Medians over the rounds; 127.0.0.1 only; everything stops at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

. benches/common.sh
need_packages nginx:nginx-light haproxy:haproxy wrk:wrk

cargo build --release --quiet
exec python3 - "$@" <<'PY'
import os, re, statistics, subprocess, sys, tempfile
sys.path.insert(0, "benches")
from common import cpu_ticks as ticks, free_port, spawn, wait_port, wrk_ms as ms

ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = int(os.environ.get("DURATION", "6"))
work = tempfile.mkdtemp(prefix="sluice-h2up-")
TICK = os.sysconf("SC_CLK_TCK")

def start(cmd, cpu):
    return spawn(["taskset", "-c", str(cpu)] + cmd, stdout=subprocess.DEVNULL,
                 stderr=open(os.path.join(work, "stderr.log"), "ab"))

h1, h2c = free_port(), free_port()
with open(os.path.join(work, "backend.conf"), "w") as f:
    f.write(f"""
worker_processes 1; daemon off; pid {work}/backend.pid; error_log {work}/backend.err crit;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  http2_max_requests 100000000; http2_max_concurrent_streams 128;
  server {{ listen 127.0.0.1:{h1}; location / {{ default_type text/plain; return 200 "ok"; }} }}
  server {{ listen 127.0.0.1:{h2c} http2; location / {{ default_type text/plain; return 200 "ok"; }} }} }}
""")
start(["nginx", "-c", os.path.join(work, "backend.conf")], 1)
wait_port(h1); wait_port(h2c)

s1, s2, a1, a2 = free_port(), free_port(), free_port(), free_port()
with open(os.path.join(work, "sluice.toml"), "w") as f:
    f.write(f"""
[runtime]
worker_threads = 1
[log]
level = "error"
access_log = false
[[listener]]
name = "h1"
bind = "127.0.0.1:{s1}"
[[listener]]
name = "h2c"
bind = "127.0.0.1:{s2}"
[[route]]
listeners = ["h1"]
pool = "h1"
[[route]]
listeners = ["h2c"]
pool = "h2c"
[pool.h1]
backends = [{{ addr = "127.0.0.1:{h1}" }}]
[pool.h2c]
protocol = "h2c"
backends = [{{ addr = "127.0.0.1:{h2c}" }}]
""")
with open(os.path.join(work, "haproxy.cfg"), "w") as f:
    f.write(f"""
global
  nbthread 1
defaults
  mode http
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  http-reuse always
frontend f1
  bind 127.0.0.1:{a1}
  default_backend b1
frontend f2
  bind 127.0.0.1:{a2}
  default_backend b2
backend b1
  server s 127.0.0.1:{h1}
backend b2
  server s 127.0.0.1:{h2c} proto h2
""")
pids = {
    "sluice": start(["target/release/sluice", "--config", os.path.join(work, "sluice.toml")], 0).pid,
    "haproxy": start(["haproxy", "-f", os.path.join(work, "haproxy.cfg")], 0).pid,
}
for p in (s1, s2, a1, a2):
    wait_port(p)
cases = {("sluice", "http1"): s1, ("sluice", "h2c"): s2,
         ("haproxy", "http1"): a1, ("haproxy", "h2c"): a2}

def run(proxy, port):
    before = ticks(pids[proxy])
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c64", f"-d{DURATION}s", "--latency",
                          f"http://127.0.0.1:{port}/"], capture_output=True, text=True,
                         timeout=DURATION + 30).stdout
    after = ticks(pids[proxy])
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    return {"rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
            "p99": ms(dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))["99"]),
            "cpu": (after - before) / TICK * 1e6 / max(reqs, 1),
            "errors": errors + (int(bad.group(1)) if bad else 0)}

results = {}
for r in range(ROUNDS):
    order = list(cases) if r % 2 == 0 else list(reversed(cases))
    for case in order:
        res = run(case[0], cases[case])
        results.setdefault(case, []).append(res)
        print(f"round {r + 1} {case[0]:8} {case[1]:5} {res['rps']:9.0f} req/s  p99 {res['p99']:6.2f} ms"
              f"  {res['cpu']:5.1f} us/req  errors {res['errors']}", file=sys.stderr, flush=True)

med = {c: {k: statistics.median(x[k] for x in v) for k in v[0]} for c, v in results.items()}
print(f"\n{'proxy':8} {'backend':7} {'req/s':>9} {'p99 ms':>7} {'us/req':>7} {'errors':>6}")
for (proxy, proto), m in med.items():
    print(f"{proxy:8} {proto:7} {m['rps']:9.0f} {m['p99']:7.2f} {m['cpu']:7.1f} {m['errors']:6.0f}")
for proto in ("http1", "h2c"):
    s, h = med[("sluice", proto)], med[("haproxy", proto)]
    print(f"{proto}: sluice/HAProxy CPU per request {s['cpu'] / h['cpu']:.2f}, req/s {s['rps'] / h['rps']:.2f}")
s = med[("sluice", "h2c")]["cpu"] / med[("sluice", "http1")]["cpu"]
h = med[("haproxy", "h2c")]["cpu"] / med[("haproxy", "http1")]["cpu"]
print(f"h2c over http1 CPU per request: sluice {s:.2f}, HAProxy {h:.2f}")
PY
