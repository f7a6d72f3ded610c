#!/usr/bin/env python3
"""The host side of the slow lane's CPU hot-plug boot (scripts/linux-boot hotplug).

Drives a running vmm-reference over QMP with the qemu.qmp client, in step with what the
guest's /init prints on the console (scripts/linux-initramfs, cpuhotplug=N):

  1. wait for "guest: hotplug: waiting for cpuN";
  2. device_add the free slot of socket SOCKET (driver and properties from
     query-hotpluggable-cpus, as libvirt does), check query-cpus-fast;
  3. wait for the guest to online the CPU and print what it sees;
  4. device_del it, wait for DEVICE_DELETED (sent once the guest has offlined the CPU
     and ejected the slot), check query-cpus-fast again.

Prints one "host: ..." line per observation; scripts/linux-boot checks them.

  linux-hotplug.py QMP_SOCKET CONSOLE_LOG CPU_NUMBER SOCKET [TIMEOUT_SECONDS]

Exit status: 0 when every step happened, 1 otherwise (the reason on stderr).
"""

import asyncio
import os
import sys

from qemu.qmp import QMPClient


class Failed(Exception):
    pass


async def console_line(path, text, deadline):
    """Wait until the console log holds a line containing `text`."""
    loop = asyncio.get_running_loop()
    while loop.time() < deadline:
        try:
            with open(path, "r", errors="replace") as f:
                if any(text in line for line in f):
                    return
        except FileNotFoundError:
            pass
        await asyncio.sleep(2)
    raise Failed(f"the guest never printed {text!r}")


async def connect(path, deadline):
    loop = asyncio.get_running_loop()
    qmp = QMPClient("linux-hotplug")
    while True:
        try:
            await qmp.connect(path)
            return qmp
        except Exception as e:  # the VMM may not have created the socket yet
            if loop.time() > deadline:
                raise Failed(f"cannot connect to {path}: {e}") from e
            await asyncio.sleep(1)


def describe(cpus):
    return " ".join(
        f"{c['cpu-index']}:socket{c['props']['socket-id']}/core{c['props']['core-id']}"
        f"/tid{c['thread-id']}"
        for c in sorted(cpus, key=lambda c: c["cpu-index"])
    )


async def run(sock, log, cpu, socket_id, timeout):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    qmp = await connect(sock, deadline)
    try:
        before = await qmp.execute("query-cpus-fast")
        print(f"host: before: {len(before)} vCPUs {describe(before)}", flush=True)

        await console_line(log, f"guest: hotplug: waiting for cpu{cpu}", deadline)
        slots = await qmp.execute("query-hotpluggable-cpus")
        free = [s for s in slots if "qom-path" not in s and s["props"]["socket-id"] == socket_id]
        if not free:
            raise Failed(f"no free slot in socket {socket_id}: {slots}")
        slot = min(free, key=lambda s: (s["props"].get("core-id", 0), s["props"].get("thread-id", 0)))
        dev_id = f"cpu{cpu}"
        await qmp.execute("device_add", {"driver": slot["type"], "id": dev_id, **slot["props"]})
        plugged = await qmp.execute("query-cpus-fast")
        print(f"host: device_add {dev_id} {slot['type']} {slot['props']}", flush=True)
        print(f"host: after device_add: {len(plugged)} vCPUs {describe(plugged)}", flush=True)

        # Once the guest has shown the CPU (online or not: the ejection is checked on its
        # own), take it away again.
        await console_line(log, f"guest: hotplug: waiting for the ejection of cpu{cpu}", deadline)
        with qmp.listener("DEVICE_DELETED") as listener:
            await qmp.execute("device_del", {"id": dev_id})
            print(f"host: device_del {dev_id}", flush=True)
            async for event in listener:
                if event["event"] == "DEVICE_DELETED" and event["data"].get("device") == dev_id:
                    print(f"host: DEVICE_DELETED {event['data']}", flush=True)
                    break
                if loop.time() > deadline:
                    raise Failed("no DEVICE_DELETED before the timeout")
        after = await qmp.execute("query-cpus-fast")
        print(f"host: after device_del: {len(after)} vCPUs {describe(after)}", flush=True)
    finally:
        await qmp.disconnect()


def main():
    if len(sys.argv) not in (5, 6):
        print("usage: linux-hotplug.py QMP_SOCKET CONSOLE_LOG CPU_NUMBER SOCKET [TIMEOUT]",
              file=sys.stderr)
        return 2
    sock, log, cpu, socket_id = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    timeout = float(sys.argv[5]) if len(sys.argv) == 6 else 3600.0
    try:
        asyncio.run(asyncio.wait_for(run(sock, log, cpu, socket_id, timeout), timeout + 60))
    except (Failed, asyncio.TimeoutError, OSError) as e:
        print(f"linux-hotplug: {e or 'timed out'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
