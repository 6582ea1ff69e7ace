#!/usr/bin/python3
"""A backend for the gateway's streaming tests, on python3-websockets' Sans-I/O layer, which hands out every frame as
it arrives (the asyncio layer would assemble messages whole). It hashes each message frame by frame, never holding it,
and answers "<length>:<sha256 hex>". It prints:

  LISTENING <port>
  FIRST <bytes>              once per message, when its first frame arrived (before the rest of the message has)
  MESSAGE <bytes> <frames>   when a message ended
  CLOSED <code> <reason>     how the connection ended (1006: no close frame)

The text message "die-mid-message" makes it send the first 200 KiB of a binary message and drop the TCP connection.
"""
import asyncio
import hashlib
import sys

from websockets.frames import OP_BINARY, OP_CONT, OP_TEXT, Frame
from websockets.http11 import Request
from websockets.server import ServerConnection


async def handle(reader, writer):
    conn = ServerConnection(max_size=None)
    digest, length, frames = hashlib.sha256(), 0, 0

    def flush():
        for data in conn.data_to_send():
            if data:
                writer.write(data)
            elif writer.can_write_eof():
                writer.write_eof()

    try:
        while True:
            data = await reader.read(256 * 1024)
            if data:
                conn.receive_data(data)
            else:
                conn.receive_eof()
            for event in conn.events_received():
                if isinstance(event, Request):
                    conn.send_response(conn.accept(event))
                elif isinstance(event, Frame) and event.opcode is OP_TEXT and event.data == b"die-mid-message":
                    conn.send_binary(bytes(200 * 1024), fin=False)
                    flush()
                    await writer.drain()
                    print("DYING", flush=True)
                    writer.transport.abort()
                    return
                elif isinstance(event, Frame) and event.opcode in (OP_BINARY, OP_CONT, OP_TEXT):
                    if frames == 0:
                        print(f"FIRST {len(event.data)}", flush=True)
                    digest.update(event.data)
                    length += len(event.data)
                    frames += 1
                    if event.fin:
                        print(f"MESSAGE {length} {frames}", flush=True)
                        conn.send_text(f"{length}:{digest.hexdigest()}".encode())
                        digest, length, frames = hashlib.sha256(), 0, 0
            flush()
            await writer.drain()
            if not data or conn.close_expected():
                break
    except ConnectionError:
        pass
    finally:
        # close_code is only set once TCP is closed too; the close frame received is what the tests check.
        received = conn.close_rcvd
        print(f"CLOSED {received.code if received else 1006} {received.reason if received else ''}".rstrip(), flush=True)
        writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    print(f"LISTENING {server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
