#!/usr/bin/env python3
# test-image-boot.py: the images `ivlab image build` makes boot under plain
# QEMU (TCG) for x86_64 and aarch64: the virtio modules and ivlab.ko load,
# the agent says `ready proto=1` on its virtio-serial port and answers hello,
# and the kernel log has no WARNING, BUG or Oops. Reports boot-to-ready time.
import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

spec = importlib.util.spec_from_file_location(
    "guestlib", os.path.join(os.path.dirname(os.path.abspath(__file__)), "test-guest-lib.py"))
guestlib = importlib.util.module_from_spec(spec)
spec.loader.exec_module(guestlib)

IVLAB = os.environ.get("IVLAB", "ivlab")
CI = os.environ.get("CI") == "true"
READY_TIMEOUT = 180  # TCG on a loaded 2-core machine; normally a few seconds
count = 0
failed = 0


def ok(cond, desc, detail=None):
    global count, failed
    count += 1
    if not cond:
        failed += 1
    print("%s %d - %s" % ("ok" if cond else "not ok", count, desc), flush=True)
    if not cond and detail:
        diag(detail)
    return cond


def skip_or_fail(desc, reason):
    """A missing real component skips the point on a laptop, fails it in CI."""
    global count
    if CI:
        ok(False, "%s: required component missing in CI: %s" % (desc, reason))
        return
    count += 1
    print("ok %d - %s # SKIP %s" % (count, desc, reason), flush=True)


def diag(text):
    for line in str(text).splitlines():
        print("# " + line, flush=True)


MACHINES = {
    "x86_64": ["qemu-system-x86_64", "-M", "q35"],
    "aarch64": ["qemu-system-aarch64", "-M", "virt", "-cpu", "cortex-a57"],
}


class Agent:
    """The host end of the agent's port: one request line, one response."""

    def __init__(self, path, deadline):
        while True:
            try:
                self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                self.sock.connect(path)
                break
            except OSError:
                self.sock.close()
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        self.buf = b""

    def readline(self, deadline):
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("no line from the agent")
            self.sock.settimeout(left)
            data = self.sock.recv(65536)
            if not data:
                raise EOFError("the agent's port closed")
            self.buf += data
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode("utf-8", "replace")

    def request(self, line, timeout=60):
        self.sock.sendall(line.encode() + b"\n")
        return self.readline(time.monotonic() + timeout)


def fields(response):
    return dict(word.split("=", 1) for word in response.split()[1:] if "=" in word)


def boot(arch, image, workdir):
    qemu = MACHINES[arch]
    if not shutil.which(qemu[0]):
        skip_or_fail("%s: boot" % arch, "%s not installed" % qemu[0])
        return
    sock = os.path.join(workdir, arch + ".agent.sock")
    console = os.path.join(workdir, arch + ".console.log")
    command = qemu + [
        "-accel", "tcg", "-m", "512", "-smp", "1", "-display", "none", "-monitor", "none", "-nic", "none",
        "-no-reboot", "-serial", "file:" + console,
        "-kernel", image["vmlinuz"], "-initrd", image["initrd"],
        "-append", "console=%s panic=-1 ivlab.guest=boot-%s ivlab.lab=image-test" % (image["console"], arch),
        "-device", "virtio-serial",
        "-chardev", "socket,id=agent,path=%s,server=on,wait=off" % sock,
        "-device", "virtserialport,chardev=agent,name=" + guestlib.AGENT_PORT,
    ]
    start = time.monotonic()
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=open(os.path.join(workdir, arch + ".qemu.log"), "w"))
    try:
        deadline = start + READY_TIMEOUT
        try:
            agent = Agent(sock, deadline)
            first = agent.readline(deadline)
        except (OSError, TimeoutError, EOFError) as error:
            ok(False, "%s: the agent says ready" % arch,
               "%s\n--- console ---\n%s" % (error, read_tail(console)))
            return
        ready = time.monotonic() - start
        ok(first == "ready proto=1", "%s: the agent says 'ready proto=1'" % arch, first)
        diag("%s: QEMU start to agent ready: %.2f s" % (arch, ready))
        for line in read_tail(console).splitlines():
            if "ivlab-init: ready after" in line:
                diag("%s: guest console: %s" % (arch, line.strip()))
        hello = agent.request("hello")
        info = fields(hello)
        ok(hello.startswith("ok "), "%s: the agent answers hello" % arch, hello)
        ok(info.get("arch") == arch, "%s: ...from a %s guest" % (arch, arch), hello)
        ok(info.get("kernel") == image["kernel"], "%s: ...running the image's kernel %s" % (arch, image["kernel"]), hello)
        ok(info.get("guest") == "boot-" + arch, "%s: ...which read the kernel command line" % arch, hello)
        modules = agent.request("exec cmd=" + urllib.parse.quote("cat /proc/modules"))
        loaded = urllib.parse.unquote(fields(modules).get("output", ""))
        names = {line.split()[0] for line in loaded.splitlines() if line.strip()}
        ok("ivlab" in names, "%s: ivlab.ko is loaded" % arch, loaded or modules)
        ok("virtio_console" in names, "%s: virtio_console is loaded (from load.list)" % arch, loaded)
        log = agent.request("dmesg")
        problems = fields(log).get("problems")
        ok(problems == "0", "%s: the kernel log has no WARNING, BUG or Oops" % arch,
           urllib.parse.unquote(fields(log).get("log", log))[-3000:])
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def read_tail(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()[-3000:]
    except OSError as error:
        return str(error)


def main():
    workdir = tempfile.mkdtemp(prefix="ivlab-image-boot.")
    try:
        for arch in ("x86_64", "aarch64"):
            missing = guestlib.image_tools_missing(arch)
            if missing:
                skip_or_fail("%s: boot" % arch, "ivlab image build needs %s (run setup-host.sh)" % missing)
                continue
            build = subprocess.run([IVLAB, "image", "build", "--arch", arch], capture_output=True, text=True)
            if not ok(build.returncode == 0, "%s: ivlab image build" % arch, build.stderr):
                continue
            listing = subprocess.run([IVLAB, "image", "list", "--json"], capture_output=True, text=True)
            images = {image["arch"]: image for image in json.loads(listing.stdout)["images"]}
            if not ok(arch in images and images[arch]["intact"], "%s: the image is listed and intact" % arch, listing.stdout):
                continue
            boot(arch, images[arch], workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print("1..%d" % count, flush=True)
    sys.exit(1 if failed else 0)


main()
