# test-guest-qemu.py: an x86_64 and an aarch64 guest under plain QEMU (TCG, no
# libvirt) share one ivshmem-plain and one ivshmem-doorbell region (served by
# `ivlab server`); everything is checked through their agents and the host.
# Images: `ivlab image build`, or IVLAB_TEST_KERNEL_<arch>/IVLAB_TEST_INITRD_<arch>.
# IVLAB_TEST_ARCHES (default "x86_64 aarch64") picks the guests,
# IVLAB_TEST_X86_MACHINE (default pc; q35 puts the devices behind a bridge) the x86 machine.
import importlib.util
import os
import tempfile
import threading
import time
import zlib

spec = importlib.util.spec_from_file_location(
    "guestlib", os.path.join(os.environ.get("top_srcdir", "."), "tests", "test-guest-lib.py"))
lib = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lib)

BOOT_TIMEOUT = 180
PLAIN_SIZE = 8 << 20
DOORBELL_SIZE = 4 << 20
VECTORS = 4
SMALL_SIZE = 1 << 20

tap = lib.Tap()
arches = os.environ.get("IVLAB_TEST_ARCHES", "x86_64 aarch64").split()
for arch in arches:
    if not lib.have_program(lib.QEMU[arch]):
        tap.skip_or_fail("%s is not installed" % lib.QEMU[arch])
images = {arch: lib.find_images(tap, arch) for arch in arches}

scratch = tempfile.TemporaryDirectory(prefix="ivlab-test-guest.")
tag = "ivlab-test-%d" % os.getpid()
plain_path = "/dev/shm/%s-plain" % tag
with open(plain_path, "wb") as f:
    f.truncate(PLAIN_SIZE)
server = lib.Server(os.path.join(scratch.name, "bell.sock"), DOORBELL_SIZE, VECTORS,
                    tag + "-bell", os.path.join(scratch.name, "server.log"))
# a second doorbell region with other sizes: several devices per guest
server2 = lib.Server(os.path.join(scratch.name, "bell2.sock"), SMALL_SIZE, 1,
                     tag + "-bell2", os.path.join(scratch.name, "server2.log"))
guests = []


def cleanup():
    for guest in guests:
        guest.stop()
    server.stop()
    server2.stop()
    if os.path.exists(plain_path):
        os.unlink(plain_path)


lib.exit_on_signals(cleanup)


def host_read(path, offset, length):
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read(length)


def finish():
    cleanup()
    tap.done()


try:
    server.start()
    server2.start()
    regions = [lib.Region("bell", "doorbell", DOORBELL_SIZE, server.socket_path, VECTORS),
               lib.Region("plain", "plain", PLAIN_SIZE, plain_path),
               lib.Region("bell2", "doorbell", SMALL_SIZE, server2.socket_path, 1)]
    for arch in arches:
        machine = os.environ.get("IVLAB_TEST_X86_MACHINE") if arch == "x86_64" else None
        guests.append(lib.Guest("g-" + arch, arch, *images[arch], regions, scratch.name,
                                machine=machine))
    for guest in guests:
        guest.start()

    # boot: every agent answers hello in bounded time (all guests boot at once)
    outcome = {}

    def boot(guest):
        try:
            outcome[guest.name] = guest.wait_agent(BOOT_TIMEOUT)
        except (OSError, RuntimeError, EOFError) as e:
            outcome[guest.name] = e

    threads = [threading.Thread(target=boot, args=(guest,)) for guest in guests]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    booted = []
    for guest in guests:
        result = outcome.get(guest.name)
        if not isinstance(result, tuple):
            tap.ok(False, "%s boots and its agent answers hello" % guest.arch,
                   "%s\n%s" % (result, guest.console()[-3000:]))
            continue
        hello, seconds = result
        tap.ok(hello.get("arch") == guest.arch and hello.get("guest") == guest.name and
               hello.get("regions") == str(len(regions)),
               "%s agent answers hello in %.1f s" % (guest.arch, seconds), repr(hello))
        # init prints its line after starting the agent: it may lag the hello
        uptime, until = [], time.monotonic() + 5
        while not uptime and time.monotonic() < until:
            uptime = [line for line in guest.console().splitlines() if "ivlab-init: ready after" in line]
            time.sleep(0 if uptime else 0.05)
        tap.diag("boot to agent-ready, %s: %.2f s from QEMU start (%s)" % (
            guest.arch, seconds, uptime[0].strip() if uptime else "no init line"))
        booted.append(guest)
    if len(booted) != len(guests):
        finish()

    # the devices: sizes, modes, vectors, IVPositions against the server's ids
    ivpos = {}
    for guest in guests:
        for index, region in enumerate(regions):
            resp = guest.request("region index=%d" % index)
            good = (resp.ok and resp.get("name") == region.name and
                    resp.get("size") == str(region.size) and resp.get("mode") == region.mode and
                    resp.get("vectors") == str(region.vectors) and
                    resp.get("pci", "").endswith(":%02x.0" % (0x10 + index)))
            tap.ok(good, "%s sees %s: %s, %d bytes, %d vectors, slot %02x" % (
                guest.arch, region.name, region.mode, region.size, region.vectors, 0x10 + index),
                repr(resp))
            if region.name == "bell":
                ivpos[guest.name] = int(resp.get("ivposition", "-1"))
            elif region.mode == "plain":
                tap.ok(resp.get("ivposition") == "-1", "%s: plain region has no IVPosition" % guest.arch)
    peers = sorted(server.status()["peers"])
    tap.ok(sorted(ivpos.values()) == peers,
           "IVPositions %s are the ids the server gave %s" % (sorted(ivpos.values()), peers))

    # the driver's own contract, case by case (pcitest style)
    for guest in guests:
        for region in regions:
            resp = guest.request("drvtest region=%s" % region.name, 120)
            tap.ok(resp.ok and resp.get("failed") == "0" and int(resp.get("cases", "0")) >= 15,
                   "%s drvtest %s: %s cases pass" % (guest.arch, region.name, resp.get("cases")),
                   lib.decode(resp.get("report", "")) if resp.ok else repr(resp))

    # shared memory: one guest writes, the other guest and the host verify
    shm_path = {"plain": plain_path, "bell": server.shm_path, "bell2": server2.shm_path}
    for n, (writer, region) in enumerate([(g, r) for g in guests for r in regions[:2]]):
        seed = 1000 + n
        offset, length = 4096 * n + 3, 100003
        path = shm_path[region.name]
        resp = writer.request("fill region=%s offset=%d length=%d seed=%d" % (
            region.name, offset, length, seed))
        tap.ok(resp.ok, "%s fills %s at %d" % (writer.arch, region.name, offset), repr(resp))
        data = host_read(path, offset, length)
        tap.ok(data == lib.pattern(seed, offset, length),
               "host reads %s's pattern in %s" % (writer.arch, region.name))
        for reader in guests:
            resp = reader.request("verify region=%s offset=%d length=%d seed=%d" % (
                region.name, offset, length, seed))
            tap.ok(resp.ok and resp.get("match") == "1",
                   "%s verifies %s's pattern in %s" % (reader.arch, writer.arch, region.name),
                   repr(resp))
            resp = reader.request("checksum region=%s offset=%d length=%d" % (
                region.name, offset, length))
            tap.ok(resp.get("crc32") == "%08x" % zlib.crc32(data),
                   "%s's checksum of %s matches the host's" % (reader.arch, region.name), repr(resp))

    # the host writes, the guests must see it (and notice a corrupted byte)
    offset = PLAIN_SIZE - 65536
    with open(plain_path, "r+b") as f:
        f.seek(offset)
        f.write(lib.pattern(77, offset, 65536))
        f.seek(offset + 777)
        f.write(b"\x00" if lib.pattern(77, offset + 777, 1) != b"\x00" else b"\x01")
    for guest in guests:
        resp = guest.request("verify region=plain offset=%d length=65536 seed=77" % offset)
        tap.ok(resp.get("match") == "0" and resp.get("bad_offset") == str(offset + 777),
               "%s finds the byte the host corrupted" % guest.arch, repr(resp))

    # unaligned and odd-sized copies (the arm64 Device-memory trap)
    for guest in guests:
        for region in regions:
            for offset, length in ((1, 1), (3, 7), (4093, 4099), (region.size - 5, 5),
                                   (12345, 262147 if region.size > SMALL_SIZE else 4097)):
                resp = guest.request("copytest region=%s offset=%d length=%d seed=5" % (
                    region.name, offset, length))
                tap.ok(resp.ok and resp.get("copies") == "5",
                       "%s copytest %s offset=%d length=%d" % (guest.arch, region.name, offset,
                                                                length), repr(resp))
        path = server.shm_path
        tap.ok(host_read(path, 12345, 262147) == lib.pattern(5, 12345, 262147),
               "host sees %s's unaligned copies in the doorbell region" % guest.arch)

    # atomics from every guest at once on one counter
    counter_offset, count = 8 << 10, 20000
    with open(server.shm_path, "r+b") as f:
        f.seek(counter_offset)
        f.write(bytes(8))
    for guest in guests:
        guest.agent.send("atomic_add region=bell offset=%d count=%d" % (counter_offset, count))
    answers = [guest.agent.response(120) for guest in guests]
    total = int.from_bytes(host_read(server.shm_path, counter_offset, 8), "little")
    tap.ok(all(a.ok for a in answers) and total == count * len(guests),
           "concurrent atomic_add from %d guests sums to %d" % (len(guests), total), repr(answers))

    # doorbells: every vector, every direction
    pairs = [(a, b) for a in guests for b in guests if a is not b] or [(guests[0], guests[0])]
    for sender, receiver in pairs:
        for vector in range(VECTORS):
            before = receiver.request("irqcount region=bell")
            counts_before = [int(c) for c in before.get("counts", "").split(",")] if before.ok else []
            ring = sender.request("ring region=bell peer=%d vector=%d" % (ivpos[receiver.name], vector))
            wait = receiver.request("wait region=bell vector=%d timeout_ms=20000" % vector, 60)
            after = receiver.request("irqcount region=bell")
            counts_after = [int(c) for c in after.get("counts", "").split(",")] if after.ok else []
            expected = list(counts_before)
            if len(expected) == VECTORS:
                expected[vector] += 1
            tap.ok(ring.ok and wait.ok and counts_after == expected,
                   "%s rings %s on vector %d: only that count moves" % (
                       sender.arch, receiver.arch, vector),
                   "%r %r %r %r" % (before, ring, wait, after))
    # a wait with nothing coming times out, as an error
    resp = guests[0].request("wait region=bell vector=0 timeout_ms=200")
    tap.ok(not resp.ok and resp.code == "timeout", "a wait with no ring times out", repr(resp))

    # doorbell round trips (figures for the report, not assertions)
    if len(guests) > 1:
        initiator, responder = guests[0], guests[1]
        # stale rings on the initiator, never reported, must not confuse it
        for _ in range(2):
            responder.request("ring region=bell peer=%d vector=1" % ivpos[initiator.name])
        responder.request("irqcount region=bell")
        responder.agent.send("pingpong region=bell peer=%d vector=1 iterations=50 role=responder timeout_ms=20000"
                             % ivpos[initiator.name])
        resp = initiator.request("pingpong region=bell peer=%d vector=1 iterations=50 role=initiator timeout_ms=20000"
                                 % ivpos[responder.name], 120)
        resp2 = responder.agent.response(120)
        tap.ok(resp.ok and resp2.ok, "pingpong %s <-> %s" % (initiator.arch, responder.arch),
               "%r %r" % (resp, resp2))
        tap.diag("doorbell round trip %s->%s: median %s ns, p99 %s ns" % (
            initiator.arch, responder.arch, resp.get("median_ns"), resp.get("p99_ns")))
    for guest in guests:
        resp = guest.request("bench_copy region=plain size=1048576 iterations=8", 120)
        tap.ok(resp.ok, "%s bench_copy" % guest.arch, repr(resp))
        tap.diag("%s copy MB/s (TCG): to region %s, from region %s, RAM %s" % (
            guest.arch, resp.get("to_region_mbps"), resp.get("from_region_mbps"), resp.get("ram_mbps")))

    # bad requests get errors; the agent carries on
    for guest in guests:
        results = [guest.request(line) for line in (
            "nonsense", "fill region=bell offset=%d length=1 seed=1" % DOORBELL_SIZE,
            "ring region=plain peer=0 vector=0", "wait region=bell vector=%d timeout_ms=1" % VECTORS,
            "read region=nosuch offset=0 length=1", "x" * 6000)]
        codes = [r.code for r in results]
        tap.ok(codes == ["usage", "range", "usage", "range", "nodev", "proto"],
               "%s answers bad requests with errors" % guest.arch, repr(results))
        tap.ok(guest.request("hello").ok, "%s agent still up after bad requests" % guest.arch)

    # the driver survives unbind while the agent is using the mapping: the
    # mapping is revoked (SIGBUS, answered err io), and a rebind restores it
    for guest in guests:
        pci = guest.request("region index=0").get("pci")
        unbind = guest.exec("setsid sh -c 'sleep 1; echo %s > /sys/bus/pci/drivers/ivlab/unbind' "
                            "</dev/null >/dev/null 2>&1 &" % pci)
        busy = guest.request("atomic_add region=bell offset=0 count=1000000000", 300)
        gone = guest.request("fill region=bell offset=0 length=4096 seed=1")
        bind = guest.exec("echo %s > /sys/bus/pci/drivers/ivlab/bind" % pci)
        again = guest.request("fill region=bell offset=0 length=4096 seed=1")
        tap.ok(unbind.ok and not busy.ok and busy.code == "io" and "Bus error" in busy.line,
               "%s: unbind during access revokes the mapping (SIGBUS -> err io)" % guest.arch,
               "%r %r" % (unbind, busy))
        tap.ok(not gone.ok and gone.code == "nodev" and bind.get("status") == "0" and again.ok,
               "%s: the unbound region is nodev, and works again after rebind" % guest.arch,
               "%r %r %r" % (gone, bind, again))
        rmmod = guest.exec("rmmod ivlab")
        tap.ok(rmmod.get("status") != "0" and guest.request("hello").ok,
               "%s: rmmod while the agent maps the devices is refused, not a crash" % guest.arch,
               repr(rmmod))

    # a second doorbell device in the same guest is independent of the first
    if len(guests) > 1:
        a, b = guests[0], guests[1]
        pos2 = int(b.request("region index=2").get("ivposition", "-1"))
        b.request("irqcount region=bell2")
        before = b.request("irqcount region=bell")
        ring = a.request("ring region=bell2 peer=%d vector=0" % pos2)
        wait = b.request("wait region=bell2 vector=0 timeout_ms=20000", 60)
        after = b.request("irqcount region=bell")
        tap.ok(ring.ok and wait.ok and before.get("counts") == after.get("counts"),
               "a ring on bell2 reaches bell2 only", "%r %r %r %r" % (before, ring, wait, after))
    with open(server2.shm_path, "r+b") as f:
        f.seek(SMALL_SIZE - 4099)
        f.write(lib.pattern(31, SMALL_SIZE - 4099, 4099))
    for guest in guests:
        resp = guest.request("verify region=bell2 offset=%d length=4099 seed=31" % (SMALL_SIZE - 4099))
        tap.ok(resp.get("match") == "1", "%s sees the host's pattern at the end of bell2" % guest.arch,
               repr(resp))

    # the host end can go away and come back: the agent answers the new one
    for guest in guests:
        guest.agent.close()
        guest.agent = lib.Agent.connect_unix(guest.agent_path, time.monotonic() + 30)
        try:
            hello = guest.agent.hello(time.monotonic() + 30)
        except (OSError, EOFError) as e:
            hello = e
        tap.ok(isinstance(hello, lib.Response) and hello.ok,
               "%s agent answers a host that reconnected" % guest.arch, repr(hello))

    # /init: a shell on the console, and an agent that comes back when killed
    for guest in guests:
        tap.ok("built-in shell" in guest.console(), "%s console has a shell" % guest.arch)
        # kill the agent, and while /init waits to restart it, reload the driver
        resp = guest.exec("setsid sh -c 'sleep 0.3; kill -9 $(pidof ivlab-agent); "
                          "while pidof ivlab-agent; do sleep 0.05; done; "
                          "rmmod ivlab && insmod /lib/modules/ivlab.ko && echo reloaded > /tmp/reload' "
                          "</dev/null >/dev/null 2>&1 &")
        line = None
        try:
            line = guest.agent.readline(60)
        except (OSError, EOFError) as e:
            line = repr(e)
        hello = guest.request("hello") if line == "ready proto=1" else None
        tap.ok(resp.ok and line == "ready proto=1" and hello is not None and hello.ok,
               "%s: a killed agent is restarted by /init and answers again" % guest.arch,
               "%r %r %r" % (resp, line, hello))
        reload = guest.exec("cat /tmp/reload")
        fill = guest.request("fill region=bell2 offset=0 length=4096 seed=3")
        verify = guest.request("verify region=bell2 offset=0 length=4096 seed=3")
        tap.ok(lib.decode(reload.get("output", "")) == "reloaded\n" and fill.ok and
               verify.get("match") == "1",
               "%s: rmmod and insmod of an idle driver, and the new agent maps the devices" % guest.arch,
               "%r %r %r" % (reload, fill, verify))

    # and no WARNING, BUG or Oops in any guest's kernel log
    for guest in guests:
        resp = guest.request("dmesg")
        tap.ok(resp.ok and resp.get("problems") == "0", "%s kernel log is clean" % guest.arch,
               lib.decode(resp.get("log", ""))[-3000:] if resp.ok else repr(resp))
except Exception as e:  # a broken guest must fail the test, never hang or vanish
    import traceback
    tap.ok(False, "test ran to completion: %s" % e, traceback.format_exc())
    for guest in guests:
        tap.diag("--- %s console tail" % guest.arch, guest.console()[-2000:])
finish()
