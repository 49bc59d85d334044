#!/usr/bin/env python3
"""Opens N TLS keep-alive connections to the gateway, makes one request on each
and keeps them open, then prints the gateway's resident memory.

usage: python3 benches/idle_connections.py HOST:PORT PATH GATEWAY_PID [N] [tls|plain]
(benches/idle.sh starts a gateway and runs this against it.)"""
import asyncio
import os
import resource
import ssl
import sys


async def main():
    target, path, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])
    n = int(sys.argv[4]) if len(sys.argv) > 4 else 10_000
    plain = len(sys.argv) > 5 and sys.argv[5] == "plain"
    host, port = target.rsplit(":", 1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, n + 1024), hard))
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    gate = asyncio.Semaphore(int(os.environ.get("IDLE_CONCURRENCY", "200")))
    conns = []

    async def one():
        async with gate:
            reader, writer = await asyncio.open_connection(host, int(port), ssl=None if plain else ctx)
            writer.write(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            await writer.drain()
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            await reader.readexactly(length)
            conns.append((reader, writer))

    def rss():
        fields = dict(l.split(":", 1) for l in open(f"/proc/{pid}/status").read().splitlines() if ":" in l)
        return fields["VmRSS"].strip(), fields["VmHWM"].strip()

    print("gateway before: VmRSS %s, VmHWM %s" % rss())
    results = await asyncio.gather(*(one() for _ in range(n)), return_exceptions=True)
    failed = sum(1 for r in results if isinstance(r, Exception))
    print(f"open keep-alive connections: {len(conns)} (failed: {failed})")
    print("gateway with them open: VmRSS %s, VmHWM %s" % rss())
    # Idle connections are parked after a quiet period (src/server/h1.rs).
    await asyncio.sleep(2)
    print("gateway with them idle 2 s: VmRSS %s, VmHWM %s" % rss())
    await asyncio.sleep(13)
    print("gateway with them idle 15 s: VmRSS %s, VmHWM %s" % rss())
    for _, w in conns:
        w.close()


asyncio.run(main())
