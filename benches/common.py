"""Shared by the load scripts: ports on 127.0.0.1 and the processes a
script starts, all stopped when it exits, however it exits."""
import atexit, socket, subprocess, sys, time

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
