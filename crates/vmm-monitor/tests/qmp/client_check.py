#!/usr/bin/env python3
"""Drive a vmm-monitor QMP server with the stock `qemu.qmp` client.

Usage: client_check.py SOCKET

Prints one line per check; the Rust test `server::qemu_qmp_python_client_end_to_end`
compares them. Exits 2 when the qemu.qmp package is missing.
"""
import asyncio
import json
import sys

try:
    from qemu.qmp import ExecuteError, QMPClient
except ImportError:
    print("MISSING qemu.qmp: pip install qemu.qmp")
    sys.exit(2)


async def main(path: str) -> None:
    qmp = QMPClient("vmm-monitor-check")
    await qmp.connect(path)  # reads the greeting and negotiates capabilities
    print("greeting", json.dumps(qmp.greeting.QMP.version["qemu"], sort_keys=True))

    status = await qmp.execute("query-status")
    print("query-status", json.dumps(status, sort_keys=True))

    cpus = await qmp.execute("query-cpus-fast")
    print("query-cpus-fast", json.dumps(
        [(c["cpu-index"], c["qom-path"], c["thread-id"], c["target"]) for c in cpus]))

    text = await qmp.execute("human-monitor-command", {"command-line": "info cpus"})
    print("info-cpus", json.dumps(text))

    try:
        await qmp.execute("no-such-command")
        print("bad-command NO ERROR")
    except ExecuteError as err:
        print("bad-command", err.error_class, json.dumps(err.error.error.desc))

    async with asyncio.timeout(5):
        await qmp.execute("stop")
        async for event in qmp.events:
            print("event", event["event"], "timestamp" in event)
            break

    await qmp.execute("quit")
    try:
        await qmp.disconnect()
    except EOFError:
        # The server closes every connection after quit, as QEMU does when it exits;
        # qemu.qmp reports that EOF when it saw it before disconnect().
        pass
    print("done")


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
