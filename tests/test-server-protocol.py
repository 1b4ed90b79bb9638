#!/usr/bin/env python3
"""test-server-protocol.py: the real `ivlab server` binary against the spec
client (tests/ivshmem_spec_client.py): message order and values, fd kinds,
the full wiring, disconnects, id policy, and the robustness cases (garbage,
early close, a client that never reads, 64 peers, 1000 cycles without fd
growth, fd exhaustion)."""

import mmap
import os
import re
import resource
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from ivshmem_spec_client import Closed, SpecClient, fd_kind, readable  # noqa: E402

IVLAB = os.environ.get("IVLAB") or os.path.join(os.environ.get("top_builddir", "."), "ivlab")
scratch = tempfile.mkdtemp(prefix="ivlab-test-server.")
servers = []
count = 0
failed = 0


def ok(cond, desc, detail=None):
    global count, failed
    count += 1
    if cond:
        print("ok %d - %s" % (count, desc))
    else:
        failed += 1
        print("not ok %d - %s" % (count, desc))
        if detail:
            for line in str(detail).splitlines():
                print("# " + line)
    sys.stdout.flush()
    return cond


def reaches(client, predicate, timeout=5.0):
    """Whether client's notifications make predicate(client) hold in time."""
    try:
        client.wait_for(predicate, timeout)
        return True
    except (TimeoutError, Closed):
        return False


class Server:
    def __init__(self, name, *args, limit_fds=None):
        self.socket = os.path.join(scratch, name + ".sock")
        self.log = os.path.join(scratch, name + ".log")
        preexec = None
        if limit_fds:
            def preexec():
                resource.setrlimit(resource.RLIMIT_NOFILE, (limit_fds, limit_fds))
        with open(self.log, "w") as log:
            self.proc = subprocess.Popen([IVLAB, "server", "--socket", self.socket] + list(args),
                                         stdout=log, stderr=log, preexec_fn=preexec)
        servers.append(self)
        deadline = time.monotonic() + 10
        while not os.path.exists(self.socket + ".ctl"):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("server did not start: " + open(self.log).read())
            time.sleep(0.01)

    def status(self):
        """The control socket's report as a dict (read raw, not via ivlab)."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(5)
        sock.connect(self.socket + ".ctl")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
        sock.close()
        report = {}
        for line in data.decode().splitlines():
            key, _, value = line.partition(" ")
            report[key] = value
        return report

    def peers(self):
        return [int(x) for x in self.status().get("peers", "").split()]

    def wait_peer_count(self, n, timeout=10):
        deadline = time.monotonic() + timeout
        while len(self.peers()) != n:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def open_fds(self):
        return len(os.listdir("/proc/%d/fd" % self.proc.pid))

    def alive(self):
        return self.proc.poll() is None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def connect(server, vectors):
    return SpecClient(server.socket).setup(vectors)


def meshed(clients, vectors):
    for c in clients:
        others = {o.id for o in clients if o is not c}
        c.wait_for(lambda s: set(s.peers) >= others and
                   all(len(s.peers[i]) == vectors for i in others))


def close_all(clients):
    for c in clients:
        c.close()


def test_order_and_values():
    vectors, size = 3, 1 << 20
    srv = Server("order", "--vectors", str(vectors), "--size", "1M")
    a = connect(srv, vectors)
    ok(a.log[:3] == [(0, False), (0, False), (-1, True)],
       "first client: version 0, id 0, -1 with an fd", a.log[:3])
    ok(fd_kind(a.shm_fd).startswith("/memfd:"), "the shared memory is a memfd", fd_kind(a.shm_fd))
    ok(os.fstat(a.shm_fd).st_size == size, "the memfd has the size asked for (1 MiB)")
    ok(a.log[3:] == [(0, True)] * vectors, "then its own id %d times with fds" % vectors, a.log[3:])
    ok(all(fd_kind(fd) == "anon_inode:[eventfd]" for fd in a.own), "its vectors are eventfds",
       [fd_kind(fd) for fd in a.own])
    b = connect(srv, vectors)
    ok(b.id == 1 and b.log == [(0, False), (1, False), (-1, True)] + [(0, True)] * vectors +
       [(1, True)] * vectors,
       "second client: version, id 1, memory, peer 0 x%d, own id x%d" % (vectors, vectors), b.log)
    a.wait_for(lambda s: len(s.peers.get(1, [])) == vectors)
    ok(a.log[3 + vectors:] == [(1, True)] * vectors,
       "first client is told of peer 1 with %d eventfds" % vectors, a.log)
    ok(all(fd_kind(fd) == "anon_inode:[eventfd]" for fds in a.peers.values() for fd in fds),
       "the peers' doorbells are eventfds")
    ma = mmap.mmap(a.shm_fd, size)
    mb = mmap.mmap(b.shm_fd, size)
    ma[size - 8:] = b"spec!ok!"
    ok(mb[size - 8:] == b"spec!ok!", "both clients map the same memory")
    ma.close()
    mb.close()
    close_all([a, b])
    srv.stop()


def test_wiring_and_disconnect():
    vectors, n = 4, 5
    srv = Server("wiring", "--vectors", str(vectors))
    clients = [connect(srv, vectors) for _ in range(n)]
    meshed(clients, vectors)
    ok(sorted(c.id for c in clients) == list(range(n)), "ids 0..%d, distinct" % (n - 1))
    bad = []
    for a in clients:
        for b in clients:
            if a is b:
                continue
            for v in range(vectors):
                a.ring(b.id, v)
                if not readable(b.own[v], 2.0):
                    bad.append("%d->%d v%d not delivered" % (a.id, b.id, v))
                    continue
                got = struct.unpack("<Q", os.read(b.own[v], 8))[0]
                if got != 1:
                    bad.append("%d->%d v%d count %d" % (a.id, b.id, v, got))
                stray = [(c.id, w) for c in clients for w in range(vectors) if readable(c.own[w])]
                if stray:
                    bad.append("%d->%d v%d also woke %r" % (a.id, b.id, v, stray))
    ok(not bad, "every pair and vector: A's fd for B's vector v wakes exactly B's own v "
       "(%d doorbells)" % (n * (n - 1) * vectors), "\n".join(bad[:10]))
    gone = clients.pop(2)
    gone_id = gone.id
    gone.close()
    heard = []
    for c in clients:
        try:
            c.wait_for(lambda s: gone_id not in s.peers)
            heard.append(c.id)
        except TimeoutError:
            pass
    ok(len(heard) == len(clients) and all((gone_id, False) in c.log for c in clients),
       "the disconnect of peer %d (its id, no fd) reaches all %d others" % (gone_id, len(clients)))
    new = connect(srv, vectors)
    ok(new.id == n, "the next id is %d (after the last given, not the freed %d)" % (n, gone_id),
       new.id)
    close_all(clients + [new])
    srv.stop()


def test_max_peers():
    srv = Server("max", "--max-peers", "2")
    a, b = connect(srv, 1), connect(srv, 1)
    c = SpecClient(srv.socket)
    try:
        c.recv_message(5)
        refused = False
    except Closed:
        refused = True
    ok(refused, "--max-peers 2: the third client is refused (closed before any message)")
    a.close()
    ok(srv.wait_peer_count(1), "after one leaves ...")
    d = connect(srv, 1)
    ok(d.id == 2, "... a new client is served again (id 2)", d.id)
    close_all([b, c, d])
    srv.stop()


def test_garbage_and_early_close():
    vectors = 2
    srv = Server("garbage", "--vectors", str(vectors))
    watcher = connect(srv, vectors)
    bad = connect(srv, vectors)
    bad.sock.send(b"garbage!")
    try:
        bad.poll(5)
        closed = False
    except Closed:
        closed = True
    ok(closed, "a client sending data is disconnected")
    ok(reaches(watcher, lambda s: bad.id not in s.peers and (bad.id, False) in s.log),
       "and the others are told it left", watcher.log)
    bad.close()
    # Clients vanishing at every point of their setup.
    for i in range(30):
        c = SpecClient(srv.socket)
        for _ in range(i % 6):
            c.recv_message(5)
        c.close()
    ok(srv.wait_peer_count(1), "30 clients closing at every step of their setup are all dropped",
       srv.peers())
    watcher.wait_for(lambda s: sum(1 for v, fd in s.log[3:] if not fd) == 31)
    connects = sum(1 for v, fd in watcher.log[3:] if fd and v != watcher.id)
    ok(srv.alive() and len(watcher.peers) == 0 and connects == 31 * vectors,
       "the watcher saw each of the 31 come (%d vectors) and go" % connects)
    late = connect(srv, vectors)
    ok(late.id >= 0, "a client after all that is served normally")
    close_all([watcher, late])
    srv.stop()


def test_never_reads():
    vectors = 64
    # A: the silent client stays connected (long stall timeout) while 40
    # clients come and go: each is served although the server cannot send
    # to the silent one (its socket buffer fills after a few hundred fds).
    srv = Server("stall", "--vectors", str(vectors), "--stall-timeout", "120000")
    silent = SpecClient(srv.socket)  # connects, never reads
    readers = [connect(srv, vectors) for _ in range(3)]
    slowest = 0
    try:
        for _ in range(40):
            t = time.monotonic()
            c = connect(srv, vectors)
            slowest = max(slowest, time.monotonic() - t)
            for r in readers:
                r.wait_for(lambda s: c.id in s.peers and len(s.peers[c.id]) == vectors)
            c.close()
        for r in readers:
            r.wait_for(lambda s: c.id not in s.peers)
        status = srv.status()
        ok(status["peers"].split()[0] == "0" and status["backlog"].split() == ["0"],
           "40 clients with 64 vectors come and go, told to 3 readers, while client 0 "
           "never reads and is still connected with its backlog (slowest setup %.0f ms)"
           % (slowest * 1000), status)
        silent.close()
        ok(all([reaches(r, lambda s: (0, False) in s.log[3:]) for r in readers]),
           "its disconnect reaches the readers", [r.log[3:] for r in readers])
    finally:
        close_all(readers)
        silent.close()
        srv.stop()
    # B: with a short --stall-timeout, the silent client is dropped.
    srv = Server("stall2", "--vectors", str(vectors), "--stall-timeout", "300")
    silent = SpecClient(srv.socket)
    reader = connect(srv, vectors)
    try:
        deadline = time.monotonic() + 30
        while (0, False) not in reader.log[3:] and time.monotonic() < deadline:
            c = connect(srv, vectors)
            c.close()
            reader.poll(0.01)
        ok((0, False) in reader.log[3:], "with --stall-timeout 300 the silent client is dropped "
           "and the others are told")
        log = open(srv.log).read()
        # Which limit trips first (300 ms, or the queue bound) depends on load.
        ok(re.search(r"peer 0 dropped: not reading (for 300 ms|\(output queue full\))", log),
           "the log says why peer 0 was dropped", log[-500:])
        # The last client's close may not have been reaped yet: wait for it.
        deadline = time.monotonic() + 10
        peers = srv.peers()
        while peers != [reader.id] and time.monotonic() < deadline:
            reader.poll(0.05)
            peers = srv.peers()
        ok(peers == [reader.id], "the reader stays connected", peers)
    finally:
        reader.close()
        silent.close()
        srv.stop()


def test_64_peers():
    vectors = 2
    srv = Server("many", "--vectors", str(vectors))
    socks = [SpecClient(srv.socket) for _ in range(64)]  # all connect first
    for c in socks:
        c.setup(vectors, timeout=10)
    meshed(socks, vectors)
    ok(sorted(c.id for c in socks) == list(range(64)), "64 peers at once get ids 0..63")
    ok(all(len(c.peers) == 63 for c in socks), "each knows the 63 others with 2 vectors each")
    ok(srv.peers() == list(range(64)), "the status report lists the 64 peers")
    a, b = socks[0], socks[63]
    a.ring(b.id, 1)
    ok(readable(b.own[1], 2), "a doorbell from peer 0 to peer 63 arrives")
    close_all(socks)
    ok(srv.wait_peer_count(0), "all 64 gone")
    srv.stop()


def test_cycles_fd_growth():
    vectors = 8
    srv = Server("cycles", "--vectors", str(vectors))
    anchor = connect(srv, vectors)
    before = srv.open_fds()
    for _ in range(1000):
        c = connect(srv, vectors)
        c.close()
        anchor.poll(0)  # a live peer reads its notifications, as QEMU does
    ok(srv.wait_peer_count(1), "1000 connect/disconnect cycles done")
    anchor.poll(0.5)
    after = srv.open_fds()
    ok(after == before, "the server's open fds did not grow (%d before, %d after)" % (before, after))
    ok(len(anchor.peers) == 0 and sum(1 for v, fd in anchor.log if not fd and v != 0) == 1000,
       "the anchor peer heard 1000 disconnects")
    anchor.close()
    srv.stop()


def test_fd_exhaustion():
    vectors = 8
    srv = Server("emfile", "--vectors", str(vectors), limit_fds=48)
    clients = []
    refused = False
    for _ in range(10):
        c = SpecClient(srv.socket)
        try:
            c.setup(vectors)
            clients.append(c)
        except Closed:
            refused = True
            c.close()
            break
    ok(refused and len(clients) >= 2,
       "with 48 fds the server refuses client %d (out of fds) instead of failing" %
       (len(clients) + 1))
    ok(srv.alive(), "the server is still running")
    meshed(clients, vectors)
    clients[0].ring(clients[-1].id, 7)
    ok(readable(clients[-1].own[7], 2), "the connected peers still ring each other")
    clients.pop().close()
    ok(srv.wait_peer_count(len(clients)), "a peer leaving frees its fds ...")
    again = connect(srv, vectors)
    ok(again.id >= 0, "... and a new client is served")
    log = open(srv.log).read()
    ok("refused a client" in log, "the refusal is logged", log[-400:])
    close_all(clients + [again])
    srv.stop()


def test_clean_shutdown():
    srv = Server("shutdown", "--vectors", "1")
    c = connect(srv, 1)
    srv.proc.send_signal(signal.SIGINT)
    status = srv.proc.wait(10)
    ok(status == 0, "SIGINT: exit status 0", status)
    ok(not os.path.exists(srv.socket) and not os.path.exists(srv.socket + ".ctl"),
       "both sockets removed")
    try:
        c.poll(2)
        gone = False
    except Closed:
        gone = True
    ok(gone, "the client sees the server go")
    c.close()


def main():
    tests = [test_order_and_values, test_wiring_and_disconnect, test_max_peers,
             test_garbage_and_early_close, test_never_reads, test_64_peers,
             test_cycles_fd_growth, test_fd_exhaustion, test_clean_shutdown]
    if len(sys.argv) > 1:
        tests = [t for t in tests if t.__name__ in sys.argv[1:]]
    if not os.access(IVLAB, os.X_OK):
        # The binary under test is missing: skipped on a laptop, failed in CI.
        if os.environ.get("CI") == "true":
            print("not ok 1 - required component missing in CI: %s not built\n1..1" % IVLAB)
            return 1
        print("1..0 # SKIP %s not built" % IVLAB)
        return 0
    resource.setrlimit(resource.RLIMIT_NOFILE, (resource.getrlimit(resource.RLIMIT_NOFILE)[1],) * 2)
    try:
        for test in tests:
            try:
                test()
            except Exception as e:  # a crash in one case fails it, not the run
                ok(False, "%s ran to the end" % test.__name__, "%s: %s" % (type(e).__name__, e))
    finally:
        for srv in servers:
            srv.stop()
        if not os.environ.get("KEEP"):
            shutil.rmtree(scratch, ignore_errors=True)
    print("1..%d" % count)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
