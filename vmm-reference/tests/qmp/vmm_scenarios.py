"""QMP scenarios against the real vmm-reference, driven by QEMU's own client (qemu.qmp).

usage: vmm_scenarios.py SCENARIO SOCKET VMM_PID LAYOUT_JSON
The layout (addresses of the probe guest's data in guest memory) comes from the Rust test,
which takes it from probe_guest::abi, so the two cannot drift. Exits non-zero on failure.
"""
import asyncio
import json
import os
import sys

from qemu.qmp import ExecuteError, QMPClient


def task_comm(pid, tid):
    with open(f"/proc/{pid}/task/{tid}/comm") as f:
        return f.read().strip()


def counts(pid):
    return len(os.listdir(f"/proc/{pid}/task")), len(os.listdir(f"/proc/{pid}/fd"))


class Vm:
    def __init__(self, client, pid, layout):
        self.c, self.pid, self.l = client, pid, layout

    async def hmp(self, line):
        return await self.c.execute("human-monitor-command", {"command-line": line})

    async def read_u64(self, gpa):
        # `xp /1gx ADDR` prints "ADDR: 0xVALUE".
        return int((await self.hmp(f"xp /1gx {gpa:#x}")).split(":")[1].split()[0], 16)

    async def read_u32(self, gpa):
        return int((await self.hmp(f"xp /1wx {gpa:#x}")).split(":")[1].split()[0], 16)

    def area(self, index):
        return self.l["vcpu_areas"] + index * self.l["vcpu_area_size"]

    async def progress(self, index):
        return await self.read_u64(self.area(index) + self.l["progress"])

    async def cpus(self):
        return await self.c.execute("query-cpus-fast")

    async def reported_x2apic_id(self, index):
        """The x2APIC id the probe on vCPU `index` read from its own CPUID leaf 0xB."""
        count = await self.read_u32(self.area(index) + self.l["count"])
        assert count > 0, f"vCPU {index} has not reported"
        queries = await self.read_u32(self.l["control"] + self.l["query_count"])
        for k in range(queries):
            leaf = await self.read_u32(self.l["query_list"] + 8 * k)
            sub = await self.read_u32(self.l["query_list"] + 8 * k + 4)
            if (leaf, sub) == (0xB, 0):
                return await self.read_u32(self.area(index) + self.l["results"] + 16 * k + 12)
        raise AssertionError("leaf 0xB is not among the probe's queries")

    async def wait_halted(self, index):
        for _ in range(200):
            text = await self.hmp("info cpus")
            line = [l for l in text.splitlines() if f"CPU #{index}:" in l]
            if line and "(halted)" in line[0]:
                return
            await asyncio.sleep(0.02)
        raise AssertionError(f"vCPU {index} never finished its probe:\n{text}")

    async def plug(self, index, socket, core, dev_id):
        await self.c.execute("device_add", {"driver": "qemu64-x86_64-cpu", "id": dev_id,
                                            "socket-id": socket, "core-id": core, "thread-id": 0})


async def basic(vm):
    """Thread ids equal to the real vCPU threads; stop/cont stop and restart CPL3 spins."""
    status = await vm.c.execute("query-status")
    assert status["status"] == "running", status
    cpus = await vm.cpus()
    assert [c["cpu-index"] for c in cpus] == [0, 1], cpus
    for c in cpus:
        assert task_comm(vm.pid, c["thread-id"]) == f"vcpu {c['cpu-index']}", c
        assert c["target"] == "x86_64" and c["props"]["socket-id"] == c["cpu-index"], c
    info = await vm.hmp("info cpus")
    assert info.splitlines()[0] == f"* CPU #0: thread_id={cpus[0]['thread-id']}", info

    before = [await vm.progress(i) for i in (0, 1)]
    await asyncio.sleep(0.1)
    running = [await vm.progress(i) for i in (0, 1)]
    assert all(r > b for r, b in zip(running, before)), (before, running)

    await vm.c.execute("stop")
    assert (await vm.c.execute("query-status"))["status"] == "paused"
    stopped = [await vm.progress(i) for i in (0, 1)]
    await asyncio.sleep(0.2)
    assert [await vm.progress(i) for i in (0, 1)] == stopped, "a stopped vCPU kept running"

    await vm.c.execute("cont")
    assert (await vm.c.execute("query-status"))["status"] == "running"
    await asyncio.sleep(0.1)
    again = [await vm.progress(i) for i in (0, 1)]
    assert all(a > s for a, s in zip(again, stopped)), (stopped, again)

    try:
        await vm.c.execute("no-such-command")
        raise AssertionError("an unknown command succeeded")
    except ExecuteError as e:
        assert e.error.error.class_ == "CommandNotFound", e
    print("basic: ok")


async def hotplug(vm):
    """Plug and unplug several vCPUs; the probe on each reports its own APIC id."""
    # --smp 2,maxcpus=6,sockets=2,cores=3: slots 3, 4, 5 are socket 1, cores 0-2,
    # APIC ids 4, 5, 6 (QEMU's packed layout leaves id 3 unused).
    slots = {3: (1, 0, 4), 4: (1, 1, 5), 5: (1, 2, 6)}
    for index, (socket, core, apic) in slots.items():
        await vm.plug(index, socket, core, f"cpu{index}")
        await vm.wait_halted(index)
        got = await vm.reported_x2apic_id(index)
        assert got == apic, f"vCPU {index} saw x2APIC id {got}, expected {apic}"
        cpu = [c for c in await vm.cpus() if c["cpu-index"] == index][0]
        assert cpu["qom-path"] == f"/machine/peripheral/cpu{index}", cpu
        assert task_comm(vm.pid, cpu["thread-id"]) == f"vcpu {index}", cpu
    slots_info = await vm.c.execute("query-hotpluggable-cpus")
    assert len(slots_info) == 6 and sum("qom-path" in s for s in slots_info) == 5, slots_info

    for bad in ({"socket-id": 0, "core-id": 0, "thread-id": 0}, {"socket-id": 7, "core-id": 0, "thread-id": 0}):
        try:
            await vm.c.execute("device_add", {"driver": "qemu64-x86_64-cpu", "id": "bad", **bad})
            raise AssertionError(f"device_add {bad} succeeded")
        except ExecuteError as e:
            assert e.error.error.class_ == "GenericError", e

    for index in slots:
        await vm.c.execute("device_del", {"id": f"cpu{index}"})
    assert [c["cpu-index"] for c in await vm.cpus()] == [0, 1]
    try:
        await vm.c.execute("device_del", {"id": "cpu3"})
        raise AssertionError("device_del of an unplugged CPU succeeded")
    except ExecuteError as e:
        assert e.error.error.class_ == "DeviceNotFound", e
    # A re-plugged slot reuses its parked vCPU and reports again.
    await vm.hmp("cpu-add 4")
    await vm.wait_halted(4)
    assert 4 in [c["cpu-index"] for c in await vm.cpus()]
    print("hotplug: ok")


async def stress(vm):
    """Stop/cont and plug/unplug cycles under load leak no threads and no fds."""
    async def cycle():
        await vm.plug(3, 1, 0, "cpu3")
        await vm.plug(4, 1, 1, "cpu4")
        threads_plugged = counts(vm.pid)[0]
        await vm.c.execute("stop")
        await vm.c.execute("cont")
        await vm.c.execute("device_del", {"id": "cpu3"})
        await vm.c.execute("device_del", {"id": "cpu4"})
        return threads_plugged

    await asyncio.sleep(0.05)
    initial = counts(vm.pid)
    # The first unplug parks the two vCPU fds (KVM cannot destroy a vCPU; a re-plug reuses
    # it, as QEMU does): two more fds, no more threads. After that nothing may grow.
    plugged = await cycle()
    assert plugged == initial[0] + 2, (initial, plugged)
    before = counts(vm.pid)
    assert before == (initial[0], initial[1] + 2), (initial, before)
    for _ in range(15):
        await cycle()
    after = counts(vm.pid)
    assert before == after, f"threads/fds before {before}, after {after}"
    # Everything still answers, and the boot vCPUs still run.
    p = await vm.progress(0)
    await asyncio.sleep(0.05)
    assert await vm.progress(0) > p
    print(f"stress: ok (threads, fds) = {after}")


async def main():
    scenario, socket, pid, layout = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
    client = QMPClient(scenario)
    await client.connect(socket)
    vm = Vm(client, pid, layout)
    await {"basic": basic, "hotplug": hotplug, "stress": stress}[scenario](vm)
    await client.execute("quit")
    try:
        await client.disconnect()
    except EOFError:
        pass  # the VMM closes the socket as it exits, as QEMU does


asyncio.run(main())
