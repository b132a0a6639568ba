"""Shared by the load scripts: ports on 127.0.0.1 and the processes a
script starts, all stopped when it exits, however it exits."""
import atexit, re, socket, subprocess, sys, time

procs = []


def _stop_all():
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()


atexit.register(_stop_all)


def spawn(cmd, **kw):
    """Starts `cmd`; it is stopped when the script exits."""
    p = subprocess.Popen(cmd, **kw)
    procs.append(p)
    return p


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, deadline=20):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)
    sys.exit(f"nothing listens on {port}")


def wrk_ms(v):
    """A latency as wrk prints it ("812.00us", "1.52ms", "2.01s"), in ms."""
    n, unit = re.match(r"([\d.]+)(us|ms|s)", v).groups()
    return float(n) / 1000 if unit == "us" else float(n) if unit == "ms" else float(n) * 1000


def process_tree(pid):
    """pid and its descendants (nginx and haproxy fork workers)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            with open(f"/proc/{p}/task/{p}/children") as f:
                todo += [int(c) for c in f.read().split()]
        except OSError:
            pass
    return out


def cpu_ticks(pid):
    """utime + stime of pid and its descendants, in clock ticks."""
    total = 0
    for p in process_tree(pid):
        try:
            with open(f"/proc/{p}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            pass
    return total
