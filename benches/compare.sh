#!/usr/bin/env bash
# sluice against nginx and HAProxy, side by side, in one run on this machine.
#
#   bash benches/compare.sh            # ~5 min; ROUNDS=3 DURATION=6 by default
#   WORKERS=2 bash benches/compare.sh  # each proxy with 2 workers, all CPUs
#
# Starts two fast local backends (nginx, answering from memory), then each
# proxy with ONE worker thread/process, pinned to CPU 0, round robin over
# the same two backends, with access logs off. The load generator (wrk, one
# thread) and the backends run on the other CPU. With WORKERS=N (N > 1),
# each proxy gets N workers (sluice worker_threads, nginx worker_processes,
# HAProxy nbthread) and nothing is pinned: proxy, backends and wrk share
# every CPU, so req/s is what the whole machine does, and CPU per request
# counts the proxy's own processes only (not wrk's or the backends'). Scenarios:
#   small     keep-alive, 64 connections, 2-byte responses
#   16k       keep-alive, 64 connections, 16 KiB responses
#   close     a new connection per request (Connection: close), 64 at a time
# plus the same load straight at a backend (the ceiling). Proxies are
# interleaved within each round; the figures are medians over the rounds.
# Per proxy: requests/s, p50 and p99 latency, errors, CPU microseconds per
# request (utime+stime of the proxy's processes from /proc, divided by the
# requests served) and peak RSS; then RSS with 10,000 idle keep-alive
# connections. 127.0.0.1 only; everything it starts is stopped at the end.
#
# Needs: nginx, haproxy, wrk (installed from Debian's packages if missing,
# when run as root), python3, and a release build of sluice (built here).
set -euo pipefail
cd "$(dirname "$0")/.."

. benches/common.sh
need_packages nginx:nginx-light haproxy:haproxy wrk:wrk

cargo build --release --quiet
exec python3 - "$@" <<'PY'
import os, re, socket, statistics, subprocess, sys, tempfile, time
sys.path.insert(0, "benches")
from common import cpu_ticks, free_port, process_tree as tree, spawn, wait_port, wrk_ms as parse_ms

ROUNDS = int(os.environ.get("ROUNDS", "3"))
DURATION = int(os.environ.get("DURATION", "6"))
IDLE = int(os.environ.get("IDLE_CONNECTIONS", "10000"))
WORKERS = int(os.environ.get("WORKERS", "1"))
CONNS = 64
work = tempfile.mkdtemp(prefix="sluice-compare-")
os.chmod(work, 0o755)  # nginx workers (an unprivileged user) read 16k here
def start(cmd, cpu):
    pin = ["taskset", "-c", str(cpu)] if WORKERS == 1 else []
    return spawn(pin + cmd, stdout=subprocess.DEVNULL,
                 stderr=open(os.path.join(work, "stderr.log"), "ab"))

def mem_kb(pid, key):
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total

TICK = os.sysconf("SC_CLK_TCK")
import resource
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
hard = 30000 if hard == resource.RLIM_INFINITY else min(hard, 30000)

# --- backends: one nginx, one worker, two ports, answering from memory ---
b1, b2 = free_port(), free_port()
with open(os.path.join(work, "16k"), "w") as f:
    f.write("x" * 16384)
with open(os.path.join(work, "backend.conf"), "w") as f:
    f.write(f"""
worker_processes 1; daemon off; pid {work}/backend.pid; error_log {work}/backend.err crit;
events {{ worker_connections 20000; }}
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  server {{ listen 127.0.0.1:{b1} backlog=4096; listen 127.0.0.1:{b2} backlog=4096;
    open_file_cache max=16; location = /16k {{ default_type text/plain; root {work}; }}
    location / {{ default_type text/plain; return 200 "ok"; }} }} }}
""")
start(["nginx", "-c", os.path.join(work, "backend.conf")], 1)
wait_port(b1); wait_port(b2)

# --- the three proxies, one worker each, on CPU 0 ---
ports = {"sluice": free_port(), "nginx": free_port(), "haproxy": free_port()}
admin = free_port()
with open(os.path.join(work, "sluice.toml"), "w") as f:
    f.write(f"""
[runtime]
worker_threads = {WORKERS}
[admin]
bind = "127.0.0.1:{admin}"
[log]
level = "error"
access_log = false
[[listener]]
name = "bench"
bind = "127.0.0.1:{ports['sluice']}"
max_connections = 20000
idle_timeout = "120s"
header_read_timeout = "120s"
[[route]]
pool = "p"
[pool.p]
strategy = "round_robin"
backends = [{{ addr = "127.0.0.1:{b1}" }}, {{ addr = "127.0.0.1:{b2}" }}]
""")
with open(os.path.join(work, "nginx.conf"), "w") as f:
    f.write(f"""
worker_processes {WORKERS}; daemon off; pid {work}/nginx.pid; error_log {work}/nginx.err crit;
worker_rlimit_nofile {hard};
events {{ worker_connections 20000; }}
http {{ access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  upstream be {{ server 127.0.0.1:{b1}; server 127.0.0.1:{b2}; keepalive 128; }}
  server {{ listen 127.0.0.1:{ports['nginx']} backlog=4096;
    location / {{ proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; }} }} }}
""")
with open(os.path.join(work, "haproxy.cfg"), "w") as f:
    f.write(f"""
global
  nbthread {WORKERS}
  maxconn {(hard - 100) // 2}
defaults
  mode http
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  timeout http-keep-alive 120s
  http-reuse always
frontend fe
  bind 127.0.0.1:{ports['haproxy']}
  default_backend be
backend be
  balance roundrobin
  server s1 127.0.0.1:{b1}
  server s2 127.0.0.1:{b2}
""")
limit = ["prlimit", f"--nofile={hard}:{hard}"]
# HAProxy reserves two descriptors per connection (client and server side):
# every proxy gets the same number of idle connections, what HAProxy can take.
if IDLE > (hard - 100) // 2 - 500:
    IDLE = (hard - 100) // 2 - 500
    print(f"idle connections: {IDLE} (open-file hard limit {hard})", file=sys.stderr)
pids = {
    "sluice": start(limit + ["target/release/sluice", "--config", os.path.join(work, "sluice.toml")], 0).pid,
    "nginx": start(limit + ["nginx", "-c", os.path.join(work, "nginx.conf")], 0).pid,
    "haproxy": start(limit + ["haproxy", "-f", os.path.join(work, "haproxy.cfg")], 0).pid,
}
for p in ports.values():
    wait_port(p)
ports["direct"] = b1

SCENARIOS = {"small": ("/", []), "16k": ("/16k", []), "close": ("/", ["-H", "Connection: close"])}

def run(target, scenario):
    path, extra = SCENARIOS[scenario]
    pid = pids.get(target)
    before = cpu_ticks(pid) if pid else 0
    pin = ["taskset", "-c", "1"] if WORKERS == 1 else []
    out = subprocess.run(pin + ["wrk", "-t1", f"-c{CONNS}", f"-d{DURATION}s", "--latency"]
                         + extra + [f"http://127.0.0.1:{ports[target]}{path}"],
                         capture_output=True, text=True, timeout=DURATION + 30).stdout
    after = cpu_ticks(pid) if pid else 0
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    errors = sum(int(x) for x in re.findall(r"(?:connect|read|write|timeout) (\d+)", out))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors += int(non2xx.group(1)) if non2xx else 0
    lat = dict(re.findall(r"^\s+(50|99)%\s+(\S+)", out, re.M))
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),
        "p50": parse_ms(lat["50"]), "p99": parse_ms(lat["99"]), "errors": errors,
        "cpu_us": (after - before) / TICK * 1e6 / max(reqs, 1) if pid else None,
    }

results = {}
order = ["direct", "sluice", "nginx", "haproxy"]
for r in range(ROUNDS):
    for scenario in SCENARIOS:
        # A different proxy goes first each round.
        rot = order[1:][r % 3:] + order[1:][:r % 3]
        for target in ["direct"] + rot:
            res = run(target, scenario)
            results.setdefault((target, scenario), []).append(res)
            print(f"round {r + 1} {scenario:5} {target:8} {res['rps']:9.0f} req/s  p99 {res['p99']:6.2f} ms"
                  + (f"  {res['cpu_us']:5.1f} us/req" if res['cpu_us'] else ""), file=sys.stderr, flush=True)

peak = {t: mem_kb(pids[t], "VmHWM") for t in pids}

def idle_rss(target):
    """RSS growth of a proxy with IDLE keep-alive connections open, each
    having made one request."""
    pid = pids[target]
    base = mem_kb(pid, "VmRSS")
    socks = []
    req = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
    for _ in range(IDLE):
        s = socket.create_connection(("127.0.0.1", ports[target]))
        s.sendall(req)
        socks.append(s)
    for s in socks:
        s.settimeout(10)
        got = b""
        while b"\r\n\r\nok" not in got:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
    time.sleep(0.5)
    grown = mem_kb(pid, "VmRSS") - base
    for s in socks:
        s.close()
    time.sleep(1)
    return grown * 1024 / IDLE

idle = {}
import resource
resource.setrlimit(resource.RLIMIT_NOFILE, (min(IDLE + 1000, resource.getrlimit(resource.RLIMIT_NOFILE)[1]),) * 2)
for t in ["sluice", "nginx", "haproxy"]:
    idle[t] = idle_rss(t)

def med(target, scenario, key):
    return statistics.median(x[key] for x in results[(target, scenario)])

with open("/proc/cpuinfo") as f:
    model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")), "?")
print(f"\n## compare.sh: {ROUNDS} rounds x {DURATION} s, {CONNS} connections, wrk -t1; {os.cpu_count()} CPUs ({model}); {WORKERS} worker(s) per proxy")
print(f"nginx {subprocess.run(['nginx', '-v'], capture_output=True, text=True).stderr.strip().split('/')[-1]}, "
      f"{subprocess.run(['haproxy', '-v'], capture_output=True, text=True).stdout.split()[2]} HAProxy, "
      f"sluice {subprocess.run(['target/release/sluice', '--version'], capture_output=True, text=True).stdout.strip()}\n")
print("| scenario | target | req/s | p50 ms | p99 ms | errors | CPU µs/req | peak RSS MiB |")
print("|---|---|---|---|---|---|---|---|")
for scenario in SCENARIOS:
    for t in order:
        cpu = med(t, scenario, "cpu_us") if t != "direct" else None
        errs = sum(x["errors"] for x in results[(t, scenario)])
        rss = f"{peak[t] / 1024:.1f}" if t in peak else "-"
        print(f"| {scenario} | {t} | {med(t, scenario, 'rps'):.0f} | {med(t, scenario, 'p50'):.2f} | "
              f"{med(t, scenario, 'p99'):.2f} | {errs} | {cpu:.1f} | {rss} |" if cpu is not None else
              f"| {scenario} | {t} (ceiling) | {med(t, scenario, 'rps'):.0f} | {med(t, scenario, 'p50'):.2f} | "
              f"{med(t, scenario, 'p99'):.2f} | {errs} | - | - |")
print("\nsluice relative to the better of nginx and HAProxy (CPU: lower is better; req/s: higher):\n")
print("| scenario | CPU/req ratio | req/s ratio | p99 ratio |")
print("|---|---|---|---|")
for scenario in SCENARIOS:
    cpu = med("sluice", scenario, "cpu_us") / min(med("nginx", scenario, "cpu_us"), med("haproxy", scenario, "cpu_us"))
    rps = med("sluice", scenario, "rps") / max(med("nginx", scenario, "rps"), med("haproxy", scenario, "rps"))
    p99 = med("sluice", scenario, "p99") / min(med("nginx", scenario, "p99"), med("haproxy", scenario, "p99"))
    print(f"| {scenario} | {cpu:.2f} | {rps:.2f} | {p99:.2f} |")
print(f"\nIdle keep-alive connections ({IDLE}): RSS growth per connection: "
      + ", ".join(f"{t} {idle[t] / 1024:.1f} KiB" for t in idle))

PY
