#!/usr/bin/env python3
"""Memory under large messages: N concurrent clients each send one SIZE-MiB message to an alias;
the service receives, forwards and delivers them all to a sink. Reports the idle RSS, the peak RSS
(VmHWM) and the peak above idle as a multiple of the bytes in flight.

    scripts/memory-test.py BIN [--clients 10] [--mib 25] [--limit 3.0]

Passes when every message arrives and peak RSS <= idle RSS + LIMIT x (clients x size). Bounded:
every wait has a deadline; the service it starts is stopped at exit. Loopback only.
"""
import argparse
import importlib.util
import os
import shutil
import smtplib
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("crash_test", os.path.join(HERE, "crash-test.py"))
crash_test = importlib.util.module_from_spec(spec)
spec.loader.exec_module(crash_test)


def rss(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    return 0


def message(n, mib):
    line = (f"line of message {n} " + "abcdefghij" * 6)[:76] + "\r\n"
    body = line * (mib * 1024 * 1024 // len(line) + 1)
    return (f"From: Bob <bob@ext.test>\r\nTo: shop@alias.test\r\nSubject: crash-{n}\r\n"
            f"Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <big-{n}@ext.test>\r\n\r\n"
            + body).encode()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--mib", type=int, default=25)
    ap.add_argument("--limit", type=float, default=3.0)
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="postern-memory.")
    sink = crash_test.Sink(os.path.join(work, "received.txt"))
    sink_proc = sink.start()
    smtp_port, http_port = crash_test.free_port(), crash_test.free_port()
    config = os.path.join(work, "postern.toml")
    with open(config, "w") as f:
        f.write(
            f'data_dir = "{work}/data"\n'
            f'[smtp]\nlisten = "127.0.0.1:{smtp_port}"\ntrusted_networks = ["127.0.0.1/32"]\n'
            f"max_message_size = {(args.mib + 2) * 1024 * 1024}\n"
            f'[http]\nlisten = "127.0.0.1:{http_port}"\n'
            f'[mail]\nalias_domains = ["alias.test"]\nhostname = "mx.alias.test"\n'
            f'[outbound]\nrelay = "smtp://127.0.0.1:{sink.server_address[1]}?tls=none"\n'
        )
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    dns, env["POSTERN_DNS__NAMESERVERS"] = crash_test.testdns.start(args.bin)
    cli = lambda *a: subprocess.run([args.bin, *a, "--config", config], env=env, check=True,
                                    capture_output=True, timeout=60)
    proc = None
    try:
        cli("user", "add", "me@real.test")
        cli("alias", "add", "me@real.test", "--address", "shop@alias.test")
        proc = subprocess.Popen([args.bin, "serve", "--config", config], env=env)
        if not crash_test.wait_port(smtp_port):
            sys.exit("memory-test: the service did not start")
        messages = [message(n, args.mib) for n in range(args.clients)]
        time.sleep(1.0)
        idle = rss(proc.pid, "VmRSS")
        replies = [None] * args.clients

        def send(n):
            try:
                with smtplib.SMTP("127.0.0.1", smtp_port, timeout=300) as s:
                    s.sendmail("bob@ext.test", ["shop@alias.test"], messages[n])
                replies[n] = "250"
            except Exception as e:  # noqa: BLE001 - reported below
                replies[n] = repr(e)

        threads = [threading.Thread(target=send, args=(n,)) for n in range(args.clients)]
        started = time.time()
        for t in threads:
            t.start()
        deadline = started + 600
        while time.time() < deadline:
            arrived = len(sink.got)
            if arrived >= args.clients and not any(t.is_alive() for t in threads):
                break
            time.sleep(0.2)
        elapsed = time.time() - started
        peak = rss(proc.pid, "VmHWM")
        in_flight = args.clients * args.mib * 1024 * 1024
        ratio = (peak - idle) / in_flight
        mib = lambda b: f"{b / 1048576:.0f} MiB"
        print(f"clients={args.clients} size={args.mib} MiB in_flight={mib(in_flight)} "
              f"idle_rss={mib(idle)} peak_rss={mib(peak)} above_idle={ratio:.2f}x "
              f"arrived={arrived} seconds={elapsed:.1f}")
        failures = []
        if any(r != "250" for r in replies):
            failures.append(f"not all accepted: {replies}")
        if arrived < args.clients:
            failures.append(f"only {arrived} of {args.clients} arrived")
        if peak > idle + args.limit * in_flight:
            failures.append(f"peak RSS {ratio:.2f}x the bytes in flight (limit {args.limit}x)")
        for f in failures:
            print("memory-test:", f)
        print(f"memory-test: {0 if failures else 1} passed, {1 if failures else 0} failed")
        sys.exit(1 if failures else 0)
    finally:
        if proc and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        sink_proc.terminate()
        dns.terminate()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
