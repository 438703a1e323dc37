#!/usr/bin/env python3
"""A TCP proxy that delays every chunk the client sends by DELAY_MS before forwarding it: one
HTTP request then pays one extra round trip, as on a long link. Counts the requests it saw
(chunks starting with an HTTP method) and prints the count to COUNT_FILE on SIGTERM.
Usage: latency-proxy.py LISTEN_PORT UPSTREAM_PORT DELAY_MS COUNT_FILE"""
import asyncio, signal, sys

listen, upstream, delay_ms, count_file = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
requests = 0
METHODS = (b"GET ", b"PUT ", b"POST ", b"HEAD ", b"DELETE ")


async def pipe(reader, writer, delay):
    global requests
    try:
        while True:
            data = await reader.read(65536)
            if not data:
                break
            if delay:
                if data.startswith(METHODS):
                    requests += 1
                await asyncio.sleep(delay)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        try:
            writer.close()
        except Exception:
            pass


async def handle(cr, cw):
    try:
        ur, uw = await asyncio.open_connection("127.0.0.1", upstream)
    except OSError:
        cw.close()
        return
    await asyncio.gather(pipe(cr, uw, delay_ms / 1000.0), pipe(ur, cw, 0))


def done(*_):
    with open(count_file, "w") as f:
        f.write(str(requests))
    sys.exit(0)


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, done)
    async with server:
        await server.serve_forever()


asyncio.run(main())
