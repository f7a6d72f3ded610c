#!/usr/bin/env python3
"""Connect many `qemu.qmp` clients at once to one QMP server and check the fan-out.

Usage: many_clients.py SOCKET SERVER_PID CLIENTS

Every client connects and negotiates, then all ask `query-status` at once; one client runs
`stop` then `cont`, and every client must receive STOP then RESUME. The server process's
thread count (/proc/PID/task) is printed while all clients are connected. Finally one
client sends `quit`. Prints one `key value` line per check for the Rust test
`many_clients` to compare. Exits 2 when the qemu.qmp package is missing.
"""
import asyncio
import os
import sys

try:
    from qemu.qmp import QMPClient
except ImportError:
    print("MISSING qemu.qmp: pip install qemu.qmp")
    sys.exit(2)


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


async def first_events(client: QMPClient, count: int) -> list:
    names = []
    async with asyncio.timeout(20):
        while len(names) < count:
            event = await client.events.get()
            names.append(event["event"])
    return names


async def main(path: str, pid: int, n: int) -> None:
    clients = [QMPClient(f"client-{i}") for i in range(n)]
    async with asyncio.timeout(30):
        await asyncio.gather(*(c.connect(path) for c in clients))
    print("connected", n)

    statuses = await asyncio.gather(*(c.execute("query-status") for c in clients))
    print("answered", sum(1 for s in statuses if s["status"] == "running"))
    print("threads-connected", threads(pid))

    await clients[0].execute("stop")
    await clients[0].execute("cont")
    seen = await asyncio.gather(*(first_events(c, 2) for c in clients))
    print("stop-resume", sum(1 for names in seen if names == ["STOP", "RESUME"]))

    await clients[-1].execute("quit")
    for c in clients:
        try:
            await c.disconnect()
        except EOFError:
            # The server closes every connection after quit.
            pass
    print("done")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
