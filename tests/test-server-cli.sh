# test-server-cli.sh: `ivlab server` as a command: option errors, --daemon
# (listening when it returns, errors reported by the parent), pidfile,
# --status (text and JSON), --stop, socket mode and group for libvirt-qemu,
# POSIX shm and shm-dir memory, sizes over 1 GiB, log file and SIGHUP,
# SIGTERM clean-up; and `ivlab peer` by hand.
. "$top_srcdir/tests/lib.sh"

pids=
cleanup() {
	for pid in $pids; do
		kill "$pid" 2>/dev/null
	done
	for pid in $pids; do
		wait "$pid" 2>/dev/null
	done
	for pidfile in "$scratch"/*.pid; do
		[ -f "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null
	done
	[ -n "${shm_name:-}" ] && rm -f "/dev/shm/$shm_name"
	if [ -n "${huge_mounted:-}" ]; then
		umount "$scratch/huge"
	fi
	if [ -n "${huge_saved:-}" ]; then
		echo "$huge_saved" >/proc/sys/vm/nr_hugepages
	fi
	rm -rf "$scratch"
}
trap cleanup EXIT

# expect_error STATUS MESSAGE ARGS...: ivlab fails with STATUS and MESSAGE on stderr.
expect_error() {
	want_status=$1
	want=$2
	shift 2
	"$IVLAB" "$@" >"$scratch/out" 2>"$scratch/err"
	status=$?
	if [ $status -eq "$want_status" ] && grep -qF -- "$want" "$scratch/err"; then
		ok "ivlab $* -> $want_status: $want"
	else
		not_ok "ivlab $* -> $want_status: $want"
		diag "got status $status: $(cat "$scratch/err")"
	fi
}

s=$scratch/s.sock
expect_error 2 "--socket PATH is required" server
expect_error 2 "--socket: the path is empty" server -s ''
expect_error 2 "--socket: the path is empty" server --status -s ''
expect_error 2 "--vectors: '0' is not a number in 1..64" server -s "$s" --vectors 0
expect_error 2 "--vectors: '65' is not a number in 1..64" server -s "$s" --vectors 65
expect_error 2 "--size: 'lots' is not a size" server -s "$s" --size lots
expect_error 2 "--size: 3MiB is not a power of two" server -s "$s" --size 3M
expect_error 2 "--socket-mode: '999' is not an octal mode" server -s "$s" --socket-mode 999
expect_error 2 "--socket-group: no such group: nosuchgroup" server -s "$s" --socket-group nosuchgroup
expect_error 2 "--shm-dir: not a directory: /nonexistent" server -s "$s" --shm-dir /nonexistent
expect_error 2 "--shm-name and --shm-dir exclude each other" server -s "$s" --shm-name a --shm-dir /tmp
expect_error 2 "--json goes with --status" server -s "$s" --json
expect_error 2 "unexpected argument 'extra'" server -s "$s" extra
expect_error 1 "no ivlab server is running there" server --status -s "$s"

# --daemon: listening by the time it returns.
pidfile=$scratch/d.pid
log=$scratch/d.log
"$IVLAB" server --daemon -s "$s" --size 2G --vectors 8 --pidfile "$pidfile" --log-file "$log" \
	--socket-mode 0660 --socket-group kvm 2>"$scratch/err"
check "--daemon returns 0" test $? -eq 0
check "the socket exists when it returns" test -S "$s" -a -S "$s.ctl"
pid=$(cat "$pidfile" 2>/dev/null)
check "the pidfile names a live process ($pid)" kill -0 "$pid"
"$IVLAB" server --status -s "$s" >"$scratch/status"
check "--status reports the pid" grep -q "^pid: *$pid$" "$scratch/status"
check "--status reports 2 GiB" grep -q "^size: *2GiB (2147483648 bytes)$" "$scratch/status"
check "--status reports 8 vectors" grep -q "^vectors: *8$" "$scratch/status"
check "--status reports the memfd" grep -q "^shm: *memfd$" "$scratch/status"
check "--status reports no peers" grep -q "^peers: *0$" "$scratch/status"
check "socket mode 0660, group kvm" test "$(stat -c '%a %G' "$s")" = "660 kvm"

# As libvirt-qemu (group kvm), the way QEMU under libvirt connects.
# A python3 that user can run (not one in root's home).
system_python=/usr/bin/python3
[ -x "$system_python" ] || system_python=${PYTHON3:-python3}
if [ "$(id -u)" -eq 0 ] && id libvirt-qemu >/dev/null 2>&1 && command -v runuser >/dev/null; then
	chmod 0711 "$scratch"
	check "user libvirt-qemu can connect and read the setup" \
		runuser -u libvirt-qemu -- "$system_python" -c "
import socket, struct, sys
s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1])
data = b''
while len(data) < 16:
    data += s.recv(16 - len(data))
version, peer_id = struct.unpack('<qq', data)
sys.exit(not (version == 0 and 0 <= peer_id <= 65535))" "$s" 2>"$scratch/runuser.err"
	[ -s "$scratch/runuser.err" ] && diag "$(cat "$scratch/runuser.err")"
else
	skip_or_fail_point "user libvirt-qemu can connect: not root, or no libvirt-qemu user (libvirt-daemon-system)"
fi

# The host peer by hand, at the far end of 2 GiB.
"$IVLAB" peer -s "$s" fill 0x7ffffff0 16 0x5a
check "peer fill at 2GiB-16 works" test $? -eq 0
"$IVLAB" peer -s "$s" dump 2147483632 16 >"$scratch/dump"
check "peer dump reads it back" grep -q "^7ffffff0  5a 5a 5a 5a 5a 5a 5a 5a  5a 5a 5a 5a 5a 5a 5a 5a  |ZZZZZZZZZZZZZZZZ|$" "$scratch/dump"
expect_error 1 "outside the shared memory" peer -s "$s" dump 0x7ffffff8 16
expect_error 1 "ring: no peer 9 is connected" peer -s "$s" ring 9 0
expect_error 2 "VECTOR: '64' is not a number in 0..63" peer -s "$s" ring 0 64
expect_error 2 "unknown action 'explode'" peer -s "$s" explode
expect_error 1 "wait: no ring on vector 1 within 100 ms" peer -s "$s" --timeout 100 wait 1

# Two host peers: one waits, the other rings it.
"$IVLAB" peer -s "$s" --timeout 10000 wait 5 >"$scratch/wait" 2>&1 &
waiter=$!
pids="$pids $waiter"
waiter_id() {
	"$IVLAB" server --status --json -s "$s" | sed -n 's/.*"peers":\[\([0-9]*\)\].*/\1/p' | grep .
}
waiter_known() {
	waiter_id >/dev/null
}
check "a waiting host peer shows in --status" wait_until 10 waiter_known
wid=$(waiter_id)
"$IVLAB" peer -s "$s" ring "$wid" 5
check "another host peer rings its vector 5" test $? -eq 0
wait $waiter
check "the waiter wakes (exit $?)" grep -q "^vector 5: 1 ring$" "$scratch/wait"
"$IVLAB" server --status --json -s "$s" >"$scratch/json"
check "--status --json is JSON with the right values" "${PYTHON3:-python3}" -c "
import json, sys
d = json.load(open(sys.argv[1]))
sys.exit(not (d['size'] == 2 << 30 and d['vectors'] == 8 and d['pid'] == int(sys.argv[2])
              and d['peers'] == [] and d['shm'] == 'memfd' and d['socket'] == sys.argv[3]))" \
	"$scratch/json" "$pid" "$s"
# The server may answer a status query before it has logged a disconnect.
check "the log file has connects and disconnects with ids" \
	wait_until 5 grep -q "ivlab-server\[$pid\]: peer $wid connected" "$log"
check "... and the disconnect" wait_until 5 grep -q "ivlab-server\[$pid\]: peer $wid disconnected" "$log"
mv "$log" "$log.1"
kill -HUP "$pid"
wait_until 10 test -e "$log"
check "SIGHUP reopens the log file" test -e "$log"

expect_error 1 "a server is already listening there" server --daemon -s "$s"
check "the running server is untouched" kill -0 "$pid"
# The pidfile is locked while its server lives: a second server given it is
# refused (its own --pidfile cleanup would remove the first's).
expect_error 1 "--pidfile: $pidfile is held by a running server (pid $pid)" \
	server --daemon -s "$scratch/second.sock" --pidfile "$pidfile"
check "the pidfile still names the first server" test "$(cat "$pidfile")" = "$pid"
check "the second server left no socket" test ! -e "$scratch/second.sock"
# Output lost on a full disk is an error.
"$IVLAB" server --status -s "$s" >/dev/full 2>"$scratch/err"
check "--status >/dev/full: exit 1" test $? -eq 1
check "... saying so" grep -q "^ivlab: cannot write the output: No space left on device$" "$scratch/err"
"$IVLAB" peer -s "$s" list >/dev/full 2>"$scratch/err"
check "peer list >/dev/full: exit 1" test $? -eq 1
check "... saying so" grep -q "^ivlab: cannot write the output: No space left on device$" "$scratch/err"
"$IVLAB" server --stop -s "$s"
check "--stop stops it" test $? -eq 0
# Gone, or a zombie its new parent has yet to reap.
gone() {
	state=$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)
	[ -z "$state" ] || [ "$state" = Z ]
}
check "the process is gone" gone "$pid"
check "socket, control socket and pidfile are removed" test ! -e "$s" -a ! -e "$s.ctl" -a ! -e "$pidfile"
check "the log says why it stopped" grep -q "SIGTERM: shutting down" "$log"

# Errors after the fork come back through the parent.
expect_error 1 "--pidfile:" server --daemon -s "$s" --pidfile "$scratch/no/such/dir/p.pid"
check "and leave no socket behind" test ! -e "$s" -a ! -e "$s.ctl"

# POSIX shared memory, and a stale one left by a crash.
shm_name=ivlab-test-$$
"$IVLAB" server --daemon -s "$s" --shm-name "$shm_name" --size 1M --pidfile "$pidfile"
check "--shm-name: /dev/shm/$shm_name exists, 1 MiB" test "$(stat -c %s "/dev/shm/$shm_name")" = 1048576
expect_error 1 "--shm-name: /dev/shm/$shm_name already exists (another server's" \
	server -s "$scratch/other.sock" --shm-name "$shm_name"
"$IVLAB" server --stop -s "$s"
check "and is removed at exit" test ! -e "/dev/shm/$shm_name"
# An object that exists (another user's, a crash's) is never adopted: not
# served, written, resized nor removed.
printf 'not yours' >"/dev/shm/$shm_name"
chmod 666 "/dev/shm/$shm_name"
expect_error 1 "--shm-name: /dev/shm/$shm_name already exists" \
	server --daemon -s "$s" --shm-name "$shm_name" --size 1M --pidfile "$scratch/shm.pid"
check "an existing shm object is left as it was" test "$(cat "/dev/shm/$shm_name")" = "not yours"
rm -f "/dev/shm/$shm_name"

# --log-file: a regular file, not through a symlink.
ln -s "$scratch/victim" "$scratch/link.log"
expect_error 1 "--log-file: $scratch/link.log: is a symbolic link (refused)" \
	server --daemon -s "$s" --log-file "$scratch/link.log" --pidfile "$scratch/log1.pid"
check "nothing is written through the symlink" test ! -e "$scratch/victim"
expect_error 1 "--log-file: /dev/null: not a regular file" \
	server --daemon -s "$s" --log-file /dev/null --pidfile "$scratch/log2.pid"
"$IVLAB" server --daemon -s "$s" --log-file "$scratch/new.log" --pidfile "$scratch/log3.pid"
check "a new log file is created 0640" test "$(stat -c %a "$scratch/new.log")" = 640
"$IVLAB" server --stop -s "$s"

# A file in a directory (tmpfs here; hugetlbfs works the same).
mkdir "$scratch/shm"
"$IVLAB" server --daemon -s "$s" --shm-dir "$scratch/shm" --size 8M
file=$(ls "$scratch/shm")
check "--shm-dir: a file of 8 MiB in the directory" test "$(stat -c %s "$scratch/shm/$file")" = 8388608
check "--status names it" grep -q "^shm: *file:$scratch/shm/ivlab-ivshmem" "$("$IVLAB" server --status -s "$s" >"$scratch/st"; echo "$scratch/st")"
"$IVLAB" server --stop -s "$s"
check "and it is removed at exit" test -z "$(ls "$scratch/shm")"

# hugetlbfs (root only: two 2 MiB huge pages are reserved for the test and
# given back after).
huge_ok=false
if [ "$(id -u)" -eq 0 ] && [ -w /proc/sys/vm/nr_hugepages ] &&
	grep -q '^Hugepagesize: *2048 kB' /proc/meminfo; then
	mkdir "$scratch/huge"
	huge_saved=$(cat /proc/sys/vm/nr_hugepages)
	echo $((huge_saved + 2)) >/proc/sys/vm/nr_hugepages 2>/dev/null
	if [ "$(cat /proc/sys/vm/nr_hugepages)" -ge $((huge_saved + 2)) ] &&
		mount -t hugetlbfs -o pagesize=2M none "$scratch/huge" 2>/dev/null; then
		huge_mounted=yes
		huge_ok=true
	fi
fi
if $huge_ok; then
	"$IVLAB" server --daemon -s "$s" --shm-dir "$scratch/huge" --size 4M
	check "--shm-dir on hugetlbfs: the server starts" test $? -eq 0
	"$IVLAB" peer -s "$s" fill 0x3ffff0 16 0x61 &&
		"$IVLAB" peer -s "$s" dump 0x3ffff0 16 >"$scratch/huge.dump"
	check "host peers write and read the huge page memory" grep -q "|aaaaaaaaaaaaaaaa|" "$scratch/huge.dump"
	"$IVLAB" server --stop -s "$s"
	check "the hugetlbfs file is removed at exit" test -z "$(ls "$scratch/huge")"
else
	ok "# SKIP hugetlbfs: not root, or no 2 MiB huge pages to reserve"
fi

# Foreground: SIGTERM cleans up, a stale socket left by a crash is replaced.
"$IVLAB" server -s "$s" 2>"$scratch/fg.log" &
fg=$!
pids="$pids $fg"
wait_until 10 test -S "$s.ctl"
kill -9 $fg
wait $fg 2>/dev/null
check "kill -9 leaves a stale socket" test -S "$s"
"$IVLAB" server -s "$s" 2>"$scratch/fg.log" &
fg=$!
pids="$pids $fg"
serves() {
	"$IVLAB" server --status -s "$s" 2>/dev/null | grep -q "^pid: *$fg$"
}
check "a new server replaces the stale socket" wait_until 10 serves
"$IVLAB" peer -s "$s" list >/dev/null
kill -TERM $fg
wait $fg
check "SIGTERM: exit 0" test $? -eq 0
check "the foreground log went to stderr" grep -q "^ivlab server: peer 0 connected" "$scratch/fg.log"
check "sockets removed" test ! -e "$s" -a ! -e "$s.ctl"
tap_done
