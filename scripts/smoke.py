#!/usr/bin/env python3
"""The README's walk-through, run against the real `postern` binary.

Starts `postern serve` on SQLite in a temporary directory with a small SMTP sink as its relay,
creates a user and an alias with the CLI, sends a message to the alias with smtplib, replies
through the reverse alias, and checks what the sink received. Exits non-zero on any failure.

    scripts/smoke.py [PATH/TO/postern]      (default: target/debug/postern)
"""
import os
import re
import smtplib
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading

import testdns
import time

RECEIVED = []
ARRIVED = threading.Condition()


class SinkHandler(socketserver.StreamRequestHandler):
    """Just enough SMTP to be a relay: keeps every message it is given."""

    def handle(self):
        self.wfile.write(b"220 sink ESMTP\r\n")
        mail_from, rcpts = "", []
        while True:
            line = self.rfile.readline()
            if not line:
                return
            cmd = line.decode("utf-8", "replace").strip()
            upper = cmd.upper()
            if upper.startswith(("EHLO", "HELO")):
                self.wfile.write(b"250-sink\r\n250 8BITMIME\r\n")
            elif upper.startswith("MAIL FROM:"):
                mail_from, rcpts = cmd[10:].strip("<> "), []
                self.wfile.write(b"250 2.1.0 ok\r\n")
            elif upper.startswith("RCPT TO:"):
                rcpts.append(cmd[8:].strip("<> "))
                self.wfile.write(b"250 2.1.5 ok\r\n")
            elif upper == "DATA":
                self.wfile.write(b"354 go\r\n")
                data = b""
                while True:
                    chunk = self.rfile.readline()
                    if chunk in (b".\r\n", b""):
                        break
                    data += chunk[1:] if chunk.startswith(b"..") else chunk
                with ARRIVED:
                    RECEIVED.append((mail_from, rcpts, data.decode("utf-8", "replace")))
                    ARRIVED.notify_all()
                self.wfile.write(b"250 2.0.0 queued\r\n")
            elif upper == "QUIT":
                self.wfile.write(b"221 2.0.0 bye\r\n")
                return
            else:
                self.wfile.write(b"250 2.0.0 ok\r\n")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(n, timeout=30):
    with ARRIVED:
        if not ARRIVED.wait_for(lambda: len(RECEIVED) >= n, timeout):
            sys.exit(f"smoke: expected {n} message(s) at the sink, got {len(RECEIVED)}")


def main():
    binary = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else "target/debug/postern")
    sink = socketserver.ThreadingTCPServer(("127.0.0.1", 0), SinkHandler)
    sink.daemon_threads = True
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    smtp_port, http_port = free_port(), free_port()
    work = tempfile.mkdtemp(prefix="postern-smoke-")
    env = dict(os.environ)
    dns, nameserver = testdns.start(binary)
    env.update({
        "POSTERN_DNS__NAMESERVERS": nameserver,
        "POSTERN_MAIL__ALIAS_DOMAINS": "alias.test",
        "POSTERN_OUTBOUND__RELAY": f"smtp://127.0.0.1:{sink.server_address[1]}?tls=none",
        "POSTERN_SMTP__LISTEN": f"127.0.0.1:{smtp_port}",
        "POSTERN_HTTP__LISTEN": f"127.0.0.1:{http_port}",
    })

    def cli(*args):
        out = subprocess.run([binary, *args], cwd=work, env=env, capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"smoke: postern {' '.join(args)} failed:\n{out.stderr}")
        return out.stdout.strip().splitlines()[-1]

    server = subprocess.Popen([binary, "serve"], cwd=work, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while True:
            try:
                socket.create_connection(("127.0.0.1", smtp_port), timeout=1).close()
                break
            except OSError:
                if server.poll() is not None or time.time() > deadline:
                    sys.exit("smoke: postern serve did not start:\n" + server.stderr.read().decode())
                time.sleep(0.2)

        api_key = cli("user", "add", "me@real.test")
        assert re.fullmatch(r"[a-z0-9]{40,}", api_key), api_key
        alias = cli("alias", "add", "me@real.test", "--address", "shop@alias.test")
        assert alias == "shop@alias.test", alias

        with smtplib.SMTP("127.0.0.1", smtp_port) as s:
            s.sendmail("bob@ext.test", [alias],
                       "From: Bob <bob@ext.test>\r\nTo: shop@alias.test\r\nSubject: hi\r\n\r\nHello!\r\n")
        wait_for(1)
        _, rcpts, forwarded = RECEIVED[0]
        assert rcpts == ["me@real.test"], rcpts
        reverse = re.search(r"From: \"Bob - bob at ext.test\"\s*<([^>]+@alias.test)>", forwarded)
        assert reverse, forwarded
        reverse = reverse.group(1)

        with smtplib.SMTP("127.0.0.1", smtp_port) as s:
            s.sendmail("me@real.test", [reverse],
                       f"From: me@real.test\r\nTo: {reverse}\r\nSubject: Re: hi\r\n\r\nHi Bob\r\n")
        wait_for(2)
        _, rcpts, reply = RECEIVED[1]
        assert rcpts == ["bob@ext.test"], rcpts
        assert "From: <shop@alias.test>" in reply, reply
        assert "real.test" not in reply, reply

        try:
            with smtplib.SMTP("127.0.0.1", smtp_port) as s:
                s.sendmail("bob@ext.test", ["victim@elsewhere.test"], "Subject: relay?\r\n\r\nx\r\n")
            sys.exit("smoke: relaying to a foreign domain was accepted")
        except smtplib.SMTPRecipientsRefused as e:
            code, text = e.recipients["victim@elsewhere.test"]
            assert code == 550 and text.startswith(b"5.7.1"), (code, text)
        print("smoke: 3 passed, 0 failed")  # forward, reply, relay refused
    finally:
        server.terminate()
        server.wait(timeout=30)
        sink.shutdown()
        dns.terminate()


if __name__ == "__main__":
    main()
