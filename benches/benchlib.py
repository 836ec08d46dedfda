"""What the harnesses in benches/ share: free loopback ports and the sections
of benches/RESULTS.md. Imported by name (a script's own directory is on
sys.path), so run the harnesses as `python3 benches/<name>.py`."""

import os
import re
import socket

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "benches", "RESULTS.md")
HEADER = ("# Benchmark results\n\nWritten by the harnesses in benches/; each section says "
          "how it was made.\n\n")

_used_ports = set()


def free_port():
    """A port free for both TCP and UDP on 127.0.0.1, not handed out before
    in this run."""
    for _ in range(200):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port in _used_ports:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind(("127.0.0.1", port))
        except OSError:
            continue
        _used_ports.add(port)
        return port
    raise RuntimeError("no free port")


def write_section(name, section):
    """Puts `section` (which starts with `<!-- name:begin` and ends with
    `<!-- name:end -->`) into RESULTS.md in place of the earlier one, or at
    the end; other sections are left as they are."""
    text = open(RESULTS).read() if os.path.exists(RESULTS) else HEADER
    pattern = re.compile(r"<!-- " + re.escape(name) + r":begin.*?<!-- " + re.escape(name)
                         + r":end -->\n?", re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section.rstrip("\n") + "\n", text, count=1)
    else:
        text = text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n"
    with open(RESULTS, "w") as f:
        f.write(text)


def stop_process(proc, log=None, timeout=10):
    """Ends a server started by a harness: SIGTERM, then SIGKILL after `timeout`
    seconds; closes its log file."""
    import signal
    import subprocess
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
    if log is not None:
        log.close()


def log_tail(path, size=2000):
    """The last `size` characters of a log file ("" if it cannot be read)."""
    try:
        with open(path) as f:
            return f.read()[-size:]
    except OSError:
        return ""
