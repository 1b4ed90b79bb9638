"""ivshmem_spec_client.py: an ivshmem client written from QEMU's
docs/specs/ivshmem-spec.txt ("The ivshmem Client-Server Protocol") alone,
not from ivlab's server, so the tests do not check the server against itself.

The spec, in short: the connection is one-way, server to client. Each message
is one 8-byte little-endian signed number, optionally with one fd by
SCM_RIGHTS. On connect: (1) version 0, (2) the client's id, (3) -1 with the
shared memory fd, (4) for each existing peer its id N times, one eventfd each
(vectors 0..N-1), (5) the client's own id N times with its own eventfds.
Then (6) a peer id with an fd is a connect notification (one per vector), a
peer id without an fd a disconnect.
"""

import os
import select
import socket
import struct
import time


class ProtocolError(Exception):
    pass


class Closed(ProtocolError):
    """The server closed the connection."""


class SpecClient:
    def __init__(self, path, connect=True):
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.buf = b""
        self.pending_fds = []
        self.id = None
        self.version = None
        self.shm_fd = None
        self.own = []          # our eventfds, vector order
        self.peers = {}        # peer id -> [eventfd per vector]
        self.log = []          # every message: (value, has_fd)
        if connect:
            self.sock.connect(path)

    def fileno(self):
        return self.sock.fileno()

    def recv_message(self, timeout=5.0):
        """One message: (value, fd or None). Raises Closed on EOF and
        TimeoutError when nothing comes within timeout seconds."""
        deadline = time.monotonic() + timeout
        while len(self.buf) < 8:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no message from the server within %.1f s" % timeout)
            if not readable(self.sock.fileno(), left):
                continue
            data, fds, flags, _addr = socket.recv_fds(self.sock, 8 - len(self.buf), 4)
            if flags & socket.MSG_CTRUNC:
                raise ProtocolError("an fd was lost in transit (client out of fds?)")
            if not data and not fds:
                raise Closed("server closed the connection")
            self.buf += data
            self.pending_fds.extend(fds)
        value = struct.unpack("<q", self.buf[:8])[0]
        self.buf = self.buf[8:]
        if len(self.pending_fds) > 1:
            raise ProtocolError("more than one fd with one message")
        fd = self.pending_fds.pop() if self.pending_fds else None
        self.log.append((value, fd is not None))
        return value, fd

    def _dispatch(self, value, fd):
        """Steps 4-6 after the id and the memory are known."""
        if not 0 <= value <= 65535:
            raise ProtocolError("peer id %d out of range" % value)
        if value == self.id:
            if fd is None:
                raise ProtocolError("disconnect notification for ourselves")
            self.own.append(fd)
        elif fd is None:
            for old in self.peers.pop(value, []):
                os.close(old)
            return ("disconnect", value)
        else:
            self.peers.setdefault(value, []).append(fd)
            return ("connect", value)
        return ("own", value)

    def setup(self, vectors, timeout=5.0):
        """Read steps 1-5 for a device configured with `vectors` vectors."""
        value, fd = self.recv_message(timeout)
        if fd is not None or value != 0:
            raise ProtocolError("expected version 0 without fd, got %r/%r" % (value, fd))
        self.version = value
        value, fd = self.recv_message(timeout)
        if fd is not None or not 0 <= value <= 65535:
            raise ProtocolError("expected an id without fd, got %r/%r" % (value, fd))
        self.id = value
        value, fd = self.recv_message(timeout)
        if fd is None or value != -1:
            raise ProtocolError("expected -1 with the shared memory fd, got %r/%r" % (value, fd))
        self.shm_fd = fd
        while len(self.own) < vectors:
            value, fd = self.recv_message(timeout)
            self._dispatch(value, fd)
        return self

    def poll(self, timeout=0.0):
        """Wait up to timeout for a notification, then handle all that are
        already there; returns the events."""
        events = []
        wait = timeout
        while len(self.buf) >= 8 or readable(self.sock.fileno(), wait):
            value, fd = self.recv_message(5.0)
            events.append(self._dispatch(value, fd))
            wait = 0.0
        return events

    def wait_for(self, predicate, timeout=5.0):
        """Handle notifications until predicate(self) holds."""
        deadline = time.monotonic() + timeout
        while not predicate(self):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("condition not reached within %.1f s" % timeout)
            self.poll(min(left, 0.2))
        return self

    def ring(self, peer, vector):
        os.write(self.peers[peer][vector], struct.pack("<Q", 1))

    def close(self):
        for fd in self.own + [f for fds in self.peers.values() for f in fds]:
            os.close(fd)
        if self.shm_fd is not None:
            os.close(self.shm_fd)
        self.own, self.peers, self.shm_fd = [], {}, None
        self.sock.close()


def fd_kind(fd):
    """What /proc says an fd is: '/memfd:NAME (deleted)', 'anon_inode:[eventfd]', ..."""
    return os.readlink("/proc/self/fd/%d" % fd)


def readable(fd, timeout=0.0):
    """poll(2), not select(2): tests hold far more than 1024 fds."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(max(0, int(timeout * 1000))))
