"""A local SMTP sink that accepts everything, for the send benchmark: its own process, asyncio, one port.

    python bench/sink.py [--port 0]        # prints "READY <port>", serves until stdin closes or SIGTERM

    from bench.sink import Sink
    with Sink() as sink:                     # starts `python bench/sink.py` in a child process
        ... send to 127.0.0.1:sink.port ...
        stats = sink.stats()                 # messages, octets, connections, first and last arrival
        sink.reset()                         # all of them back to zero, for the next run

What a fast relay does on the wire, nothing more: a 220 greeting, EHLO with PIPELINING, 8BITMIME,
SMTPUTF8, SIZE and ENHANCEDSTATUSCODES, 250 to every MAIL and RCPT, 354 to DATA, the content read line by
line to the final dot (dot-unstuffed, counted, then dropped), "250 2.0.0 Ok: queued as N", RSET, NOOP,
QUIT. It writes no queue file and fsyncs nothing, so it answers faster than any real MTA: the client's
own cost per mail weighs as much as it can in a comparison. Two extra commands: ``XSTAT`` answers
"250 <messages> <octets> <connections> <first> <last>" so that a benchmark can check that every mail
arrived and when (``time.time()`` of the sink's machine when the first and the last message's final dot
was read, 0 before any); ``XRSET`` sets them all back to zero.

A separate process so that on a small machine the server does not share the client's interpreter (and
its GIL): both sides of a comparison talk to the same sink, each over its own connection.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType
from typing import NamedTuple

HOST = "127.0.0.1"
MAX_LINE = 1 << 20  # a line longer than this is a broken client, not a mail


class _Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.messages = 0
        self.octets = 0
        self.connections = 0
        self.first = 0.0  # time.time() at the first message's final dot; 0 before any
        self.last = 0.0


class SinkStats(NamedTuple):
    """What the sink received since it started or was last reset."""

    messages: int
    octets: int
    connections: int  # SMTP sessions, not counting the ones that asked for these figures
    first: float  # time.time() when the first message was complete (its final dot read); 0.0 before any
    last: float


async def _session(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, stats: _Stats) -> None:
    stats.connections += 1
    control = False  # a benchmark asking (XSTAT, XRSET): not counted as a connection
    write = writer.write
    readline = reader.readline
    write(b"220 sink.bench.test ESMTP ready\r\n")
    try:
        while True:
            await writer.drain()
            line = await readline()
            if not line:
                return
            verb = line[:4].upper()
            if verb == b"MAIL":
                write(b"250 2.1.0 Ok\r\n")
            elif verb == b"RCPT":
                write(b"250 2.1.5 Ok\r\n")
            elif verb == b"DATA":
                write(b"354 End data with <CR><LF>.<CR><LF>\r\n")
                await writer.drain()
                octets = 0
                while True:
                    chunk = await readline()
                    if not chunk:
                        return
                    if chunk == b".\r\n":
                        break
                    octets += len(chunk) - (1 if chunk[:1] == b"." else 0)
                stats.last = time.time()
                if not stats.messages:
                    stats.first = stats.last
                stats.messages += 1
                stats.octets += octets
                write(b"250 2.0.0 Ok: queued as %d\r\n" % stats.messages)
            elif verb == b"EHLO":
                write(b"250-sink.bench.test\r\n250-PIPELINING\r\n250-SIZE 52428800\r\n250-8BITMIME\r\n"
                      b"250-SMTPUTF8\r\n250 ENHANCEDSTATUSCODES\r\n")
            elif verb == b"HELO":
                write(b"250 sink.bench.test\r\n")
            elif verb in (b"RSET", b"NOOP"):
                write(b"250 2.0.0 Ok\r\n")
            elif verb == b"QUIT":
                write(b"221 2.0.0 Bye\r\n")
                await writer.drain()
                return
            elif verb == b"XSTA":
                if not control:
                    control = True
                    stats.connections -= 1
                write(b"250 %d %d %d %.6f %.6f\r\n" % (stats.messages, stats.octets, stats.connections, stats.first,
                                                    stats.last))
            elif verb == b"XRSE":
                stats.reset()
                control = True
                write(b"250 2.0.0 Ok\r\n")
            else:
                write(b"502 5.5.2 Command not recognized\r\n")
    except (ConnectionError, asyncio.LimitOverrunError, ValueError, asyncio.CancelledError):
        return  # a broken client, or the sink stopping with the connection still open
    finally:
        writer.close()


async def _serve(port: int) -> None:
    stats = _Stats()
    server = await asyncio.start_server(lambda r, w: _session(r, w, stats), HOST, port, limit=MAX_LINE)
    bound = server.sockets[0].getsockname()[1]
    print(f"READY {bound}", flush=True)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    # The parent holds our stdin: when it goes (even killed), so do we.
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not os.read(sys.stdin.fileno(), 4096) else None)
    async with server:
        await stop.wait()


class Sink:
    """``bench/sink.py`` in a child process, on a free port of 127.0.0.1."""

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0

    def start(self) -> Sink:
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--port", "0"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().decode().split()
        if len(line) != 2 or line[0] != "READY":
            self.stop()
            raise RuntimeError(f"the SMTP sink did not start: {line!r}")
        self.port = int(line[1])
        return self

    @property
    def host(self) -> str:
        return HOST

    def _command(self, command: bytes) -> list[bytes]:
        with socket.create_connection((HOST, self.port), timeout=10) as conn:
            stream = conn.makefile("rb")
            stream.readline()
            conn.sendall(command + b"\r\n")
            reply = stream.readline().split()
            conn.sendall(b"QUIT\r\n")
            stream.readline()
        return reply

    def stats(self) -> SinkStats:
        """What arrived since the sink started or was last reset."""
        reply = self._command(b"XSTAT")
        messages, octets, connections = (int(x) for x in reply[1:4])
        return SinkStats(messages, octets, connections, float(reply[4]), float(reply[5]))

    def reset(self) -> None:
        """Counters and arrival times back to zero (between two runs of a benchmark)."""
        reply = self._command(b"XRSET")
        if reply[:1] != [b"250"]:
            raise RuntimeError(f"the SMTP sink refused XRSET: {reply!r}")

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.stdin is not None:
            process.stdin.close()  # the sink's signal to stop
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()

    def __enter__(self) -> Sink:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0 (the default): a free port")
    args = parser.parse_args()
    asyncio.run(_serve(args.port))


if __name__ == "__main__":
    main()
