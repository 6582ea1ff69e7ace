#!/usr/bin/python3
"""A WebSocket peer written with python3-websockets (Debian), for Sluice's interop tests.

  peer.py server                 listen on 127.0.0.1 (free port); print "LISTENING <port>"
  peer.py client URL SCENARIO    run a scenario against URL; print "OK <details>" or exit 1

Server behaviour depends on the request path (see handler()). Client scenarios: sizes, order,
fragmented, close, subprotocol.
"""
import asyncio
import json
import os
import sys

import websockets

MAX = 4 * 1024 * 1024


async def handler(ws, path=None):
    path = path or getattr(ws, "path", "/")
    if path.startswith("/headers"):
        await ws.send(json.dumps({"path": path, "headers": {k.lower(): v for k, v in ws.request_headers.raw_items()},
                                  "subprotocol": ws.subprotocol,
                                  "extensions": [type(e).__name__ for e in ws.extensions]}))
    if path.startswith("/hello"):
        await ws.send("hello")
    if path.startswith("/flood"):
        chunk = os.urandom(64 * 1024)
        while True:
            await ws.send(chunk)
    try:
        await relay(ws, path)
    finally:
        # The tests read how each connection ended, as this side saw it.
        print(f"CLOSED {path} {ws.close_code} {ws.close_reason or ''}".rstrip(), flush=True)


async def relay(ws, path):
    async for message in ws:
        if path.startswith("/close/"):
            code = int(path.split("/")[2])
            await ws.close(code, f"backend-{code}")
            return
        if path.startswith("/die"):
            ws.transport.abort()
            return
        await ws.send(message)


async def serve():
    compression = "deflate" if os.environ.get("PEER_DEFLATE") == "1" else None
    async with websockets.serve(handler, "127.0.0.1", 0, max_size=MAX, subprotocols=["chat.v2", "chat.v1"],
                                compression=compression, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"LISTENING {port}", flush=True)
        await asyncio.Future()


def fail(message):
    print(f"FAIL {message}", flush=True)
    sys.exit(1)


async def expect_echo(ws, message):
    await ws.send(message)
    echoed = await asyncio.wait_for(ws.recv(), 10)
    if type(echoed) is not type(message) or echoed != message:
        fail(f"echo mismatch for a {type(message).__name__} of {len(message)}")


async def client(url, scenario):
    protocols = ["chat.v1"] if scenario == "subprotocol" else None
    compression = "deflate" if scenario.endswith("-deflate") else None
    async with websockets.connect(url, max_size=MAX, compression=compression, subprotocols=protocols, ping_interval=None) as ws:
        if scenario == "sizes":
            for size in (0, 125, 126, 65535, 65536, 1024 * 1024):
                await expect_echo(ws, os.urandom(size))
                await expect_echo(ws, "a" * size)
            await expect_echo(ws, "héllo wörld ✓ 🎉 " * 1000)
            print("OK sizes", flush=True)
        elif scenario == "order":
            for i in range(1000):
                await ws.send(f"{i:04d}")
            for i in range(1000):
                got = await asyncio.wait_for(ws.recv(), 10)
                if got != f"{i:04d}":
                    fail(f"message {i} arrived as {got}")
            print("OK order", flush=True)
        elif scenario == "fragmented":
            parts = ["frag-", "ment-", "ed ✓", ""]
            await ws.send(iter(parts))
            got = await asyncio.wait_for(ws.recv(), 10)
            if got != "".join(parts):
                fail(f"fragmented echo was {got!r}")
            await ws.send(iter([b"\x00\x01", b"\x02" * 70000]))
            got = await asyncio.wait_for(ws.recv(), 10)
            if got != b"\x00\x01" + b"\x02" * 70000:
                fail("fragmented binary echo mismatch")
            print("OK fragmented", flush=True)
        elif scenario == "close":
            await ws.close(4000, "python-bye")
            print(f"OK close {ws.close_code} {ws.close_reason}", flush=True)
        elif scenario in ("over-limit", "over-limit-deflate"):
            # 2 MiB in 64 KiB fragments, past any limit the tests set: the server's close code must arrive.
            data = os.urandom(2 * 1024 * 1024)
            try:
                await ws.send(data[i:i + 65536] for i in range(0, len(data), 65536))
                await asyncio.wait_for(ws.recv(), 10)
                fail("the message over the limit was echoed")
            except websockets.ConnectionClosed as closed:
                if closed.rcvd is None:
                    fail("the connection ended without a close frame from the server")
                print(f"OK over-limit {closed.rcvd.code}", flush=True)
        elif scenario == "subprotocol":
            print(f"OK subprotocol {ws.subprotocol}", flush=True)
        else:
            fail(f"unknown scenario {scenario}")


if __name__ == "__main__":
    if sys.argv[1] == "server":
        asyncio.run(serve())
    else:
        asyncio.run(client(sys.argv[2], sys.argv[3]))
