# test-server-qemu.sh: `ivlab server` with its real clients: three
# qemu-system-x86_64 and one qemu-system-aarch64 (-M virt) with
# ivshmem-doorbell devices, paused, no guest OS. Distinct ids, all vectors
# seen by the host peer, notifications kept up with, kills delivered as
# disconnects, and the server outlives them all.
. "$top_srcdir/tests/lib.sh"

command -v qemu-system-x86_64 >/dev/null 2>&1 ||
	skip_or_fail "qemu-system-x86_64 not found (apt-get install qemu-system-x86)"
command -v qemu-system-aarch64 >/dev/null 2>&1 ||
	skip_or_fail "qemu-system-aarch64 not found (apt-get install qemu-system-arm)"

vectors=4
sock=$scratch/region.sock
qemu_pids=
server_pid=
monitor_pid=

cleanup() {
	for pid in $qemu_pids $monitor_pid $server_pid; do
		kill "$pid" 2>/dev/null
	done
	for pid in $qemu_pids $monitor_pid $server_pid; do
		wait "$pid" 2>/dev/null
	done
	rm -rf "$scratch"
}
trap cleanup EXIT

peer_ids() {
	"$IVLAB" server --status --json --socket "$sock" 2>/dev/null |
		sed -n 's/.*"peers":\[\(.*\)\].*/\1/p' | tr -d ' '
}

peer_count_is() {
	ids=$(peer_ids)
	[ "$(echo "$ids" | tr ',' '\n' | grep -c .)" -eq "$1" ]
}

has_line() {
	grep -q "$2" "$1" 2>/dev/null
}

"$IVLAB" server --socket "$sock" --vectors $vectors --size 1M \
	--log-file "$scratch/server.log" &
server_pid=$!
check "the server starts" wait_until 10 test -S "$sock.ctl"

# One at a time, so the n-th QEMU must get id n-1.
start_qemu() {
	arch=$1
	machine=$2
	shift 2
	before=$(peer_ids | tr ',' '\n' | grep -c .)
	"qemu-system-$arch" -S -display none -nodefaults -no-user-config -machine "$machine" \
		"$@" -m 64 -monitor none -serial none \
		-chardev socket,path="$sock",id=ivshmem \
		-device ivshmem-doorbell,chardev=ivshmem,vectors=$vectors \
		>"$scratch/qemu-$n.log" 2>&1 &
	qemu_pids="$qemu_pids $!"
	eval "qemu_$n=$!"
	n=$((n + 1))
	wait_until 20 peer_count_is $((before + 1))
}
n=0
check "qemu-system-x86_64 #1 connects" start_qemu x86_64 pc,accel=tcg
check "qemu-system-x86_64 #2 connects" start_qemu x86_64 pc,accel=tcg
check "qemu-system-x86_64 #3 connects (q35)" start_qemu x86_64 q35,accel=tcg
check "qemu-system-aarch64 -M virt connects" start_qemu aarch64 virt,accel=tcg -cpu cortex-a57
ids=$(peer_ids)
check "the four QEMUs hold ids 0,1,2,3 (got $ids)" test "$ids" = "0,1,2,3"

"$IVLAB" peer --socket "$sock" --peers 4 --timeout 10000 list >"$scratch/list" 2>"$scratch/list.err"
check "the host peer sees four peers (exit $?)" test "$(grep -c '^peer ' "$scratch/list")" -eq 4
check "each with $vectors vectors" test "$(grep -c "^peer [0-3]: $vectors vectors$" "$scratch/list")" -eq 4
check "and got an id of its own (4)" grep -q "^self 4: $vectors vectors, 1MiB shared" "$scratch/list"
diag "$(cat "$scratch/list" "$scratch/list.err")"

# QEMU must read its notifications: 100 host peers come and go, 500
# notifications to each QEMU, more than a socket buffer holds.
i=0
while [ $i -lt 100 ]; do
	"$IVLAB" peer --socket "$sock" list >/dev/null || break
	i=$((i + 1))
done
check "100 host peers come and go" test $i -eq 100
caught_up() {
	"$IVLAB" server --status --json --socket "$sock" | grep -q '"backlogged":0,'
}
check "all four QEMUs read all 100 x (4 connects + 1 disconnect)" wait_until 10 caught_up
check "and are all still connected" test "$(peer_ids)" = "0,1,2,3"
alive=0
for pid in $qemu_pids; do
	kill -0 "$pid" 2>/dev/null && alive=$((alive + 1))
done
check "all four QEMUs are still running" test $alive -eq 4

"$IVLAB" peer --socket "$sock" --timeout 60000 monitor >"$scratch/monitor" 2>&1 &
monitor_pid=$!
check "a monitoring host peer joins" wait_until 10 has_line "$scratch/monitor" "^self "

# kill_and_expect SIGNAL PID PEER_ID
kill_and_expect() {
	kill "-$1" "$2"
	wait "$2" 2>/dev/null
	wait_until 10 has_line "$scratch/monitor" "^disconnected $3\$"
}
# shellcheck disable=SC2154
check "killing x86_64 #2 delivers the disconnect of peer 1" kill_and_expect TERM "$qemu_1" 1
check "killing the aarch64 QEMU delivers the disconnect of peer 3" kill_and_expect TERM "$qemu_3" 3
check "killing x86_64 #1 delivers the disconnect of peer 0" kill_and_expect TERM "$qemu_0" 0
check "kill -9 of x86_64 #3 delivers the disconnect of peer 2" kill_and_expect KILL "$qemu_2" 2
qemu_pids=
check "the server survives them all" kill -0 "$server_pid"
ids=$(peer_ids)
check "and serves only the monitor now (peers: $ids)" test "$ids" = "105"
check "the log has every QEMU's connect and disconnect" \
	test "$(grep -c 'peer [0-3] \(connected\|disconnected\)' "$scratch/server.log")" -eq 8

n=4
check "a new QEMU is served after that (id 106)" start_qemu x86_64 pc,accel=tcg
check "with a fresh id" test "$(peer_ids)" = "105,106"

kill "$monitor_pid"
wait "$monitor_pid" 2>/dev/null
monitor_pid=
kill "$server_pid"
wait "$server_pid"
status=$?
server_pid=
check "SIGTERM stops the server cleanly (exit $status)" test $status -eq 0
check "its sockets are gone" test ! -e "$sock" -a ! -e "$sock.ctl"
[ "$test_failed" -eq 0 ] || diag "$(tail -20 "$scratch/server.log")" "$(cat "$scratch"/qemu-*.log)"
tap_done
