# test-guest-agent.py: the x86_64 agent's request parsing and its verbs on the
# host, no VM: `ivlab-agent-x86_64 --stdio` with files standing in for regions.
import base64
import hashlib
import importlib.util
import os
import random
import subprocess
import sys
import tempfile
import time
import urllib.parse
import zlib

spec = importlib.util.spec_from_file_location(
    "guestlib", os.path.join(os.environ.get("top_srcdir", "."), "tests", "test-guest-lib.py"))
lib = importlib.util.module_from_spec(spec)
spec.loader.exec_module(lib)

tap = lib.Tap()
agent_bin = os.path.join(os.environ.get("top_builddir", "."), "src", "guest", "ivlab-agent-x86_64")
if not os.access(agent_bin, os.X_OK):
    tap.ok(False, "agent built at " + agent_bin)
    tap.done()

selftest = subprocess.run([agent_bin, "--selftest"], capture_output=True, text=True)
tap.ok(selftest.returncode == 0 and "not ok" not in selftest.stdout,
       "agent --selftest (pattern, crc32, percent encoding)", selftest.stdout)

scratch = tempfile.TemporaryDirectory(prefix="ivlab-test-agent.")
SIZE = 1 << 20
region_file = os.path.join(scratch.name, "shm")
with open(region_file, "wb") as f:
    f.truncate(SIZE)
cmdline = os.path.join(scratch.name, "cmdline")
with open(cmdline, "w") as f:
    f.write("console=ttyS0 ivlab.lab=unit ivlab.guest=g0 ivlab.regions=ghost@1f,bad@zz,x@@1\n")

proc = subprocess.Popen([agent_bin, "--stdio", "--cmdline", cmdline, "--dev-dir", scratch.name,
                         "--region", "mem=" + region_file],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE)
agent = lib.Agent(proc.stdout, proc.stdin)
tap.ok(agent.readline(10) == "ready proto=1", "the agent announces ready proto=1")


def host_bytes(offset, length):
    with open(region_file, "rb") as f:
        f.seek(offset)
        return f.read(length)


def expect_ok(line, desc, **fields):
    resp = agent.request(line, 60)
    good = resp.ok and all(resp.get(k) == str(v) for k, v in fields.items())
    tap.ok(good, desc, "%s -> %r" % (line[:100], resp))
    return resp


def expect_err(line, code, desc):
    resp = agent.request(line, 60)
    tap.ok(not resp.ok and resp.code == code, desc, "%s -> %r" % (line[:100], resp))
    return resp


hello = expect_ok("hello", "hello answers proto=1 with guest, lab and regions",
                  proto=1, guest="g0", lab="unit", regions=2)
tap.ok(hello.get("arch") == "x86_64" and hello.get("agent"), "hello names arch and agent version",
       repr(hello))
expect_ok("region index=0", "a file region is described", name="mem", size=SIZE, mode="plain",
          ivposition=-1, vectors=0)
expect_err("region index=1", "nodev", "a cmdline region without a device is nodev")
expect_err("region index=2", "range", "region index past the end is a range error")

# the pattern: agent writes, host checks byte for byte; host writes, agent checks
expect_ok("fill region=mem offset=13 length=70001 seed=12345", "fill at an odd offset")
tap.ok(host_bytes(13, 70001) == lib.pattern(12345, 13, 70001), "host sees the agent's pattern")
tap.ok(host_bytes(0, 13) == bytes(13), "fill wrote nothing before its offset")
expect_ok("verify region=mem offset=13 length=70001 seed=12345", "verify accepts it", match=1)
expect_ok("verify region=mem offset=1000 length=5 seed=12345", "verify of a sub-range", match=1)
with open(region_file, "r+b") as f:
    f.seek(4242)
    old = f.read(1)
    f.seek(4242)
    f.write(bytes([old[0] ^ 0x40]))
expect_ok("verify region=mem offset=13 length=70001 seed=12345",
          "verify reports the first bad byte", match=0, bad_offset=4242, expected=old[0],
          actual=old[0] ^ 0x40)
expect_ok("checksum region=mem offset=7 length=99999",
          "checksum is zlib's crc32", crc32="%08x" % zlib.crc32(host_bytes(7, 99999)))
with open(region_file, "r+b") as f:
    f.seek(SIZE - 4096)
    f.write(lib.pattern(99, SIZE - 4096, 4096))
expect_ok("verify region=mem offset=%d length=4096 seed=99" % (SIZE - 4096),
          "verify of a pattern the host wrote, up to the end", match=1)

expect_ok("write region=mem offset=3 hex=00ff7E", "write hex")
expect_ok("read region=mem offset=2 length=5", "read hex back", hex=host_bytes(2, 5).hex())
tap.ok(host_bytes(3, 3) == b"\x00\xff\x7e", "host sees the written bytes")
for offset, length in ((1, 1), (3, 7), (5, 4097), (SIZE - 3, 3), (0, 65536)):
    expect_ok("copytest region=mem offset=%d length=%d seed=7" % (offset, length),
              "copytest offset=%d length=%d" % (offset, length), copies=5)
tap.ok(host_bytes(5, 4097) == lib.pattern(7, 5, 4097), "copytest leaves its pattern in place")
with open(region_file, "r+b") as f:
    f.seek(64)
    f.write((41).to_bytes(8, "little"))
expect_ok("atomic_add region=mem offset=64 count=1000", "atomic_add", value=1041)
tap.ok(int.from_bytes(host_bytes(64, 8), "little") == 1041, "host sees the counter")
resp = expect_ok("bench_copy region=mem size=65536 iterations=4", "bench_copy answers")
tap.ok(all(float(resp.get(k, "0")) > 0 for k in ("to_region_mbps", "from_region_mbps", "ram_mbps")),
       "bench_copy gives three rates", repr(resp))
resp = expect_ok("exec cmd=" + lib.encode("echo 'a b%'; exit 3"), "exec", status=3)
tap.ok(lib.decode(resp.get("output", "")) == "a b%\n", "exec output is percent-encoded", repr(resp))

t0 = time.monotonic()
resp = agent.request("exec cmd=sleep%2030 timeout_ms=300", 20)
tap.ok(not resp.ok and resp.code == "timeout" and time.monotonic() - t0 < 10,
       "exec past its timeout is killed and answered err timeout", repr(resp))
t0 = time.monotonic()
resp = agent.request("exec cmd=" + lib.encode("sleep 30 & echo started"), 20)
tap.ok(resp.ok and lib.decode(resp.get("output", "")) == "started\n" and time.monotonic() - t0 < 10,
       "exec returns when the shell exits, even if a background child holds the pipe", repr(resp))

# bad requests: an error each, and the agent carries on
bad = [
    ("bogus", "usage", "unknown verb"),
    ("", "proto", "empty line"),
    ("hello  ", "proto", "double space"),
    (" hello", "proto", "leading space"),
    ("hello\r", "proto", "carriage return"),
    ("hello\x01", "proto", "control byte"),
    ("hello \xff", "proto", "non-ASCII byte"),
    ("hello extra=1", "usage", "unknown argument"),
    ("fill region=mem", "usage", "missing arguments"),
    ("fill region=mem offset=0 length=1 seed=1 seed=2", "usage", "duplicate argument"),
    ("fill region=mem offset=-1 length=1 seed=1", "usage", "negative number"),
    ("fill region=mem offset=0x10 length=1 seed=1", "usage", "hex where decimal is due"),
    ("fill region=mem offset=99999999999999999999999 length=1 seed=1", "usage", "overflowing number"),
    ("fill region=mem offset=%d length=2 seed=1" % (SIZE - 1), "range", "range past the end"),
    ("fill region=mem offset=18446744073709551615 length=2 seed=1", "range", "offset near 2^64"),
    ("verify region=nosuch offset=0 length=1 seed=1", "nodev", "unknown region"),
    ("verify region=ghost offset=0 length=1 seed=1", "nodev", "region without device"),
    ("read region=mem offset=0 length=4097", "range", "read longer than 4096"),
    ("write region=mem offset=0 hex=abc", "usage", "odd hex digits"),
    ("write region=mem offset=0 hex=zz", "usage", "bad hex digit"),
    ("write region=mem offset=%d hex=0000" % (SIZE - 1), "range", "write past the end"),
    ("atomic_add region=mem offset=4 count=1", "range", "unaligned atomic"),
    ("ring region=mem peer=0 vector=0", "usage", "ring on a plain region"),
    ("wait region=mem vector=0 timeout_ms=10", "usage", "wait on a plain region"),
    ("ring region=mem peer=70000 vector=0", "range", "peer above 65535"),
    ("wait region=mem vector=0 timeout_ms=99999999", "range", "timeout above the limit"),
    ("pingpong region=mem peer=0 vector=0 iterations=1 timeout_ms=10 role=both", "usage", "bad role"),
    ("bench_copy region=mem size=0 iterations=1", "range", "empty bench"),
    ("exec cmd=%zz", "usage", "bad percent escape"),
    ("key=value", "usage", "verb with an equals sign"),
    ("fill =1", "usage", "empty key"),
]
for line, code, why in bad:
    expect_err(line, code, "bad request (%s) gets err %s" % (why, code))

agent.send("x" * 5000)
resp = agent.response(10)
tap.ok(not resp.ok and resp.code == "proto", "a 5000-byte line gets err proto", repr(resp))
resp = agent.request("fill region=mem offset=0 length=1 seed=1 " + "y" * 4100, 10)
tap.ok(not resp.ok and resp.code == "proto", "an over-long request with a valid start is refused",
       repr(resp))
resp = agent.request("x" * 4095, 10)
tap.ok(not resp.ok and resp.code == "usage", "a 4095-byte line (4096 with newline) is parsed",
       repr(resp))
expect_ok("hello", "the agent still answers after bad input", proto=1)

# pipelined requests are answered in order
agent.send("region index=0\nchecksum region=mem offset=0 length=1\nbogus\nhello")
answers = [agent.response(10) for _ in range(4)]
tap.ok([a.ok for a in answers] == [True, True, False, True] and answers[0].get("name") == "mem"
       and "crc32" in answers[1].fields and answers[3].get("proto") == "1",
       "pipelined requests get one answer each, in order", repr(answers))

# random requests from the protocol's own words: one answer each, no crash
rng = random.Random(4)
words = ["hello", "region", "fill", "verify", "checksum", "read", "write", "copytest",
         "atomic_add", "ring", "wait", "irqcount", "pingpong", "dmesg", "drvtest", "nosuch"]
keys = ["region", "offset", "length", "seed", "index", "hex", "count", "peer", "vector",
        "timeout_ms", "since", "role", "iterations", "size", "cmd", ""]
values = ["mem", "ghost", "0", "1", "7", "8", "4095", "4096", "65536", str(SIZE - 1), str(SIZE),
          "18446744073709551615", "18446744073709551616", "-1", "", "abc", "00ff", "0f0",
          "initiator", "%", "=", "10"]
fuzz_ok = True
for n in range(1500):
    parts = [rng.choice(words)]
    for _ in range(rng.randrange(0, 7)):
        parts.append("%s=%s" % (rng.choice(keys), rng.choice(values)))
    line = " ".join(parts)
    if rng.random() < 0.1:
        pos = rng.randrange(len(line) + 1)
        line = line[:pos] + chr(rng.randrange(1, 256)) + line[pos:]
    if "\n" in line:
        line = line.replace("\n", "")
    resp = agent.request(line.encode("latin-1") + b"\n", 30)
    if not (resp.line.startswith("ok") or resp.line.startswith("err ")):
        fuzz_ok = False
        tap.diag("fuzz %r -> %r" % (line, resp))
        break
tap.ok(fuzz_ok and proc.poll() is None, "1500 random requests each get ok or err, no crash")
expect_ok("hello", "the agent still answers after the random requests", proto=1)

# processes: spawn several, poll their output as it comes, exit statuses,
# signals, timeouts, kill of the whole group
def pct(text):
    return urllib.parse.quote(text, safe="")


def unpct(text):
    return urllib.parse.unquote_to_bytes(text or "")


def spawn(command, desc, **args):
    extra = "".join(" %s=%s" % kv for kv in args.items())
    resp = agent.request("spawn cmd=%s%s" % (pct(command), extra), 10)
    tap.ok(resp.ok and resp.get("pid"), "spawn: " + desc, repr(resp))
    return resp.get("pid")


def poll_to_end(pid, limit=30):
    """All output and the final answer of process pid."""
    out, err, deadline = b"", b"", time.monotonic() + limit
    while time.monotonic() < deadline:
        resp = agent.request("poll pid=%s wait_ms=2000" % pid, 10)
        if not resp.ok:
            return out, err, resp
        out += unpct(resp.get("out"))
        err += unpct(resp.get("err"))
        if resp.get("exited") == "1":
            return out, err, resp
    return out, err, None


def gone(os_pid):
    try:
        with open("/proc/%d/stat" % os_pid) as f:
            return f.read().split(") ")[1][0] in "ZX"
    except OSError:
        return True


pid = spawn("echo first; sleep 2; echo second >&2; exit 3", "a command with output and a status")
start = time.monotonic()
resp = agent.request("poll pid=%s wait_ms=10000" % pid, 15)
took = time.monotonic() - start
tap.ok(resp.ok and unpct(resp.get("out")) == b"first\n" and resp.get("exited") is None and took < 1.5,
       "poll returns the first line as soon as it is there (%.2f s), before the end" % took, repr(resp))
out, err, resp = poll_to_end(pid)
tap.ok(resp and out == b"" and err == b"second\n" and resp.get("status") == "3",
       "later polls bring stderr apart and exit status 3", repr((out, err, resp)))
expect_err("poll pid=%s" % pid, "range", "a process whose end was polled is forgotten")
expect_err("poll pid=999999", "range", "poll of an unknown pid is a range error")
expect_err("spawn", "usage", "spawn without cmd= is a usage error")
expect_err("spawn cmd=%zz", "usage", "spawn with a bad escape is a usage error")
expect_err("poll pid=1 wait_ms=600001", "range", "poll wait_ms above the limit")

start = time.monotonic()
pids = [spawn("sleep 1; echo %d" % n, "concurrent process %d" % n) for n in range(4)]
results = [poll_to_end(p) for p in pids]
took = time.monotonic() - start
tap.ok([r[0] for r in results] == [b"%d\n" % n for n in range(4)] and took < 3,
       "four 1 s processes run at once on one agent (%.2f s)" % took, repr(results))

pid = spawn("kill -TERM $$", "a shell that kills itself")
out, err, resp = poll_to_end(pid)
tap.ok(resp and resp.get("signal") == "15" and resp.get("status") is None,
       "death by a signal is reported as signal=15", repr(resp))

pid = spawn("sleep 30", "a process with a timeout", timeout_ms=300)
start = time.monotonic()
out, err, resp = poll_to_end(pid)
took = time.monotonic() - start
tap.ok(resp and resp.get("signal") == "9" and resp.get("timeout") == "1" and took < 5,
       "past timeout_ms its group is killed: signal=9 timeout=1 (%.2f s)" % took, repr(resp))

pid = spawn("sleep 60 & echo $!; wait", "a process with a background child")
resp = agent.request("poll pid=%s wait_ms=5000" % pid, 10)
child = int(unpct(resp.get("out")).strip() or 0)
expect_ok("kill pid=%s" % pid, "kill answers ok")
out, err, resp = poll_to_end(pid)
for _ in range(50):
    if gone(child):
        break
    time.sleep(0.1)
tap.ok(resp and resp.get("signal") == "9" and child and gone(child),
       "kill ends the whole process group (the background sleep too)", repr((child, resp)))
expect_err("kill pid=424242", "range", "kill of an unknown pid is a range error")

pid = spawn("head -c 3000000 /dev/zero | tr '\\0' x; echo done >&2", "a process writing 3 MB")
out, err, resp = poll_to_end(pid, 60)
tap.ok(resp and len(out) == 3000000 and set(out) == {ord("x")} and err == b"done\n",
       "3 MB of output arrive whole through the 1 MiB buffer", "%d bytes, %r" % (len(out), resp))

pids = [spawn("sleep 30", "process %d of the table" % n) if n == 0 else
        agent.request("spawn cmd=sleep%2030", 10).get("pid") for n in range(32)]
expect_err("spawn cmd=true", "busy", "a full process table answers busy")
for p in pids:
    agent.request("kill pid=%s" % p, 10)
    poll_to_end(p)
pid = spawn("true", "spawn works again once the table was polled empty")
poll_to_end(pid)

# files for cp: put in chunks, sha256, get in chunks, rename, unlink
blob = os.urandom(100000)
dest = os.path.join(scratch.name, "put dir")
os.mkdir(dest)
tmp_path = os.path.join(dest, "f.tmp")
put_ok = True
for offset in range(0, len(blob), 2000):
    chunk = base64.b64encode(blob[offset:offset + 2000]).decode()
    resp = agent.request("put path=%s offset=%d data=%s%s" %
                         (pct(tmp_path), offset, chunk, " mode=755" if offset == 0 else ""), 10)
    put_ok = put_ok and resp.ok
tap.ok(put_ok and open(tmp_path, "rb").read() == blob and os.stat(tmp_path).st_mode & 0o777 == 0o755,
       "put in 50 chunks writes the file (mode 755, a path with a space)")
expect_ok("sha256 path=%s" % pct(tmp_path), "sha256 of the file matches hashlib's",
          sha256=hashlib.sha256(blob).hexdigest(), size=len(blob), mode="755")
got, size = b"", None
for offset in range(0, len(blob) + 1, 30000):
    resp = agent.request("get path=%s offset=%d length=30000" % (pct(tmp_path), offset), 10)
    got += base64.b64decode(resp.get("data") or "")
    size = resp.get("size")
tap.ok(got == blob and size == str(len(blob)), "get in chunks reads it back, short at the end")
expect_ok("rename from=%s to=%s" % (pct(tmp_path), pct(tmp_path + ".done")), "rename")
expect_ok("unlink path=%s" % pct(tmp_path + ".done"), "unlink")
expect_err("get path=%s offset=0 length=1" % pct(tmp_path), "io", "get of a missing file is err io")
expect_err("sha256 path=%s" % pct(dest), "io", "sha256 of a directory is err io")
expect_err("put path=%s offset=5 data=AAAA" % pct(tmp_path), "io",
           "a later chunk of a file that is not there is err io")
expect_err("put path=%s offset=0 data=AA=A" % pct(tmp_path), "usage", "bad base64 is err usage")
expect_err("get path=/x offset=0 length=%d" % (512 * 1024 + 1), "range", "get above 512 KiB")

# the host leaving (end of input) kills what it spawned
pid = spawn("echo $$; exec sleep 60", "a process left running when the host leaves")
resp = agent.request("poll pid=%s wait_ms=5000" % pid, 10)
orphan = int(unpct(resp.get("out")).strip() or 0)

proc.stdin.close()
tap.ok(proc.wait(10) == 0, "the agent exits cleanly at the end of its input")
tap.ok(orphan and gone(orphan), "processes the host left running are killed when it leaves",
       str(orphan))

bad_region = subprocess.run([agent_bin, "--stdio", "--region", "x=/nonexistent"],
                            capture_output=True, text=True, stdin=subprocess.DEVNULL)
tap.ok(bad_region.returncode == 2 and "--region" in bad_region.stderr,
       "a bad --region is refused with a message", bad_region.stderr)
tap.done()
