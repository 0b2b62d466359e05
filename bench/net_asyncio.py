#!/usr/bin/env python3
"""The echo servers of bench/net.ts, in CPython's asyncio (or uvloop).

    python3 bench/net_asyncio.py --serve streams            # asyncio streams
    python3 bench/net_asyncio.py --serve protocol --uvloop  # uvloop protocol

Listens on 127.0.0.1 on a free port, prints the port on stdout, and echoes
until stdin closes (bench/net.ts closes it, or kills the process). The two
servers match net.ts's: "streams" reads up to 64 KiB with reader.read(),
writes it back and drains; "protocol" writes back in data_received.
"""

import asyncio
import sys


async def echo_streams(reader, writer):
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except ConnectionError:
        pass
    writer.close()


class EchoProtocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def main(kind):
    loop = asyncio.get_running_loop()
    if kind == "streams":
        server = await asyncio.start_server(echo_streams, "127.0.0.1", 0)
    else:
        server = await loop.create_server(EchoProtocol, "127.0.0.1", 0)
    print(server.sockets[0].getsockname()[1], flush=True)
    # Serve until stdin reaches its end: the bench is done with us.
    await loop.run_in_executor(None, sys.stdin.read)
    server.close()


if __name__ == "__main__":
    kind = sys.argv[sys.argv.index("--serve") + 1]
    if "--uvloop" in sys.argv:
        import uvloop

        uvloop.install()
    asyncio.run(main(kind))
