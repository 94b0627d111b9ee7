#!/usr/bin/env python3
"""Crash safety under load: SIGKILL the service at random moments, restart it, count what arrives.

    scripts/crash-test.py BIN [--kills 20] [--clients 8] [--settle 60] [--db-url URL] [--sink postfix]

Runs `BIN serve` on loopback with a throwaway data directory, a user and an alias, and a small
SMTP sink of its own as the relay. Clients send numbered messages to the alias (a new connection
each) and remember which ones got `250`; a message that got no answer is sent again later, as a
real MTA would (those duplicates are the client's). Meanwhile the service is killed with SIGKILL
every 0.3-1.5 s and restarted at once, KILLS times. Then the load stops and the service stays up.

Passes when every acknowledged message reaches the sink within SETTLE seconds of the last restart
(nothing acknowledged is lost, nothing waits out a lease). It also counts Postern's own resends
(the same delivery, recognised by its VERP envelope sender, arriving twice) against the target of
one per kill, and says whether the target was met; `--strict` makes a miss fail the run. It splits
them by when the sink took the first copy in: before the kill (the sender's window between the
relay's 250 and its own record of it), or after (the whole message was on the wire, its 250 not
back yet: no sender can know). The sink runs in a process of its own and counts a message once
its DATA is complete and acknowledged. With KEEP=1 the work directory (service log, database,
the sink's received.txt with arrival times) is kept. Bounded: every wait has a deadline; all processes it starts
are stopped at exit. Loopback only.
"""
import argparse
import asyncio
import collections
import multiprocessing
import os
import random
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import tempfile
import threading
import time

import testdns

SUBJECT = re.compile(rb"^Subject: crash-(\d+)\r?$", re.M)
BODY_LINE = b"x" * 2000 + b"\r\n"


class Sink:
    """A minimal SMTP server that records (envelope sender, message number, time) per message.

    It runs on one asyncio loop in a process of its own: its answers never wait for the load
    generator's threads (they share one GIL), and a slow 250 would widen every sender's window.
    A message counts once its DATA is complete and its 250 written."""

    def __init__(self, record_path):
        self.record_path = record_path
        self.socket = socket.socket()
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.bind(("127.0.0.1", 0))
        self.socket.listen(256)
        self.server_address = self.socket.getsockname()

    def start(self):
        proc = multiprocessing.Process(target=self._serve, daemon=True)
        proc.start()
        self.socket.close()
        return proc

    def _serve(self):
        record = open(self.record_path, "a")

        async def handle(reader, writer):
            w = writer.write
            w(b"220 sink ESMTP\r\n")
            mail_from = ""
            try:
                while True:
                    await writer.drain()
                    line = await reader.readline()
                    if not line:
                        return
                    cmd = line[:4].upper()
                    if cmd in (b"EHLO", b"HELO"):
                        w(b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                    elif cmd == b"MAIL":
                        mail_from = line.split(b":", 1)[1].strip().strip(b"<>").decode(errors="replace")
                        w(b"250 2.1.0 ok\r\n")
                    elif cmd == b"RCPT":
                        w(b"250 2.1.5 ok\r\n")
                    elif cmd == b"DATA":
                        w(b"354 go\r\n")
                        await writer.drain()
                        data = bytearray()
                        while True:
                            chunk = await reader.readline()
                            if not chunk:
                                return  # cut off before the final dot: an MTA keeps nothing
                            if chunk == b".\r\n":
                                break
                            data += chunk
                        w(b"250 2.0.0 ok\r\n")
                        await writer.drain()
                        m = SUBJECT.search(bytes(data))
                        if m:
                            record.write(f"{mail_from} {int(m.group(1))} {time.time():.4f}\n")
                            record.flush()
                    elif cmd in (b"RSET", b"NOOP"):
                        w(b"250 2.0.0 ok\r\n")
                    elif cmd == b"QUIT":
                        w(b"221 2.0.0 bye\r\n")
                        await writer.drain()
                        return
                    else:
                        w(b"502 5.5.2 no\r\n")
            except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError):
                pass  # connections cut by a killed service are expected here
            finally:
                writer.close()

        async def main():
            server = await asyncio.start_server(handle, sock=self.socket, limit=1 << 20)
            async with server:
                await server.serve_forever()

        asyncio.run(main())

    def _lines(self):
        with open(self.record_path) as f:
            return [l.split() for l in f if l.strip()]

    @property
    def got(self):
        return [(a, int(n)) for a, n, _ in self._lines()]

    @property
    def first_seen(self):
        """When each envelope sender (one delivery) was first received."""
        first = {}
        for a, _, t in self._lines():
            first.setdefault(a, float(t))
        return first


class PostfixSink:
    """Postfix's smtp-sink as the relay (`--sink postfix`): a production MTA's answer time,
    where the Python sink above lags behind the service under load and so widens the window in
    which a killed sender cannot know its message arrived. Each transaction is dumped to a file
    of its own; a message counts when its dump is whole (its body line complete), at the
    file's last write."""

    def __init__(self, work):
        self.dir = os.path.join(work, "sink")
        os.makedirs(self.dir)
        os.chmod(work, 0o755)  # smtp-sink writes as nobody when started by root
        os.chmod(self.dir, 0o777)
        self.server_address = ("127.0.0.1", free_port())

    def start(self):
        cmd = ["smtp-sink", "-d", os.path.join(self.dir, "%M."),
               f"127.0.0.1:{self.server_address[1]}", "256"]
        if os.geteuid() == 0:
            cmd[1:1] = ["-u", "nobody"]
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if not wait_port(self.server_address[1]):
            sys.exit("smtp-sink did not start")
        return proc

    def _lines(self):
        out = []
        for name in os.listdir(self.dir):
            path = os.path.join(self.dir, name)
            try:
                with open(path, "rb") as f:
                    data = f.read()
                at = os.stat(path).st_mtime
            except OSError:
                continue
            m = SUBJECT.search(data)
            sender = re.search(rb"^X-Mail-Args: <([^>]*)>", data, re.M)
            if m and sender and BODY_LINE.rstrip() in data:
                out.append((sender.group(1).decode(errors="replace"), int(m.group(1)), at))
        return sorted(out, key=lambda r: r[2])

    @property
    def got(self):
        return [(a, n) for a, n, _ in self._lines()]

    @property
    def first_seen(self):
        first = {}
        for a, _, t in self._lines():
            first.setdefault(a, t)
        return first


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_port(port, deadline=30.0):
    end = time.time() + deadline
    while time.time() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return True
        except OSError:
            time.sleep(0.05)
    return False


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--settle", type=float, default=60.0)
    ap.add_argument("--db-url", default=None, help="a PostgreSQL URL (default: SQLite)")
    ap.add_argument("--strict", action="store_true", help="fail when resends exceed one per kill")
    ap.add_argument("--sink", choices=["python", "postfix"], default="python",
                    help="the relay: this script's own sink, or Postfix's smtp-sink")
    args = ap.parse_args()

    work = tempfile.mkdtemp(prefix="postern-crash.")
    sink = Sink(os.path.join(work, "received.txt")) if args.sink == "python" else PostfixSink(work)
    sink_proc = sink.start()
    smtp_port, http_port = free_port(), free_port()
    db = f'[database]\nurl = "{args.db_url}"\n' if args.db_url else ""
    config = os.path.join(work, "postern.toml")
    with open(config, "w") as f:
        f.write(
            f'data_dir = "{work}/data"\n{db}'
            # The load generator is trusted: it sends far past the per-client limits.
            f'[smtp]\nlisten = "127.0.0.1:{smtp_port}"\ntrusted_networks = ["127.0.0.1/32"]\n'
            f'[http]\nlisten = "127.0.0.1:{http_port}"\n'
            f'[mail]\nalias_domains = ["alias.test"]\nhostname = "mx.alias.test"\n'
            f'[outbound]\nrelay = "smtp://127.0.0.1:{sink.server_address[1]}?tls=none"\n'
            f"[queue]\nretry_initial = 1\npoll_interval = 1\n"
        )
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    dns, env["POSTERN_DNS__NAMESERVERS"] = testdns.start(args.bin)
    cli = lambda *a: subprocess.run([args.bin, *a, "--config", config], env=env, check=True,
                                    capture_output=True, timeout=60)
    cli("user", "add", "me@real.test")
    cli("alias", "add", "me@real.test", "--address", "shop@alias.test")

    log = open(os.path.join(work, "service.log"), "ab")
    proc = None

    def start():
        nonlocal proc
        proc = subprocess.Popen([args.bin, "serve", "--config", config], env=env,
                                stdout=log, stderr=log)
        if not wait_port(smtp_port):
            sys.exit("the service did not start: see " + log.name)

    acked = set()
    unanswered = collections.deque()
    sent_total = [0]
    next_n = [0]
    state = threading.Lock()
    stop_load = threading.Event()

    def client():
        while not stop_load.is_set():
            with state:
                if unanswered:
                    n = unanswered.popleft()
                else:
                    n = next_n[0]
                    next_n[0] += 1
            msg = (f"From: bob@ext.test\r\nTo: shop@alias.test\r\nSubject: crash-{n}\r\n"
                   f"Message-ID: <crash-{n}@ext.test>\r\n\r\n" + BODY_LINE.decode())
            try:
                with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as s:
                    s.sendmail("bob@ext.test", ["shop@alias.test"], msg)
                with state:
                    acked.add(n)
                    sent_total[0] += 1
            except (OSError, smtplib.SMTPException):
                with state:
                    unanswered.append(n)
                time.sleep(0.05)

    kill_times = []
    start()
    threads = [threading.Thread(target=client, daemon=True) for _ in range(args.clients)]
    for t in threads:
        t.start()
    for _ in range(args.kills):
        time.sleep(random.uniform(0.3, 1.5))
        proc.send_signal(signal.SIGKILL)
        kill_times.append(time.time())
        proc.wait(timeout=10)
        start()
    time.sleep(1.0)
    stop_load.set()
    for t in threads:
        t.join(timeout=15)
    last_restart = time.time()

    deadline = last_restart + args.settle
    while time.time() < deadline:
        delivered = {n for _, n in sink.got}
        if acked <= delivered:
            break
        time.sleep(0.2)
    settled_after = time.time() - last_restart
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()

    got = sink.got
    first_seen = sink.first_seen
    sink_proc.terminate()
    delivered = {n for _, n in got}
    missing = sorted(acked - delivered)
    per_verp = collections.Counter(got)
    ours = sum(c - 1 for c in per_verp.values() if c > 1)
    per_n = collections.Counter(n for _, n in got)
    copies = sum(c - 1 for c in per_n.values() if c > 1)
    theirs = copies - ours
    print(f"kills={args.kills} acknowledged={len(acked)} delivered={len(delivered)} "
          f"missing={len(missing)} our_resends={ours} client_resends={theirs} "
          f"all_in_after_s={settled_after:.1f}")
    print(f"own resends per kill: {ours / max(args.kills, 1):.1f} (target at most 1: "
          f"{'met' if ours <= args.kills else 'not met'})")
    # A resend whose first copy the relay took in only after the kill was still on the wire
    # (the whole message written, the relay's 250 not yet back): no sender can know it
    # arrived. One taken in before the kill is the sender's own window.
    resent = [a for a, c in per_verp.items() if c > 1]
    def before_kill(sender):
        seen = first_seen.get(sender[0], 0.0)
        return min(kill_times, key=lambda k: abs(k - seen), default=seen) >= seen
    early = sum(per_verp[a] - 1 for a in resent if before_kill(a))
    print(f"of those, taken in by the relay before the kill: {early}; after it (still on the "
          f"wire when the process died): {ours - early}")
    dns.terminate()
    ok = not missing and (ours <= args.kills or not args.strict)
    if missing:
        print("missing:", missing[:20])
    if ok:
        if not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)
    else:
        print("kept for inspection:", work)
    print("crash-test: " + ("1 passed, 0 failed" if ok else "0 passed, 1 failed"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
