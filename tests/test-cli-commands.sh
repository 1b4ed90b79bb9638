#!/bin/sh
# test-cli-commands.sh: every command's option parser against bad input: the
# exit status (2 usage, 1 failure), a clear "ivlab: what: detail" message, no
# crash, no hang, nothing left behind, and no memory errors under valgrind.
# Needs no running lab: libvirt URIs point at a socket that does not exist.
. "$top_srcdir/tests/lib.sh"

nowhere='qemu+unix:///system?socket=/nonexistent'
IVLAB_STATE_DIR=$scratch/state
export IVLAB_STATE_DIR
sock=$scratch/server.sock
sha=0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef

run=
if [ -n "${VALGRIND:-}" ]; then
	run="$VALGRIND -q --error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite"
fi

# The cases, one a line: STATUS|PATTERN|ARGS (ARGS split on blanks; "''" is
# an empty argument). PATTERN must be on the last line of stderr for a
# failure, anywhere in stdout for --help.
cat >"$scratch/cases" <<EOF
2|^ivlab: Unknown option --bogus|--bogus xml
2|^ivlab: no command given|
2|^ivlab: Missing argument for -c|-c
2|^ivlab: unknown command: 'nosuch'|nosuch
2|^ivlab: console: name one guest|-c $nowhere console
2|^ivlab: console: name one guest|-c $nowhere console a b
2|^ivlab: console: Unknown option --bogus|-c $nowhere console --bogus x
1|has no guest 'nosuch'|-c $nowhere console nosuch
1|^ivlab: libvirt: cannot connect to|-c $nowhere console x86a
2|^ivlab: down: unexpected argument 'b'|-c $nowhere down a b
2|^ivlab: down: 'bad/name' is not a lab name|-c $nowhere down bad/name
2|^ivlab: down: '' is not a lab name|-c $nowhere down ''
2|^ivlab: down: Unknown option --bogus|-c $nowhere down --bogus
1|^ivlab: libvirt: cannot connect to|-c $nowhere down somelab
2|^ivlab: help: too many arguments|help xml up
2|^ivlab: unknown command: 'nosuch'|help nosuch
2|^ivlab: help: Unknown option --bogus|help --bogus
2|^ivlab: image: say build, list or fetch|image
2|^ivlab: image: unknown subcommand 'bogus'|image bogus
2|^ivlab: image: Unknown option --bogus|image --bogus
2|^ivlab: image: Unknown option --bogus|image build --bogus
2|--arch must be x86_64, aarch64 or all, not 'riscv'|image build --arch riscv
2|--arch must be x86_64, aarch64 or all, not ''|image build --arch ''
2|Missing argument for --arch|image build --arch
2|^ivlab: image: build: unexpected argument 'extra'|image build extra
2|--kernel-url needs --kernel-sha256|image build --arch x86_64 --kernel-url http://127.0.0.1:9/k
2|--kernel-sha256 must be 64 hex digits, not 'zz'|image build --arch x86_64 --kernel-url http://127.0.0.1:9/k --kernel-sha256 zz
2|--kernel-sha256 goes with --kernel-url|image build --kernel-sha256 $sha
2|--kernel-url and --kernel exclude each other|image build --kernel-url http://127.0.0.1:9/k --kernel /k
2|--kernel needs --kernel-build-dir|image build --arch x86_64 --kernel /k
2|--kernel-build-dir goes with --kernel or --kernel-url|image build --kernel-build-dir /tmp
2|a custom kernel is for one architecture|image build --kernel /k --kernel-build-dir /tmp
2|^ivlab: image: list: unexpected argument 'extra'|image list extra
2|^ivlab: image: fetch needs one URL|image fetch
2|^ivlab: image: fetch needs one URL|image fetch a b --sha256 $sha
2|^ivlab: image: fetch needs --sha256|image fetch http://127.0.0.1:9/x
2|--sha256 must be 64 hex digits, not '12'|image fetch http://127.0.0.1:9/x --sha256 12
2|^ivlab: peer: --socket PATH is required|peer
2|^ivlab: peer: unknown action 'bogus'|peer -s $sock bogus
2|^ivlab: peer: 'ring' takes 2 arguments|peer -s $sock ring 1
2|^ivlab: peer: 'list' takes 0 arguments|peer -s $sock list extra
2|^ivlab: peer: 'wait' takes 1 argument|peer -s $sock wait
2|^ivlab: peer: 'fill' takes 3 arguments|peer -s $sock fill 0 1
2|^ivlab: peer: Unknown option -1|peer -s $sock ring -1 0
2|PEER: '65536' is not a number in 0..65535|peer -s $sock ring 65536 0
2|PEER: '+1' is not a number|peer -s $sock ring +1 0
2|PEER: '0x' is not a number|peer -s $sock ring 0x 0
2|PEER: '' is not a number|peer -s $sock ring '' 0
2|VECTOR: '64' is not a number in 0..63|peer -s $sock ring 0 64
2|VECTOR: '12abc' is not a number|peer -s $sock wait 12abc
2|VECTOR: '99999999999999999999' is not a number|peer -s $sock wait 99999999999999999999
2|BYTE: '256' is not a number in 0..255|peer -s $sock fill 0 1 256
2|^ivlab: peer: 'junk' is not an offset|peer -s $sock dump junk 1
2|^ivlab: peer: '' is not an offset|peer -s $sock dump '' 1
2|^ivlab: peer: '12abc' is not a length|peer -s $sock dump 0 12abc
2|^ivlab: peer: '99999999999999999999G' is not a length|peer -s $sock fill 0 99999999999999999999G 1
2|^ivlab: peer: '0x' is not an offset|peer -s $sock dump 0x 1
2|--timeout: -5 is not a number of milliseconds|peer -s $sock --timeout -5 list
2|--peers: -3 is not a number of peers|peer -s $sock --peers -3 list
2|Cannot parse integer value .*12abc.* for --timeout|peer -s $sock --timeout 12abc
2|for --timeout out of range|peer -s $sock --timeout 99999999999
2|Missing argument for --socket|peer --socket
1|^ivlab: $sock: connect: No such file or directory|peer -s $sock
1|^ivlab: $sock: connect: No such file or directory|peer -s $sock dump 0 16
2|^ivlab: server: --socket PATH is required|server
2|^ivlab: server: unexpected argument 'x'|server -s $sock x
2|^ivlab: server: Unknown option --bogus|server -s $sock --bogus
2|--vectors: '0' is not a number in 1..64|server -s $sock --vectors 0
2|--vectors: '65' is not a number in 1..64|server -s $sock --vectors 65
2|--vectors: '-1' is not a number|server -s $sock --vectors -1
2|--vectors: '' is not a number|server -s $sock --vectors ''
2|--vectors: '4x' is not a number|server -s $sock --vectors 4x
2|--size: 3MiB is not a power of two|server -s $sock --size 3M
2|--size: '' is not a size|server -s $sock --size ''
2|--size: '12abc' is not a size|server -s $sock --size 12abc
2|--size: '-4M' is not a size|server -s $sock --size -4M
2|--size: '99999999999999999999G' is not a size|server -s $sock --size 99999999999999999999G
2|--size: '17179869184G' is not a size|server -s $sock --size 17179869184G
2|--size: 0B is not a power of two|server -s $sock --size 0
2|--max-peers: '0' is not a number in 1..65536|server -s $sock --max-peers 0
2|--max-peers: '65537' is not a number|server -s $sock --max-peers 65537
2|--stall-timeout: '12abc' is not a number|server -s $sock --stall-timeout 12abc
2|--stall-timeout: '0' is not a number|server -s $sock --stall-timeout 0
2|--socket-mode: '999' is not an octal mode|server -s $sock --socket-mode 999
2|--socket-mode: '01777' is not an octal mode|server -s $sock --socket-mode 01777
2|--status and --stop exclude each other|server -s $sock --status --stop
2|--json goes with --status|server -s $sock --json
2|--daemon and --foreground exclude each other|server -s $sock -d -F
2|--shm-name and --shm-dir exclude each other|server -s $sock --shm-name a --shm-dir /tmp
1|^ivlab: |server -s $sock --status
2|^ivlab: restart: --timeout: 0 is not in 1..86400 seconds|-c $nowhere restart --timeout 0
2|^ivlab: restart: Unknown option --bogus|-c $nowhere restart --bogus
2|^ivlab: restart: the lab 'default' .* has no guest 'nosuch'|-c $nowhere restart x86a nosuch
1|^ivlab: libvirt: cannot connect to|-c $nowhere restart x86a
2|^ivlab: status: unexpected argument 'extra'|-c $nowhere status extra
2|^ivlab: status: Unknown option --bogus|-c $nowhere status --bogus
1|^ivlab: libvirt: cannot connect to|-c $nowhere status
2|^ivlab: test: --timeout: -1 is not in 1..86400 seconds|-c $nowhere test --timeout -1
2|^ivlab: test: --timeout: 0 is not in 1..86400 seconds|-c $nowhere test --timeout 0
2|^ivlab: test: --timeout: 3000000 is not in 1..86400 seconds|-c $nowhere test --timeout 3000000
2|Cannot parse integer value .*12abc.* for --timeout|-c $nowhere test --timeout 12abc
2|Cannot parse integer value .* for --timeout|-c $nowhere test --timeout ''
2|for --timeout out of range|-c $nowhere test --timeout 99999999999
2|^ivlab: test: unexpected argument 'x'|-c $nowhere test x
2|^ivlab: test: Unknown option --bogus|-c $nowhere test --bogus
2|Missing argument for --filter|-c $nowhere test --filter
1|^ivlab: libvirt: cannot connect to|-c $nowhere test --timeout 86400
2|^ivlab: up: --timeout: -5 is not in 1..86400 seconds|-c $nowhere up -t -5
2|^ivlab: up: --timeout: 86401 is not in 1..86400 seconds|-c $nowhere up --timeout 86401
2|Cannot parse integer value .*12abc.* for --timeout|-c $nowhere up --timeout 12abc
2|^ivlab: up: unexpected argument 'x'|-c $nowhere up x
2|^ivlab: up: Unknown option --bogus|-c $nowhere up --bogus
1|^ivlab: libvirt: cannot connect to|-c $nowhere up
1|^ivlab: up: qemu+ssh://root@remote.example.org/system is another host's libvirt: .* local URI only|-c qemu+ssh://root@remote.example.org/system up
1|^ivlab: up: qemu+tcp://192.0.2.7/system is another host's libvirt|-c qemu+tcp://192.0.2.7/system up --timeout 10
1|^ivlab: libvirt: cannot connect to qemu+tcp://remote.invalid/system|-c qemu+tcp://remote.invalid/system status
1|^ivlab: libvirt: cannot connect to qemu+tcp://remote.invalid/system|-c qemu+tcp://remote.invalid/system down
1|^ivlab: libvirt: cannot connect to qemu+tcp://remote.invalid/system|-c qemu+tcp://remote.invalid/system console x86a
2|^ivlab: xml: Unknown option --bogus|xml --bogus
1|has no guest 'nosuch'|xml nosuch
1|/nonexistent.xml: no such lab file|-f /nonexistent.xml xml
1|/dev/null: not a regular file|-f /dev/null xml
1|$scratch: not a regular file|-f $scratch xml
1|/etc/hostname:1: not well-formed XML|-f /etc/hostname xml
EOF
for cmd in console down help image peer server status test up xml; do
	echo "0|^Usage:|$cmd --help" >>"$scratch/cases"
done
echo "0|^Usage:|help peer" >>"$scratch/cases"

# run_case N LINE: one case in the background's files $scratch/N.*
run_case() {
	n=$1 args=${2#*|}
	args=${args#*|}
	# shellcheck disable=SC2086
	set -f
	eval "set -- $(printf '%s' "$args" | sed "s/[^ ][^ ]*/'&'/g; s/''''/\"\"/g")"
	set +f
	status=0
	timeout 120 $run "$IVLAB" "$@" >"$scratch/$n.out" 2>"$scratch/$n.err" </dev/null || status=$?
	echo "$status" >"$scratch/$n.status"
}

# As many at a time as there are CPUs: valgrind makes each take seconds.
jobs=$(nproc 2>/dev/null || echo 2)
n=0
while IFS= read -r line; do
	n=$((n + 1))
	run_case "$n" "$line" &
	[ $((n % jobs)) -eq 0 ] && wait
done <"$scratch/cases"
wait

n=0
while IFS= read -r line; do
	n=$((n + 1))
	want=${line%%|*}
	rest=${line#*|}
	pattern=${rest%%|*}
	args=${rest#*|}
	status=$(cat "$scratch/$n.status")
	if [ "$want" -eq 0 ]; then
		where=$scratch/$n.out
		last=$where
	else
		where=$scratch/$n.err
		grep -v '^==[0-9]*==' "$where" | tail -n 1 >"$scratch/$n.last"
		last=$scratch/$n.last
	fi
	if [ "$status" -eq 99 ]; then
		not_ok "ivlab $args: valgrind found memory errors"
		diag "$(cat "$scratch/$n.err")"
	elif [ "$status" -eq 124 ]; then
		not_ok "ivlab $args: hung (killed after 120 s)"
	elif [ "$status" -ne "$want" ]; then
		not_ok "ivlab $args: exit status $status, expected $want"
		diag "$(cat "$scratch/$n.err")"
	elif ! grep -q -e "$pattern" "$last"; then
		not_ok "ivlab $args: lacks '$pattern'"
		diag "$(cat "$scratch/$n.err" "$scratch/$n.out")"
	elif [ "$want" -ne 0 ] && ! grep -q '^ivlab: ' "$last"; then
		not_ok "ivlab $args: the error does not start with 'ivlab: '"
		diag "$(cat "$last")"
	elif [ "$want" -eq 2 ] && [ "$args" != "" ] && ! grep -q "see 'ivlab .*help'" "$last"; then
		not_ok "ivlab $args: a usage error without a pointer to --help"
		diag "$(cat "$last")"
	else
		ok "ivlab $args: $want${run:+ (valgrind clean)}"
	fi
done <"$scratch/cases"

# Nothing half-created: no state directory, no server socket.
leftover=$(ls -A "$scratch/state" 2>/dev/null)
check "bad input left no state behind${leftover:+: $leftover}" [ -z "$leftover" ]
check "bad server options created no socket" [ ! -e "$sock" ] && [ ! -e "$sock.ctl" ]

tap_done
