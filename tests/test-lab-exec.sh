#!/bin/sh
# test-lab-exec.sh: `ivlab exec` and `ivlab cp` end to end on a lab of one
# x86_64 and one aarch64 guest over a real libvirtd: exit statuses, output
# streamed as it comes, --all, timeouts, Ctrl-C, 100 MiB copied both ways,
# bad input and a guest that is down.
. "$top_srcdir/tests/lib.sh"
. "$top_srcdir/tests/lab-lib.sh"

for arch in x86_64 aarch64; do
	missing=$(image_tools_missing $arch)
	[ -z "$missing" ] || skip_or_fail "$arch images need: $missing"
done

name=${IVLAB_TEST_LAB_NAME:-ivlabtest-exec}
lab=$scratch/$name.xml
cat >"$lab" <<EOF
<?xml version="1.0"?>
<lab name="$name">
  <region name="bell" size="1MiB" mode="doorbell" vectors="2"/>
  <guest name="xa" arch="x86_64" memory="448MiB">
    <attach region="bell"/>
  </guest>
  <guest name="ab" arch="aarch64" memory="192MiB">
    <attach region="bell"/>
  </guest>
</lab>
EOF
lab_names=$name
"$IVLAB" -q down "$name" >/dev/null 2>&1 || true
if run_logged up "$IVLAB" -f "$lab" up; then
	ok "up: a lab of an x86_64 and an aarch64 guest"
else
	not_ok "up"
	tap_done
	exit 1
fi

ivx() {
	"$IVLAB" -f "$lab" "$@"
}

# expect_status DESC STATUS CMD...: the exit status, output in $out/$err
expect_status() {
	_desc=$1
	_want=$2
	shift 2
	"$@" >"$scratch/out" 2>"$scratch/err"
	_got=$?
	out=$(cat "$scratch/out")
	err=$(cat "$scratch/err")
	if [ "$_got" -eq "$_want" ]; then
		ok "$_desc"
	else
		not_ok "$_desc: exit $_got, expected $_want"
		diag "stdout: $out" "stderr: $err"
	fi
}

expect_status "exec: a command's exit status 0" 0 ivx exec xa uname -m
check "exec: its output, from the x86_64 guest" test "$out" = x86_64
expect_status "exec: exit status 3 comes back" 3 ivx exec ab 'echo to-out; echo to-err >&2; exit 3'
check "exec: stdout and stderr stay apart" test "$out" = to-out -a "$err" = to-err
expect_status "exec: arguments are quoted one by one; -l after the guest is the command's" 0 \
	ivx exec ab -- printf '%s|' 'a b' '$HOME' -l
check "exec: printf saw its three arguments untouched" test "$out" = 'a b|$HOME|-l|'
expect_status "exec GUEST COMMAND without --: ls -l /" 0 ivx exec xa ls -l /
check "exec: ls -l listed /" sh -c "grep -q ' sbin' '$scratch/out'"

expect_status "exec --all: 0 only when every guest gives 0" 5 \
	ivx exec --all -- 'uname -m; [ $(uname -m) = x86_64 ] || exit 5'
check "exec --all: each line prefixed with its guest" \
	sh -c "grep -qx 'xa: x86_64' '$scratch/out' && grep -qx 'ab: aarch64' '$scratch/out'"
check "exec --all: a table of statuses on stderr" \
	sh -c "grep -q '^xa  *exit 0' '$scratch/err' && grep -q '^ab  *exit 5' '$scratch/err'"

# streaming: the first line arrives while the command still runs
start=$(date +%s.%N)
ivx exec xa 'echo first; sleep 5; echo second' | while read -r line; do
	echo "$(date +%s.%N) $line"
done >"$scratch/stream"
first_at=$(awk -v s="$start" '$2 == "first" { printf "%.1f", $1 - s }' "$scratch/stream")
second_at=$(awk -v s="$start" '$2 == "second" { printf "%.1f", $1 - s }' "$scratch/stream")
check "exec streams: the first line after ${first_at:-?} s, the second after ${second_at:-?} s" \
	awk -v f="${first_at:-99}" -v s="${second_at:-0}" 'BEGIN { exit !(s - f >= 4.5) }'

start=$(date +%s)
expect_status "exec --timeout 1: the command is killed, exit 124 as timeout(1)" 124 \
	ivx exec --timeout 1 xa sleep 60
check "exec --timeout: it took less than 10 s" test $(($(date +%s) - start)) -lt 10
expect_status "exec: a command killed by signal 9 gives 137" 137 ivx exec ab 'kill -9 $$'

# Ctrl-C: the remote commands go, exec gives 130
start=$(date +%s)
"$IVLAB" -f "$lab" exec --all -- 'echo started; exec sleep 78' >"$scratch/int.out" 2>"$scratch/int.err" &
exec_pid=$!
wait_until 30 sh -c "[ \$(grep -c started '$scratch/int.out') -eq 2 ]"
kill -INT $exec_pid
wait $exec_pid
int_status=$?
check "exec: Ctrl-C ends it with 130 at once" test $int_status -eq 130 -a $(($(date +%s) - start)) -lt 20
diag "$(cat "$scratch/int.err")"
expect_status "exec: after Ctrl-C no guest runs the command any more" 0 \
	ivx exec --all -- '! ps | grep -q "[s]leep 78"'

# two commands on one guest: the second waits for the first's channel
# instead of taking it over (the first would lose its answers)
"$IVLAB" -f "$lab" exec xa 'echo holding; sleep 4; echo released' >"$scratch/c1.out" 2>&1 &
c1_pid=$!
wait_until 30 grep -q holding "$scratch/c1.out"
expect_status "exec: a second exec on a busy guest waits its turn, then runs" 0 \
	ivx exec xa echo second
check "exec: ... and said whom it waited for" sh -c "grep -q 'waiting for another ivlab command (pid $c1_pid' '$scratch/err'"
wait $c1_pid
c1_status=$?
check "exec: the first exec kept its channel to the end (exit $c1_status)" \
	sh -c "[ $c1_status -eq 0 ] && grep -q released '$scratch/c1.out'"
"$IVLAB" -f "$lab" exec xa 'echo holding; sleep 4' >"$scratch/c1.out" 2>&1 &
c1_pid=$!
wait_until 30 grep -q holding "$scratch/c1.out"
ivx status >"$scratch/status.out" 2>&1
check "status: a guest whose agent is busy is reported busy, not taken over" \
	grep -q "in use by another ivlab command" "$scratch/status.out"
wait $c1_pid
check "exec: ... and the exec status looked at still ended well" test $? -eq 0

# cp: 100 MiB each way, checked
head -c 104857600 /dev/urandom >"$scratch/big"
want=$(sha256sum <"$scratch/big" | cut -d' ' -f1)
start=$(date +%s.%N)
expect_status "cp FILE GUEST:PATH: 100 MiB into the x86_64 guest" 0 ivx cp "$scratch/big" xa:/tmp/
up_s=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}")
expect_status "cp: the guest's sha256sum matches" 0 ivx exec xa sha256sum /tmp/big
check "cp: sha256 in the guest is the local one" test "${out%% *}" = "$want"
start=$(date +%s.%N)
expect_status "cp GUEST:PATH FILE: 100 MiB back out" 0 ivx cp xa:/tmp/big "$scratch/back"
down_s=$(awk "BEGIN{printf \"%.1f\", $(date +%s.%N) - $start}")
check "cp: the copy back has the same sha256" \
	test "$(sha256sum <"$scratch/back" | cut -d' ' -f1)" = "$want"
diag "100 MiB to and from the x86_64 guest:" \
	"in: $up_s s ($(awk "BEGIN{printf \"%.1f\", 104.8576 / $up_s}") MB/s), out: $down_s s ($(awk "BEGIN{printf \"%.1f\", 104.8576 / $down_s}") MB/s)"
ivx exec xa 'rm -f /tmp/big' >/dev/null 2>&1

expect_status "cp: a file into the aarch64 guest" 0 ivx cp "$top_srcdir/README.md" ab:/tmp/readme
expect_status "cp: and back out" 0 ivx cp ab:/tmp/readme "$scratch/readme"
check "cp: the aarch64 round trip is the same file" cmp "$top_srcdir/README.md" "$scratch/readme"
expect_status "cp: a remote file that is not there" 1 ivx cp xa:/nonexistent "$scratch/x"
check "cp: ... says so" sh -c "grep -q 'No such file' '$scratch/err'"
expect_status "cp: a local file that cannot be read" 1 ivx cp "$scratch/nonexistent" xa:/tmp/x
check "cp: ... says which" sh -c "grep -q 'cannot read $scratch/nonexistent' '$scratch/err'"
expect_status "cp: into a directory that is not there" 1 ivx cp "$top_srcdir/README.md" xa:/no/such/dir/x
check "cp: nothing half-written left, here or there" sh -c \
	"! ls '$scratch' | grep -q ivlab-part && ! '$IVLAB' -f '$lab' exec xa 'ls /tmp /no 2>/dev/null' | grep -q ivlab-part"
expect_status "cp: no such guest" 1 ivx cp "$top_srcdir/README.md" nope:/tmp/x
check "cp: ... names it" sh -c "grep -q \"no guest 'nope'\" '$scratch/err'"
expect_status "cp: two local files is a usage error" 2 ivx cp a b

# bad input
expect_status "exec: an unknown guest" 1 ivx exec nope true
check "exec: ... names it" sh -c "grep -q \"no guest 'nope'\" '$scratch/err'"
expect_status "exec: no command is a usage error" 2 ivx exec xa
expect_status "exec: --all and guests is a usage error" 2 ivx exec --all xa -- true

# a guest that is down
virsh -q destroy "$name-ab" >/dev/null 2>&1
expect_status "exec: a guest that is down gives 255" 255 ivx exec ab true
check "exec: ... and says it is not running" sh -c "grep -q 'not running' '$scratch/err'"
expect_status "exec --all with a guest down: 255, the others still run" 255 ivx exec --all -- echo hi
check "exec --all: the running guest's output and the down guest in the table" \
	sh -c "grep -qx 'xa: hi' '$scratch/out' && grep -q '^ab  *not run:' '$scratch/err'"

check "down" run_logged down "$IVLAB" -f "$lab" down
check_clean "$name" "after down nothing of the lab remains"
tap_done
