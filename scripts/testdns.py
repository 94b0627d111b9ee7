"""Starts postern-test-dns (built next to the postern binary) on a free loopback port with the
repository's test zone, for the scripts that run the real binary on a machine with no network."""
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def start(postern_binary):
    """Returns (process, "127.0.0.1:PORT"); the caller terminates the process."""
    tool = os.path.join(os.path.dirname(os.path.abspath(postern_binary)), "postern-test-dns")
    if not os.path.exists(tool):
        sys.exit(f"{tool} is missing: build it with `cargo build -p postern-tests --bin postern-test-dns`")
    # A port free for UDP may still be taken for TCP (the server listens on both): try anew.
    for _ in range(5):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        proc = subprocess.Popen([tool, "--port", str(port), "--records", os.path.join(HERE, "test.zone")],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        line = proc.stdout.readline().decode()
        if "listening" in line:
            return proc, f"127.0.0.1:{port}"
        proc.kill()
        proc.wait()
        if "cannot listen" not in line:
            break
    sys.exit(f"postern-test-dns did not start: {line}")
