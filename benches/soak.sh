#!/usr/bin/env bash
# A bounded soak: healthy traffic, failing backends and reloads at once,
# reporting errors and sluice's memory over time.
#
#   bash benches/soak.sh            # DURATION=120 seconds by default
#
# Backends (one nginx, 127.0.0.1 only): two healthy ones, one that answers
# 500 to everything, and one address where nothing listens. sluice (release
# build) balances over all four with health checks, a circuit breaker and
# retries. wrk keeps 32 keep-alive connections busy for the whole run while,
# every 2 s, the config file is rewritten (the failing backends come and go,
# weights change) and sluice gets SIGHUP. Every second the script samples
# sluice's RSS. At the end: requests, errors by kind, reloads that
# succeeded, and RSS over time. Stops by itself; stops everything it started.
#
# Needs nginx and wrk (installed from Debian's packages if missing, when run
# as root) and python3.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
need_packages nginx:nginx-light wrk:wrk
cargo build --release --quiet
exec python3 - <<'PY'
import os, re, signal, subprocess, sys, tempfile, time, urllib.request
sys.path.insert(0, "benches")
from common import free_port, spawn, wait_port

DURATION = int(os.environ.get("DURATION", "120"))
work = tempfile.mkdtemp(prefix="sluice-soak-")
ok1, ok2, bad, dead, port, admin = (free_port() for _ in range(6))
with open(f"{work}/backends.conf", "w") as f:
    f.write(f"""
worker_processes 1; daemon off; pid {work}/nginx.pid; error_log {work}/nginx.err crit;
events {{ worker_connections 4096; }}
http {{ access_log off;
  server {{ listen 127.0.0.1:{ok1}; listen 127.0.0.1:{ok2}; location / {{ return 200 "ok"; }} }}
  server {{ listen 127.0.0.1:{bad}; location / {{ return 500 "broken"; }} }} }}
""")
spawn(["nginx", "-c", f"{work}/backends.conf"])
for p in (ok1, ok2, bad):
    wait_port(p)

def config(step):
    """Alternates what the pool holds, so reloads add and remove failing
    backends and change weights while traffic flows."""
    backends = [f'{{ addr = "127.0.0.1:{ok1}", weight = {1 + step % 3} }}',
                f'{{ addr = "127.0.0.1:{ok2}" }}']
    if step % 2 == 0:
        backends += [f'{{ addr = "127.0.0.1:{bad}" }}', f'{{ addr = "127.0.0.1:{dead}" }}']
    return f"""
[admin]
bind = "127.0.0.1:{admin}"
[log]
level = "error"
access_log = false
[[listener]]
name = "soak"
bind = "127.0.0.1:{port}"
[[route]]
pool = "p"
[pool.p]
strategy = "{['round_robin', 'least_connections', 'random'][step % 3]}"
connect_timeout = "200ms"
request_timeout = "2s"
backends = [{", ".join(backends)}]
[pool.p.health_check]
path = "/"
interval = "500ms"
timeout = "200ms"
unhealthy_threshold = 2
healthy_threshold = 2
[pool.p.circuit_breaker]
failure_threshold = 5
open_duration = "1s"
[pool.p.retry]
attempts = 2
on = ["connect_failure", "timeout", "500", "502", "503"]
"""

path = f"{work}/sluice.toml"
with open(path, "w") as f:
    f.write(config(0))
sluice = spawn(["target/release/sluice", "--config", path], stderr=open(f"{work}/sluice.err", "wb"))
wait_port(port)

def rss_mib():
    with open(f"/proc/{sluice.pid}/status") as f:
        return next(int(l.split()[1]) for l in f if l.startswith("VmRSS:")) / 1024

wrk = spawn(["wrk", "-t1", "-c32", f"-d{DURATION}s", "--latency", f"http://127.0.0.1:{port}/"],
            stdout=subprocess.PIPE, text=True)
samples, step, start = [], 0, time.time()
while wrk.poll() is None and time.time() - start < DURATION + 30:
    time.sleep(1)
    t = int(time.time() - start)
    samples.append((t, rss_mib()))
    if t % 2 == 0 and t < DURATION:
        step += 1
        with open(path, "w") as f:
            f.write(config(step))
        sluice.send_signal(signal.SIGHUP)
out = wrk.communicate(timeout=60)[0]
if sluice.poll() is not None:
    sys.exit(f"sluice exited during the soak: {sluice.returncode}")
metrics = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
def metric(name, labels):
    m = re.search(re.escape(name) + r"\{" + labels + r"\} (\S+)", metrics)
    return float(m.group(1)) if m else 0.0
reqs = int(re.search(r"(\d+) requests in", out).group(1))
non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
sock = re.search(r"Socket errors: (.*)", out)
print(f"\n## soak.sh: {DURATION} s, 32 keep-alive connections, a reload every 2 s")
print(f"requests: {reqs} ({reqs / DURATION:.0f}/s); non-2xx answers: {non2xx.group(1) if non2xx else 0}; "
      f"socket errors: {sock.group(1) if sock else 'none'}")
ok_reloads = metric("sluice_config_reloads_total", 'result="success"')
bad_reloads = metric("sluice_config_reloads_total", 'result="failure"')
retries = sum(float(v) for v in re.findall(r"sluice_retries_total\{[^}]*\} (\S+)", metrics))
print(f"reloads: {ok_reloads:.0f} succeeded, {bad_reloads:.0f} failed; retries: {retries:.0f}")
by_status = {}
for labels, n in re.findall(r"^sluice_requests_total\{([^}]*)\} (\S+)", metrics, re.M):
    code = re.search(r'(?:code|status)="(\d+)"', labels)
    if code:
        by_status[code.group(1)] = by_status.get(code.group(1), 0) + float(n)
print("answers by status: " + ", ".join(f"{s}: {n:.0f}" for s, n in sorted(by_status.items())))
print("RSS (MiB) over time: " + ", ".join(f"{t}s {m:.1f}" for t, m in samples[:: max(1, len(samples) // 12)]))
print(f"RSS first/last/peak: {samples[0][1]:.1f} / {samples[-1][1]:.1f} / {max(m for _, m in samples):.1f} MiB")
PY
