"""QMP scenarios against the real vmm-reference, driven by QEMU's own client (qemu.qmp).

usage: vmm_scenarios.py SCENARIO SOCKET VMM_PID LAYOUT_JSON
The layout (addresses of the probe guest's data in guest memory) comes from the Rust test,
which takes it from probe_guest::abi, so the two cannot drift. Exits non-zero on failure.
"""
import asyncio
import json
import os
import sys
from xml.etree import ElementTree

from qemu.qmp import EventListener, ExecuteError, QMPClient

UUID = "6d3b8c2a-1f4e-4b7a-9c1d-2e5f8a9b0c3d"


def task_comm(pid, tid):
    with open(f"/proc/{pid}/task/{tid}/comm") as f:
        return f.read().strip()


def allowed(pid, tid):
    """A thread's Cpus_allowed_list, as the kernel enforces it."""
    with open(f"/proc/{pid}/task/{tid}/status") as f:
        for line in f:
            if line.startswith("Cpus_allowed_list:"):
                return line.split()[1]
    raise AssertionError(f"no Cpus_allowed_list for thread {tid}")


def counts(pid):
    # The kernel's kvm-nx-lpage-recovery worker, attached to the process when KVM first
    # needs it, is not the VMM's thread.
    tasks = [t for t in os.listdir(f"/proc/{pid}/task") if not task_comm(pid, t).startswith("kvm-")]
    return len(tasks), len(os.listdir(f"/proc/{pid}/fd"))


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


async def queries(vm):
    """QEMU 7.2's machine, identity and CPU model queries, with its reply shapes."""
    version = await vm.c.execute("query-version")
    assert version["qemu"] == {"major": 7, "minor": 2, "micro": 0}, version
    assert version["package"].startswith("vmm-reference "), version
    assert await vm.c.execute("query-name") == {"name": "web1"}
    assert await vm.c.execute("query-uuid") == {"UUID": UUID}
    assert await vm.c.execute("query-target") == {"arch": "x86_64"}
    machines = await vm.c.execute("query-machines")
    assert [m["name"] for m in machines] == ["pc"], machines
    pc = machines[0]
    assert pc["is-default"] and pc["hotpluggable-cpus"] and pc["cpu-max"] >= 4, pc
    assert pc["default-cpu-type"] == "qemu64-x86_64-cpu", pc
    summary = await vm.c.execute("query-memory-size-summary")
    assert summary == {"base-memory": 128 << 20, "plugged-memory": 0}, summary

    defs = {d["name"]: d for d in await vm.c.execute("query-cpu-definitions")}
    assert len(defs) == 132, len(defs)
    for name, d in defs.items():
        assert d["typename"] == f"{name}-x86_64-cpu", d
        assert d["static"] == (name == "base") and d["deprecated"] is False, d
        assert d["migration-safe"] == (name not in ("host", "max")), d
    assert defs["Westmere"]["alias-of"] == "Westmere-v1"
    assert defs["host"]["unavailable-features"] == [] == defs["max"]["unavailable-features"]
    # What a model lacks here is what it asks for (its static expansion) and the host's
    # KVM CPU (the expansion of "host") has not.
    host = (await vm.c.execute("query-cpu-model-expansion",
                               {"type": "full", "model": {"name": "host"}}))["model"]["props"]
    for name in ("qemu64", "Westmere", "Skylake-Server", "EPYC-Rome"):
        exp = await vm.c.execute("query-cpu-model-expansion",
                                 {"type": "static", "model": {"name": name}})
        assert exp["model"]["name"] == "base", exp
        props = exp["model"]["props"]
        lacking = {f for f, on in props.items() if on is True and host.get(f) is False}
        unavailable = defs[name]["unavailable-features"]
        assert set(unavailable) <= lacking, (name, unavailable, lacking)
    full = await vm.c.execute("query-cpu-model-expansion",
                              {"type": "full", "model": {"name": "Westmere", "props": {"aes": False}}})
    assert full["model"]["name"] == "Westmere" and full["model"]["props"]["aes"] is False, full
    assert full["model"]["props"]["sse4.2"] is True, full
    for bad in ("query-cpu-model-baseline", "query-cpu-model-comparison"):
        try:
            await vm.c.execute(bad)
            raise AssertionError(f"{bad} succeeded")
        except ExecuteError as e:
            assert e.error.error.class_ == "CommandNotFound", e


async def virsh(vm):
    """virsh's CPU verbs over HMP, checked against /proc affinity and query-cpus-fast."""
    await queries(vm)
    assert await vm.hmp("vcpucount") == (
        "maximum      config         4\nmaximum      live           4\n"
        "current      config         2\ncurrent      live           2\n")
    cpus = await vm.cpus()
    tid = {c["cpu-index"]: c["thread-id"] for c in cpus}
    with open("/sys/devices/system/cpu/online") as f:
        online = f.read().strip()
    last = online.replace(",", "-").split("-")[-1]

    await vm.hmp(f"vcpupin 1 {last}")
    assert allowed(vm.pid, tid[1]) == last
    table = (await vm.hmp("vcpupin")).splitlines()
    assert table[0] == " VCPU   CPU Affinity" and set(table[1]) == {"-"}, table
    rows = {int(r.split()[0]): r.split()[1] for r in table[2:]}
    assert sorted(rows) == [0, 1, 2, 3], table
    assert rows[1] == last and rows[0] == allowed(vm.pid, tid[0]), (rows, table)

    info = (await vm.hmp("vcpuinfo")).split("\n\n")
    assert len(info) == 2, info
    block = dict(line.split(":", 1) for line in info[1].splitlines())
    # "CPU" is where the thread last ran: a vCPU asleep in HLT moves only when it wakes.
    assert block["VCPU"].strip() == "1" and block["CPU"].strip().isdigit(), block
    affinity = block["CPU Affinity"].strip()
    assert affinity.count("y") == 1 and affinity[int(last)] == "y", block

    vcpu0_before = allowed(vm.pid, tid[0])
    emu = await vm.hmp("emulatorpin")
    assert emu == ("emulator: CPU Affinity\n" + "-" * 34
                   + f"\n       *: {allowed(vm.pid, vm.pid)}\n"), emu
    assert await vm.hmp("emulatorpin 0") == ""
    assert allowed(vm.pid, vm.pid) == "0"
    assert allowed(vm.pid, tid[0]) == vcpu0_before, "emulatorpin moved a vCPU"
    assert (await vm.hmp("emulatorpin")).endswith("       *: 0\n")

    # setvcpus plugs the lowest empty slots, named vcpuN as libvirt names them; each runs
    # the probe and sees its own APIC id. Unpinned, they run where the VMM may run, not
    # where the emulator thread that created them is pinned.
    assert await vm.hmp("setvcpus 4 --live") == ""
    cpus = await vm.cpus()
    assert [c["cpu-index"] for c in cpus] == [0, 1, 2, 3], cpus
    assert cpus[2]["qom-path"] == "/machine/peripheral/vcpu2", cpus
    for c in cpus[2:]:
        assert task_comm(vm.pid, c["thread-id"]) == f"vcpu {c['cpu-index']}", c
        assert allowed(vm.pid, c["thread-id"]) == vcpu0_before, c
        await vm.wait_halted(c["cpu-index"])
        assert await vm.reported_x2apic_id(c["cpu-index"]) == c["cpu-index"]
    assert (await vm.hmp("vcpucount")).endswith("current      live           4\n")
    await vm.hmp(f"emulatorpin {online}")
    vcpu = ElementTree.fromstring(await vm.hmp("dumpxml")).find("vcpu")
    assert vcpu.text == "4" and "current" not in vcpu.attrib, vcpu.attrib

    listener = EventListener("DEVICE_DELETED")
    with vm.c.listen(listener):
        assert await vm.hmp("setvcpus 2") == ""
        gone = [(await asyncio.wait_for(listener.get(), 10))["data"]["device"]
                for _ in range(2)]
    assert gone == ["vcpu3", "vcpu2"], gone
    assert [c["cpu-index"] for c in await vm.cpus()] == [0, 1]
    assert await vm.hmp("setvcpus 1") == (
        "Error: vCPU 1 was present at boot and cannot be unplugged\n")
    assert await vm.hmp("setvcpus 9") == (
        "Error: requested vcpus is greater than max allowable vcpus for the live domain: 9 > 4\n")
    # dumpxml: the live domain, as libvirt writes it, with the live count and pins.
    dom = ElementTree.fromstring(await vm.hmp("dumpxml --live"))
    assert dom.get("type") == "kvm" and dom.findtext("name") == "web1", dom
    assert dom.findtext("uuid") == UUID
    assert dom.find("memory").text == str(128 << 10) and dom.find("memory").get("unit") == "KiB"
    vcpu = dom.find("vcpu")
    assert (vcpu.text, vcpu.get("current")) == ("4", "2"), vcpu.attrib
    pins = {p.get("vcpu"): p.get("cpuset") for p in dom.iter("vcpupin")}
    expected = {} if last == online else {"1": last}
    assert pins == expected, (pins, expected)
    assert dom.find("cputune/emulatorpin") is None, "the emulator pin was undone"
    cpu = dom.find("cpu")
    assert cpu.get("mode") == "custom" and cpu.findtext("model") == "qemu64", cpu
    topo = cpu.find("topology").attrib
    assert (topo["sockets"], topo["cores"], topo["threads"]) == ("2", "2", "1"), topo
    print("virsh: ok")


async def qemu_definitions(workdir):
    """query-cpu-definitions and the host expansion from QEMU itself (-accel kvm)."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        sock = os.path.join(tmp, "qemu.sock")
        qemu = subprocess.Popen(
            ["qemu-system-x86_64", "-machine", "pc", "-accel", "kvm", "-nodefaults",
             "-display", "none", "-S", "-qmp", f"unix:{sock},server=on,wait=off"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        try:
            for _ in range(400):
                if os.path.exists(sock):
                    break
                await asyncio.sleep(0.05)
            client = QMPClient("qemu")
            await client.connect(sock)
            defs = await client.execute("query-cpu-definitions")
            await client.disconnect()
        finally:
            qemu.kill()
            qemu.wait()
    return {d["name"]: d for d in defs}


async def vs_qemu(vm):
    """Every definition equals QEMU 7.2's on this host, unavailable-features included,
    except what this VMM does not model: MSR-based features (QEMU's arch-capabilities
    bits) and QEMU's second listing of a feature that also names an XSAVE component."""
    qemu = await qemu_definitions(None)
    ours = {d["name"]: d for d in await vm.c.execute("query-cpu-definitions")}
    assert sorted(qemu) == sorted(ours), set(qemu) ^ set(ours)
    known = set((await vm.c.execute("query-cpu-model-expansion",
                                     {"type": "static", "model": {"name": "host"}}))["model"]["props"])
    compared = 0
    for name, q in qemu.items():
        seen = []
        for f in q["unavailable-features"]:
            if f in known and f not in seen:
                seen.append(f)
        q = dict(q, **{"unavailable-features": seen})
        assert q == ours[name], (name, q, ours[name])
        compared += len(seen)
    print(f"vs-qemu: ok ({len(qemu)} models, {compared} unavailable features compared)")


async def main():
    scenario, socket, pid, layout = sys.argv[1], sys.argv[2], int(sys.argv[3]), json.loads(sys.argv[4])
    client = QMPClient(scenario)
    await client.connect(socket)
    vm = Vm(client, pid, layout)
    await {"basic": basic, "hotplug": hotplug, "stress": stress, "virsh": virsh,
           "vs-qemu": vs_qemu}[scenario](vm)
    await client.execute("quit")
    try:
        await client.disconnect()
    except EOFError:
        pass  # the VMM closes the socket as it exits, as QEMU does


asyncio.run(main())
