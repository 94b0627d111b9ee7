#!/usr/bin/env python3
"""Memory with many idle connections, and memory under a steady load over time.

    scripts/connections-test.py BIN [--connections 1000] [--soak 600] [--rate 100] [--skip-idle]

Runs `BIN serve` on loopback with a throwaway data directory, a user, an alias and a small SMTP
sink of its own as the relay (crash-test.py's Sink), and measures two targets:

Idle connections: CONNECTIONS clients, each from its own source address in 127.1.0.0/16 (Linux
routes all of 127/8 to lo; these clients are not trusted, so each stays under the per-client
limits by being alone on its address), connect, read the 220 greeting, send EHLO, then stay open
sending NOOP every NOOP_EVERY seconds (well under `smtp.command_timeout`, 300 s) for HOLD
seconds. Reports the service's RSS before, once all are open and settled, its peak while they
are held, after they quit, and the cost per connection. Passes when the peak is under 100 MiB
and every client got its greeting, its 250 to EHLO and a 250 to each NOOP.

Soak: a fresh service, SOAK seconds of 4 KiB messages to the alias at RATE messages per second
in all (CLIENTS clients, a few messages per connection, from the trusted 127.0.0.1), forwarded
to the sink. RSS is sampled every 2 s. Passes when RSS at the end is within 10% of RSS after the
first minute (or after 10% of the soak, if that is sooner) and every acknowledged message
reaches the sink within 60 s after the load stops.

With KEEP=1 the work directory (service logs, database, the sink's received.txt, the soak's RSS
samples in soak-rss.txt) is kept; it is kept anyway when a check fails. Bounded: every wait has a
deadline; all processes it starts are stopped at exit. Loopback only.
"""
import argparse
import asyncio
import collections
import importlib.util
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("crash_test", os.path.join(HERE, "crash-test.py"))
crash_test = importlib.util.module_from_spec(spec)
spec.loader.exec_module(crash_test)

NOOP_EVERY = 20.0      # seconds between a held connection's NOOPs
HOLD = 45.0            # seconds all connections are held open (two NOOPs each at least)
CLIENTS = 8            # soak clients
PER_CONNECTION = 5     # soak messages per connection
REPLY_TIMEOUT = 30.0
MIB = 1024 * 1024


def mib(b):
    return f"{b / MIB:.1f} MiB"


async def read_reply(reader):
    """The code of the next (possibly multi-line) reply."""
    while True:
        line = await asyncio.wait_for(reader.readline(), REPLY_TIMEOUT)
        if not line:
            raise ConnectionError("closed by the server")
        if line[3:4] != b"-":
            return int(line[:3])


async def command(reader, writer, line):
    writer.write(line + b"\r\n")
    await writer.drain()
    return await read_reply(reader)


class Service:
    """`BIN serve` with its output in a log of its own; one per measurement."""

    def __init__(self, args, config, env, port, log_path):
        self.log_path = log_path
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen([args.bin, "serve", "--config", config], env=env,
                                         stdout=log, stderr=log)
        if not crash_test.wait_port(port):
            self.stop()
            sys.exit("connections-test: the service did not start: see " + log_path)
        time.sleep(1.0)  # let start-up work (migrations, first queue poll) settle

    def rss(self, field="VmRSS"):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return next(int(l.split()[1]) * 1024 for l in f if l.startswith(field + ":"))

    def fds(self):
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)


async def idle_part(service, port, n, results):
    failures = collections.Counter()
    ready, stop = [0], asyncio.Event()
    connecting = asyncio.Semaphore(100)  # not more SYNs at once than the listen backlog takes

    async def client(i):
        ip = f"127.1.{i // 250}.{i % 250 + 1}"
        writer, stage = None, "connect"
        try:
            async with connecting:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port, local_addr=(ip, 0)), REPLY_TIMEOUT)
                stage = "greeting"
                if await read_reply(reader) != 220:
                    return failures.update([stage])
                stage = "EHLO"
                if await command(reader, writer, b"EHLO client.test") != 250:
                    return failures.update([stage])
            ready[0] += 1
            stage, noops, delay = "NOOP", 0, random.uniform(1.0, NOOP_EVERY)
            while True:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    break
                except asyncio.TimeoutError:
                    pass
                if await command(reader, writer, b"NOOP") != 250:
                    return failures.update([stage])
                noops, delay = noops + 1, NOOP_EVERY
            if noops < 2:  # at least one NOOP answered after all were open
                return failures.update(["too few NOOPs"])
            stage = "QUIT"
            await command(reader, writer, b"QUIT")
        except (OSError, asyncio.TimeoutError, ConnectionError, ValueError) as e:
            failures.update([f"{stage}: {type(e).__name__}"])
        finally:
            if writer:
                writer.close()

    before = service.rss()
    started = time.time()
    tasks = [asyncio.create_task(client(i)) for i in range(n)]
    while ready[0] + sum(failures.values()) < n and time.time() - started < 120:
        await asyncio.sleep(0.2)
    opened_in = time.time() - started
    await asyncio.sleep(5.0)  # settle
    open_rss, fds = service.rss(), service.fds()
    hold_end = time.time() + HOLD
    while time.time() < hold_end:
        await asyncio.sleep(2.0)
    stop.set()
    peak_rss = service.rss("VmHWM")
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    await asyncio.sleep(2.0)
    after = service.rss()
    per_conn = (open_rss - before) / max(ready[0], 1) / 1024
    print(f"idle: connections={n} greeted={ready[0]} opened_in_s={opened_in:.1f} "
          f"service_fds={fds} failures={dict(failures) or 0}")
    results += [
        ("idle RSS before", mib(before), "", None),
        (f"idle RSS, {n} open", mib(open_rss), "< 100 MiB", open_rss < 100 * MIB),
        ("idle RSS peak (VmHWM)", mib(peak_rss), "< 100 MiB", peak_rss < 100 * MIB),
        ("idle cost per connection", f"{per_conn:.1f} KiB", "", None),
        ("idle RSS after all quit", mib(after), "", None),
        ("idle connections failed", str(sum(failures.values())), "0", not failures),
    ]


def message(n):
    head = (f"From: Bob <bob@ext.test>\r\nTo: shop@alias.test\r\nSubject: crash-{n}\r\n"
            f"Date: Sun, 22 Nov 2026 10:00:00 +0000\r\nMessage-ID: <soak-{n}@ext.test>\r\n\r\n")
    line = "soak " + "abcdefghij" * 7 + "\r\n"
    body = line * ((4096 - len(head)) // len(line))
    return (head + body).encode() + b".\r\n"


async def soak_part(service, port, sink, seconds, rate, results, samples_path):
    acked, counts, samples = set(), collections.Counter(), []
    t0 = time.time() + 0.5
    end = t0 + seconds
    next_n = [0]

    async def client():
        done = False
        while not done and time.time() < end:
            writer = None
            try:
                reader, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", port), REPLY_TIMEOUT)
                if await read_reply(reader) != 220 or \
                        await command(reader, writer, b"EHLO load.test") != 250:
                    raise ConnectionError("refused")
                for _ in range(PER_CONNECTION):
                    n, next_n[0] = next_n[0], next_n[0] + 1
                    at = t0 + n / rate
                    if at >= end:
                        done = True
                        break
                    await asyncio.sleep(at - time.time())
                    counts["sent"] += 1
                    if (await command(reader, writer, b"MAIL FROM:<bob@ext.test>") != 250 or
                            await command(reader, writer, b"RCPT TO:<shop@alias.test>") != 250 or
                            await command(reader, writer, b"DATA") != 354):
                        counts["refused"] += 1
                        await command(reader, writer, b"RSET")
                        continue
                    writer.write(message(n))
                    if await read_reply(reader) == 250:
                        acked.add(n)
                    else:
                        counts["refused"] += 1
                await command(reader, writer, b"QUIT")
            except (OSError, asyncio.TimeoutError, ConnectionError, ValueError):
                counts["errors"] += 1
                await asyncio.sleep(0.1)
            finally:
                if writer:
                    writer.close()

    tasks = [asyncio.create_task(client()) for _ in range(CLIENTS)]
    while time.time() < end:
        await asyncio.sleep(2.0)
        samples.append((time.time() - t0, service.rss(), service.rss("RssAnon"),
                        service.rss("RssFile") + service.rss("RssShmem")))
        if len(samples) % 15 == 0:
            print(f"soak: t={samples[-1][0]:.0f}s rss={mib(samples[-1][1])} "
                  f"anon={mib(samples[-1][2])} "
                  f"acked={len(acked)} received={len(sink.got)}", flush=True)
    await asyncio.wait_for(asyncio.gather(*tasks), 60)
    load_end = time.time()
    end_rss, peak = service.rss(), service.rss("VmHWM")
    with open(samples_path, "w") as f:
        # seconds, then KiB: RSS, its anonymous part, its file and shared part
        f.writelines(f"{t:.1f} {r // 1024} {a // 1024} {m // 1024}\n" for t, r, a, m in samples)
    delivered = set()
    while time.time() < load_end + 60:
        delivered = {n for _, n in sink.got}
        if acked <= delivered:
            break
        await asyncio.sleep(0.5)
    drained_in = time.time() - load_end
    ref_at = min(60.0, seconds / 10)
    ref = next((r for t, r, *_ in samples if t >= ref_at), samples[0][1])
    ratio = end_rss / ref
    missing = sorted(acked - delivered)
    print(f"soak: seconds={seconds:.0f} rate={rate:.0f}/s achieved={len(acked) / seconds:.1f}/s "
          f"refused={counts['refused']} connection_errors={counts['errors']} "
          f"all_in_after_s={drained_in:.1f}")
    if missing:
        print("soak: missing:", missing[:20])
    results += [
        (f"soak RSS after {ref_at:.0f} s", mib(ref), "", None),
        ("soak RSS at end", mib(end_rss), "", None),
        ("soak RSS end / start", f"{ratio:.3f}", "<= 1.10", ratio <= 1.10),
        ("soak RSS peak (VmHWM)", mib(peak), "", None),
        ("soak sent / acked / received", f"{counts['sent']} / {len(acked)} / {len(delivered)}",
         "", None),
        ("soak acked, not received in 60 s", str(len(missing)), "0", not missing),
    ]


def log_problems(path):
    with open(path, errors="replace") as f:
        lines = [l.rstrip() for l in f if "WARN" in l or "ERROR" in l]
    return len(lines), lines[:5]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("bin")
    ap.add_argument("--connections", type=int, default=1000)
    ap.add_argument("--soak", type=float, default=600.0, help="seconds (0: no soak)")
    ap.add_argument("--rate", type=float, default=100.0, help="soak messages per second")
    ap.add_argument("--skip-idle", action="store_true")
    args = ap.parse_args()

    # Enough descriptors for the clients' sockets and the service's: the service does not raise
    # its own limit, it inherits this one.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(2 * args.connections + 1024, hard if hard != resource.RLIM_INFINITY else 1 << 20)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    work = tempfile.mkdtemp(prefix="postern-connections.")
    sink = crash_test.Sink(os.path.join(work, "received.txt"))
    sink_proc = sink.start()
    dns, nameserver = crash_test.testdns.start(args.bin)
    smtp_port, http_port = crash_test.free_port(), crash_test.free_port()
    config = os.path.join(work, "postern.toml")
    with open(config, "w") as f:
        f.write(
            f'data_dir = "{work}/data"\n'
            # Only the soak's load generator is trusted; the idle clients are one per address.
            f'[smtp]\nlisten = "127.0.0.1:{smtp_port}"\ntrusted_networks = ["127.0.0.1/32"]\n'
            f"max_connections = {args.connections + 100}\n"
            f'[http]\nlisten = "127.0.0.1:{http_port}"\n'
            f'[mail]\nalias_domains = ["alias.test"]\nhostname = "mx.alias.test"\n'
            f'[outbound]\nrelay = "smtp://127.0.0.1:{sink.server_address[1]}?tls=none"\n'
            f'[dns]\nnameservers = ["{nameserver}"]\n'
        )
    env = dict(os.environ)
    env.setdefault("RUST_LOG", "warn")
    results, services, ok = [], [], False
    try:
        for a in (("user", "add", "me@real.test"),
                  ("alias", "add", "me@real.test", "--address", "shop@alias.test")):
            subprocess.run([args.bin, *a, "--config", config], env=env, check=True,
                           capture_output=True, timeout=60)
        if not args.skip_idle:
            services.append(Service(args, config, env, smtp_port, f"{work}/idle.log"))
            asyncio.run(idle_part(services[-1], smtp_port, args.connections, results))
            services[-1].stop()
        if args.soak > 0:
            services.append(Service(args, config, env, smtp_port, f"{work}/soak.log"))
            asyncio.run(soak_part(services[-1], smtp_port, sink, args.soak, args.rate, results,
                                  f"{work}/soak-rss.txt"))
            services[-1].stop()
        for s in services:
            count, first = log_problems(s.log_path)
            results.append((f"{os.path.basename(s.log_path)} warnings/errors", str(count), "", None))
            for line in first:
                print(f"  {os.path.basename(s.log_path)}: {line}")
        print(f"\n{'measurement':<34} {'value':>20}  {'target':<10} result")
        for name, value, target, passed in results:
            verdict = "" if passed is None else ("ok" if passed else "FAIL")
            print(f"{name:<34} {value:>20}  {target:<10} {verdict}")
        ok = bool(results) and all(p is not False for *_, p in results)
    finally:
        for s in services:
            s.stop()
        sink_proc.terminate()
        dns.terminate()
        if ok and not os.environ.get("KEEP"):
            shutil.rmtree(work, ignore_errors=True)
        else:
            print("work directory kept:", work)
    print("connections-test: " + ("1 passed, 0 failed" if ok else "0 passed, 1 failed"))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
