#!/usr/bin/env bash
# A burst of requests in flight at once, and what memory it leaves behind.
#
#   bash benches/burst.sh [binary]     # default target/release/sluice; BURST=10000
#
# Starts a slow backend (a Python asyncio server that answers every request
# after HOLD seconds, 2 by default) and sluice with one worker, takes sluice's
# RSS at rest (after a warm-up), then opens BURST client connections that
# each send one request at once. It samples sluice's RSS every 20 ms while
# they are in flight, waits for every answer, closes every connection, and
# takes the RSS again 10 s later. Prints the idle baseline, the peak, the
# bytes per request in flight ((peak - baseline) / BURST) and the RSS 10 s
# after, against the target of twice the baseline. 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/release/sluice}
[ "$BIN" = target/release/sluice ] && cargo build --release --quiet
exec python3 - "$BIN" <<'PY'
import asyncio, os, resource, sys, tempfile, time
sys.path.insert(0, "benches")
from common import free_port, spawn, wait_port

BIN = sys.argv[1]
BURST = int(os.environ.get("BURST", "10000"))
HOLD = float(os.environ.get("HOLD", "2"))
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))

backend_port, port = free_port(), free_port()
work = tempfile.mkdtemp(prefix="sluice-burst-")
backend = os.path.join(work, "backend.py")
open(backend, "w").write(f"""
import asyncio, resource
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
async def serve(r, w):
    try:
        while True:
            head = await r.readuntil(b"\\r\\n\\r\\n")
            await asyncio.sleep({HOLD} if b"/slow" in head else 0)
            w.write(b"HTTP/1.1 200 OK\\r\\ncontent-length: 2\\r\\n\\r\\nok")
            await w.drain()
    except Exception:
        pass
    finally:
        w.close()
async def main():
    s = await asyncio.start_server(serve, "127.0.0.1", {backend_port}, backlog=16384)
    await s.serve_forever()
asyncio.run(main())
""")
spawn([sys.executable, backend])
wait_port(backend_port)
conf = os.path.join(work, "sluice.toml")
open(conf, "w").write(f"""
[runtime]
worker_threads = 1
[log]
level = "error"
access_log = false
[[listener]]
name = "burst"
bind = "127.0.0.1:{port}"
max_connections = 20000
[[route]]
pool = "p"
[pool.p]
max_connections = 20000
queue_timeout = "30s"
request_timeout = "60s"
backends = [{{ addr = "127.0.0.1:{backend_port}" }}]
""")
proc = spawn([BIN, "--config", conf])
wait_port(port)

def rss_kib():
    with open(f"/proc/{proc.pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])

async def one(path):
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(f"GET {path} HTTP/1.1\r\nHost: b\r\nConnection: close\r\n\r\n".encode())
    await w.drain()
    data = await r.read()
    w.close()
    return True if data.startswith(b"HTTP/1.1 200") else data[:12].decode(errors="replace") or "closed"

async def main():
    # Warm-up: a few requests, then rest.
    await asyncio.gather(*[one("/") for _ in range(50)])
    await asyncio.sleep(1)
    base = rss_kib()
    peak = base
    done = asyncio.Event()
    async def sample():
        nonlocal peak
        while not done.is_set():
            peak = max(peak, rss_kib())
            await asyncio.sleep(0.02)
    sampler = asyncio.create_task(sample())
    t0 = time.time()
    results = await asyncio.gather(*[one("/slow") for _ in range(BURST)], return_exceptions=True)
    took = time.time() - t0
    done.set(); await sampler
    ok = sum(1 for r in results if r is True)
    failed = {}
    for r in results:
        if r is not True:
            k = type(r).__name__ if isinstance(r, Exception) else r
            failed[k] = failed.get(k, 0) + 1
    await asyncio.sleep(10)
    after = rss_kib()
    print(f"## burst.sh: {BURST} requests in flight at once (backend holds each {HOLD} s), sluice {BIN}")
    print(f"answered 200: {ok}/{BURST} in {took:.1f} s; not: {failed or 'none'}")
    print(f"RSS at rest: {base/1024:.1f} MiB; peak: {peak/1024:.1f} MiB; 10 s after: {after/1024:.1f} MiB "
          f"({after/base:.2f}x the baseline; target <= 2x)")
    print(f"per request in flight: {(peak-base)*1024/BURST/1024:.1f} KiB")

asyncio.run(main())
PY
