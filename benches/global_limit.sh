#!/usr/bin/env bash
# What a global rate limit (scope = "global", buckets in Redis) costs per
# request against a local one, in one run on this machine.
#
#   bash benches/global_limit.sh        # ~1 min; ROUNDS=3 DURATION=5
#
# One sluice (one worker, CPU 0) in front of one nginx backend answering
# from memory, with three routes: no limit, a local limit and a global
# limit, all with a rate far above the load so every request is admitted
# and only the cost of deciding is measured. redis-server runs on CPU 1
# with wrk (one thread, 32 connections). Per route: requests/s, p50 and
# p99 latency, and CPU per request of sluice and of Redis (utime+stime from
# /proc). 127.0.0.1 only; everything it starts is stopped at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

. benches/common.sh
need_packages nginx:nginx-light wrk:wrk redis-server:redis-server

cargo build --release --quiet
exec python3 - "$@" <<'PY'
import os, re, statistics, subprocess, sys, tempfile
sys.path.insert(0, "benches")
from common import cpu_ticks as ticks, free_port, spawn, wait_port, wrk_ms as ms

ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = int(os.environ.get("DURATION", "5"))
work = tempfile.mkdtemp(prefix="sluice-global-limit-")
TICK = os.sysconf("SC_CLK_TCK")

backend, redis, port, admin = free_port(), free_port(), free_port(), free_port()
with open(os.path.join(work, "backend.conf"), "w") as f:
    f.write(f"""
worker_processes 1; daemon off; pid {work}/backend.pid; error_log {work}/backend.err crit;
events {{ worker_connections 4096; }}
http {{ access_log off; keepalive_requests 1000000;
  server {{ listen 127.0.0.1:{backend}; location / {{ default_type text/plain; return 200 "ok"; }} }} }}
""")
spawn(["taskset", "-c", "1", "nginx", "-c", os.path.join(work, "backend.conf")],
      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
rp = spawn(["taskset", "-c", "1", "redis-server", "--port", str(redis), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wait_port(backend); wait_port(redis)
limit = lambda scope: f"""[route.rate_limit]
requests_per_second = 10000000.0
burst = 10000000
key = "client_ip"
scope = "{scope}"
"""
with open(os.path.join(work, "sluice.toml"), "w") as f:
    f.write(f"""
[runtime]
worker_threads = 1
[admin]
bind = "127.0.0.1:{admin}"
[log]
level = "error"
access_log = false
[redis]
url = "redis://127.0.0.1:{redis}/0"
timeout = "50ms"
[[listener]]
name = "bench"
bind = "127.0.0.1:{port}"
[[route]]
name = "none"
path_prefix = "/none"
pool = "p"
[[route]]
name = "local"
path_prefix = "/local"
pool = "p"
{limit("local")}
[[route]]
name = "global"
path_prefix = "/global"
pool = "p"
{limit("global")}
[pool.p]
backends = [{{ addr = "127.0.0.1:{backend}" }}]
""")
sp = spawn(["taskset", "-c", "0", "target/release/sluice", "--config", os.path.join(work, "sluice.toml")],
           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
wait_port(port)
# Open the Redis connection before measuring.
subprocess.run(["curl", "-s", "-o", "/dev/null", f"http://127.0.0.1:{port}/global"], check=False)

def run(route):
    s0, r0 = ticks(sp.pid), ticks(rp.pid)
    out = subprocess.run(["taskset", "-c", "1", "wrk", "-t1", "-c32", f"-d{DURATION}s", "--latency",
                          f"http://127.0.0.1:{port}/{route}"], capture_output=True, text=True,
                         timeout=DURATION + 30).stdout
    s1, r1 = ticks(sp.pid), ticks(rp.pid)
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    return {"rps": reqs / DURATION, "p50": ms(lat["50"]), "p99": ms(lat["99"]),
            "sluice_us": (s1 - s0) / TICK * 1e6 / reqs, "redis_us": (r1 - r0) / TICK * 1e6 / reqs,
            "non2xx": int(non2xx.group(1)) if non2xx else 0}

results = {}
for r in range(ROUNDS):
    for route in ["none", "local", "global"]:
        res = run(route)
        results.setdefault(route, []).append(res)
        print(f"round {r + 1} {route:6} {res['rps']:8.0f} req/s p99 {res['p99']:.2f} ms "
              f"sluice {res['sluice_us']:.1f} us/req redis {res['redis_us']:.1f} us/req", file=sys.stderr)

med = lambda route, k: statistics.median(x[k] for x in results[route])
print(f"\n## global_limit.sh: {ROUNDS} rounds x {DURATION} s, 32 connections, sluice on CPU 0, Redis + wrk + backend on CPU 1\n")
print("| route | req/s | p50 ms | p99 ms | sluice CPU µs/req | Redis CPU µs/req | refused |")
print("|---|---|---|---|---|---|---|")
for route in ["none", "local", "global"]:
    print(f"| {route} limit | {med(route, 'rps'):.0f} | {med(route, 'p50'):.2f} | {med(route, 'p99'):.2f} "
          f"| {med(route, 'sluice_us'):.1f} | {med(route, 'redis_us'):.1f} | {sum(x['non2xx'] for x in results[route])} |")
d_cpu = med("global", "sluice_us") - med("local", "sluice_us")
d_p50 = med("global", "p50") - med("local", "p50")
print(f"\nglobal against local: +{d_cpu:.1f} µs sluice CPU, +{med('global', 'redis_us'):.1f} µs Redis CPU "
      f"and +{d_p50 * 1000:.0f} µs p50 latency per request")
PY
