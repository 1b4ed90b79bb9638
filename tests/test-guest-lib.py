# test-guest-lib.py: helpers shared by the guest tests (not a test itself):
# TAP output, the agent protocol client, the seeded pattern, QEMU guests.
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.parse

MASK64 = (1 << 64) - 1


def agent_protocol(name):
    """A #define of the protocol header both the agent and ivlab include."""
    header = os.path.join(os.environ.get("top_srcdir", "."), "src", "guest", "include", "ivlab-agent.h")
    with open(header) as f:
        match = re.search(r"^#define %s\s+(.+?)\s*$" % name, f.read(), re.M)
    if not match:
        raise KeyError("%s: no #define %s" % (header, name))
    return match.group(1).strip('"')


AGENT_PORT = agent_protocol("IVLAB_AGENT_PORT")


class Tap:
    def __init__(self):
        self.count = 0
        self.failed = 0

    def ok(self, cond, desc, detail=None):
        self.count += 1
        if not cond:
            self.failed += 1
        print("%s %d - %s" % ("ok" if cond else "not ok", self.count, desc), flush=True)
        if not cond and detail is not None:
            self.diag(detail)
        return cond

    def diag(self, *lines):
        for text in lines:
            for line in str(text).splitlines():
                print("# " + line, flush=True)

    def skip_or_fail(self, reason):
        """A missing real component skips the rest on a laptop and fails in CI."""
        if os.environ.get("CI") == "true":
            self.ok(False, "required component missing in CI: " + reason)
            self.done()
        if self.count:
            self.count += 1
            print("ok %d # SKIP %s" % (self.count, reason), flush=True)
            self.done()
        print("1..0 # SKIP " + reason, flush=True)
        sys.exit(0)

    def done(self):
        print("1..%d" % self.count, flush=True)
        sys.exit(1 if self.failed else 0)


def splitmix64(z):
    z = (z + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def pattern(seed, offset, length):
    """The bytes of PROTOCOL.md's pattern of seed over [offset, offset+length)."""
    first, last = offset // 8, (offset + length + 7) // 8
    words = b"".join(splitmix64(seed ^ k).to_bytes(8, "little") for k in range(first, last))
    start = offset - first * 8
    return words[start:start + length]


def decode(value):
    return urllib.parse.unquote(value)


def encode(text):
    return urllib.parse.quote(text, safe="")


class Response:
    def __init__(self, line):
        self.line = line
        words = line.split(" ")
        self.ok = words[0] == "ok"
        self.code = None if self.ok else (words[1] if len(words) > 1 else "")
        self.fields = {}
        if self.ok:
            for word in words[1:]:
                key, _, value = word.partition("=")
                self.fields[key] = value

    def __getitem__(self, key):
        return self.fields[key]

    def get(self, key, default=None):
        return self.fields.get(key, default)

    def __repr__(self):
        return self.line if len(self.line) < 300 else self.line[:300] + "..."


class Agent:
    """The host end of the agent protocol over a socket or a pipe pair."""

    def __init__(self, rfile, wfile, sock=None):
        self.rfile = rfile
        self.wfile = wfile
        self.sock = sock
        self.buffer = b""

    @classmethod
    def connect_unix(cls, path, deadline):
        while True:
            try:
                sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                sock.connect(path)
                return cls(None, None, sock)
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def send(self, line):
        data = line.encode() + b"\n" if isinstance(line, str) else line
        if self.sock:
            self.sock.sendall(data)
        else:
            self.wfile.write(data)
            self.wfile.flush()

    def _read_some(self, deadline):
        if self.sock:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("agent did not answer in time")
            self.sock.settimeout(remaining)
            try:
                data = self.sock.recv(1 << 20)
            except socket.timeout:
                raise TimeoutError("agent did not answer in time")
        else:
            data = os.read(self.rfile.fileno(), 1 << 20)
        if not data:
            raise EOFError("agent closed the connection")
        self.buffer += data

    def readline(self, timeout=30):
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            self._read_some(deadline)
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.decode("ascii", "replace")

    def response(self, timeout=30):
        """The next response line, skipping the `ready` announcement."""
        while True:
            line = self.readline(timeout)
            if not line.startswith("ready "):
                return Response(line)

    def request(self, line, timeout=30):
        self.send(line)
        return self.response(timeout)

    def hello(self, deadline):
        """Sends hello once and waits for its answer: the agent may not be up yet."""
        self.send("hello")
        while True:
            line = self.readline(max(0.1, deadline - time.monotonic()))
            if line.startswith("ok proto="):
                return Response(line)

    def close(self):
        if self.sock:
            self.sock.close()


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when the test dies, so no QEMU or
    server outlives a killed test."""
    try:
        import ctypes
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def exit_on_signals(cleanup):
    """Runs cleanup and exits on SIGTERM, SIGINT and SIGHUP."""
    def handler(signum, frame):
        cleanup()
        sys.exit(128 + signum)
    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(signum, handler)


def ivlab_state_dir():
    if os.environ.get("IVLAB_STATE_DIR"):
        return os.environ["IVLAB_STATE_DIR"]
    if os.geteuid() == 0:
        return "/var/lib/ivlab"
    return os.path.join(os.environ.get("XDG_STATE_HOME") or
                        os.path.expanduser("~/.local/state"), "ivlab")


QEMU = {"x86_64": "qemu-system-x86_64", "aarch64": "qemu-system-aarch64"}


def image_tools_missing(arch):
    """The tools `ivlab image build --arch ARCH` needs that this host lacks,
    as one string ("" when it has them all): tests/lib.sh keeps the list."""
    here = os.path.dirname(os.path.abspath(__file__))
    env = dict(os.environ)
    env.setdefault("top_srcdir", os.path.dirname(here))
    env.setdefault("top_builddir", os.path.dirname(here))
    probe = subprocess.run(["sh", "-c", '. "$top_srcdir/tests/lib.sh" && image_tools_missing "$1"',
                            "sh", arch], capture_output=True, text=True, env=env)
    return probe.stdout.strip()


def find_images(tap, arch):
    """(kernel, initrd) for arch: IVLAB_TEST_KERNEL_<arch>/IVLAB_TEST_INITRD_<arch>
    when set, else what `ivlab image build --arch ARCH` produces. A missing
    tool skips (fails in CI); a build that fails is a failure everywhere."""
    kernel = os.environ.get("IVLAB_TEST_KERNEL_" + arch)
    initrd = os.environ.get("IVLAB_TEST_INITRD_" + arch)
    if kernel and initrd:
        return kernel, initrd
    ivlab = os.environ.get("IVLAB", "ivlab")
    missing = image_tools_missing(arch)
    if missing:
        tap.skip_or_fail("ivlab image build --arch %s needs %s (run setup-host.sh)" % (arch, missing))
    build = subprocess.run([ivlab, "image", "build", "--arch", arch], capture_output=True, text=True)
    image_dir = os.path.join(ivlab_state_dir(), "images", arch)
    kernel = os.path.join(image_dir, "vmlinuz")
    initrd = os.path.join(image_dir, "initrd.img")
    if not tap.ok(build.returncode == 0 and os.path.exists(kernel) and os.path.exists(initrd),
                  "ivlab image build --arch %s makes %s and %s" % (arch, kernel, initrd),
                  build.stderr[-4000:]):
        tap.done()
    return kernel, initrd


class Region:
    """One ivshmem device of a guest: mode plain (shm file) or doorbell (server socket)."""

    def __init__(self, name, mode, size, path, vectors=0):
        self.name = name
        self.mode = mode
        self.size = size
        self.path = path
        self.vectors = vectors


class Guest:
    """A QEMU guest (no libvirt) with the agent port on a UNIX socket."""

    def __init__(self, name, arch, kernel, initrd, regions, workdir, first_slot=0x10, machine=None):
        self.name = name
        self.arch = arch
        self.machine = machine or ("pc" if arch == "x86_64" else "virt")
        self.kernel = kernel
        self.initrd = initrd
        self.regions = regions
        self.first_slot = first_slot
        self.agent_path = os.path.join(workdir, name + ".agent.sock")
        self.console_path = os.path.join(workdir, name + ".console.log")
        self.stderr_path = os.path.join(workdir, name + ".qemu.log")
        self.proc = None
        self.agent = None
        self.started = None

    def command(self):
        slots = ",".join("%s@%02x" % (r.name, self.first_slot + i) for i, r in enumerate(self.regions))
        console = "ttyS0" if self.arch == "x86_64" else "ttyAMA0"
        append = "console=%s panic=-1 ivlab.lab=test ivlab.guest=%s ivlab.regions=%s" % (
            console, self.name, slots)
        # One vCPU of a possible two: TCG makes a guest's atomics atomic
        # across processes only when the machine may have several vCPUs.
        cmd = [QEMU[self.arch], "-accel", "tcg", "-m", "256", "-smp", "1,maxcpus=2", "-nographic", "-nic", "none",
               "-no-reboot", "-monitor", "none", "-serial", "file:" + self.console_path,
               "-kernel", self.kernel, "-initrd", self.initrd, "-append", append]
        cmd += ["-M", self.machine]
        if self.arch == "aarch64":
            cmd += ["-cpu", "cortex-a57"]
        if self.machine == "pc":
            bus = ""
        else:
            # as in the lab's domain XML: ivshmem behind a pcie-to-pci bridge
            cmd += ["-device", "pcie-root-port,id=rp1,bus=pcie.0,chassis=1",
                    "-device", "pcie-pci-bridge,id=br2,bus=rp1"]
            bus = "bus=br2,"
        cmd += ["-device", "virtio-serial-pci",
                "-chardev", "socket,id=agent,path=%s,server=on,wait=off" % self.agent_path,
                "-device", "virtserialport,chardev=agent,name=" + AGENT_PORT]
        for i, region in enumerate(self.regions):
            addr = "%saddr=0x%02x" % (bus, self.first_slot + i)
            if region.mode == "plain":
                cmd += ["-object", "memory-backend-file,id=mem%d,share=on,mem-path=%s,size=%d" % (
                            i, region.path, region.size),
                        "-device", "ivshmem-plain,memdev=mem%d,%s" % (i, addr)]
            else:
                cmd += ["-chardev", "socket,id=db%d,path=%s" % (i, region.path),
                        "-device", "ivshmem-doorbell,chardev=db%d,vectors=%d,%s" % (
                            i, region.vectors, addr)]
        return cmd

    def start(self):
        self.started = time.monotonic()
        with open(self.stderr_path, "w") as err:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL,
                                         stdout=err, stderr=err, preexec_fn=_die_with_parent)

    def wait_agent(self, timeout):
        """Connects and says hello; returns (hello response, seconds since start)."""
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.agent_path):
            if self.proc.poll() is not None:
                raise RuntimeError("QEMU exited with %d: %s" % (self.proc.returncode, self.qemu_log()))
            if time.monotonic() > deadline:
                raise TimeoutError("QEMU did not create the agent socket")
            time.sleep(0.05)
        self.agent = Agent.connect_unix(self.agent_path, deadline)
        hello = self.agent.hello(deadline)
        return hello, time.monotonic() - self.started

    def request(self, line, timeout=60):
        return self.agent.request(line, timeout)

    def exec(self, command, timeout=60):
        return self.request("exec cmd=" + encode(command), timeout)

    def qemu_log(self):
        try:
            with open(self.stderr_path) as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def console(self):
        try:
            with open(self.console_path, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop(self):
        if self.agent:
            self.agent.close()
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class Server:
    """`ivlab server` for one doorbell region, with its memory in /dev/shm/NAME."""

    def __init__(self, socket_path, size, vectors, shm_name, log_path):
        self.socket_path = socket_path
        self.size = size
        self.vectors = vectors
        self.shm_name = shm_name
        self.shm_path = "/dev/shm/" + shm_name
        self.log_path = log_path
        self.proc = None

    def start(self, timeout=10):
        ivlab = os.environ.get("IVLAB", "ivlab")
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen([ivlab, "server", "--socket", self.socket_path,
                                          "--size", str(self.size), "--vectors", str(self.vectors),
                                          "--shm-name", self.shm_name],
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         preexec_fn=_die_with_parent)
        deadline = time.monotonic() + timeout
        while not os.path.exists(self.socket_path):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("ivlab server did not start: " + open(self.log_path).read())
            time.sleep(0.02)

    def status(self):
        ivlab = os.environ.get("IVLAB", "ivlab")
        out = subprocess.run([ivlab, "server", "--status", "--json", "--socket", self.socket_path],
                             capture_output=True, text=True, check=True)
        return json.loads(out.stdout)

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if os.path.exists(self.shm_path):
            os.unlink(self.shm_path)


def have_program(name):
    return shutil.which(name) is not None
