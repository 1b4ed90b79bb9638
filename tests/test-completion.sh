#!/bin/sh
# test-completion.sh: the bash completion (src/ivlab.bash) in a real bash
# with bash-completion loaded: COMP_WORDS/COMP_CWORD as bash sets them on
# <Tab>, the function called, COMPREPLY compared with what each case wants.
. "$top_srcdir/tests/lib.sh"

command -v bash >/dev/null 2>&1 || skip_or_fail "bash not found"
loader=/usr/share/bash-completion/bash_completion
[ -f "$loader" ] || skip_or_fail "$loader not found (Debian package bash-completion)"

mkdir "$scratch/work" "$scratch/work/sub" "$scratch/state"
touch "$scratch/work/lab.xml" "$scratch/work/notes.txt"
cp "$top_srcdir/domains/pair.xml" "$scratch/work/pair.xml"

# complete LINE: the sorted candidates for the last word of LINE (a trailing
# blank: an empty word), "ivlab" being this build's.
complete_line() {
	(cd "$scratch/work" && IVLAB_STATE_DIR="$scratch/state" bash -c '
		. "$1"
		. "$2"
		read -r -a COMP_WORDS <<<"$3"
		case $3 in *" ") COMP_WORDS+=("") ;; esac
		COMP_WORDS[0]=$4
		COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
		COMP_LINE=$4${3#ivlab}
		COMP_POINT=${#COMP_LINE}
		_ivlab ivlab "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
		printf "%s\n" "${COMPREPLY[@]}" | sort | tr "\n" " "
	' - "$loader" "$top_srcdir/src/ivlab.bash" "$1" "$IVLAB")
}

# expect LINE WANT: the candidates are exactly WANT (space-separated, sorted).
expect() {
	got=$(complete_line "$1")
	got=${got% }
	if [ "$got" = "$2" ]; then
		ok "'$1<Tab>' offers: $2"
	else
		not_ok "'$1<Tab>' offers: $2"
		diag "got: $got"
	fi
}

# has LINE WORD...: the candidates include every WORD.
has() {
	line=$1
	shift
	got=" $(complete_line "$line")"
	missing=
	for word; do
		case $got in *" $word "*) ;; *) missing="$missing $word" ;; esac
	done
	if [ -z "$missing" ]; then
		ok "'$line<Tab>' offers $*"
	else
		not_ok "'$line<Tab>' offers $*"
		diag "missing:$missing; got:$got"
	fi
}

commands=$("$IVLAB" help | sed -n 's/^  \([a-z][a-z-]*\)  .*/\1/p' | sort | tr '\n' ' ')
expect "ivlab " "${commands% }"
expect "ivlab st" "status"
expect "ivlab -f pair.xml d" "down"
has "ivlab -" --connect --lab --verbose --quiet --version --help -c -f
expect "ivlab up --" "--help --keep-failed --timeout"
expect "ivlab status --" "--help --json"
has "ivlab test --" --tap --junit --filter --timeout --no-restart
has "ivlab server --" --socket --size --vectors --shm-name --socket-group --status --stop
expect "ivlab image " "build fetch list"
expect "ivlab image l" "list"
expect "ivlab image list --" "--help --json"
has "ivlab image build --" --arch --kernel-url --kernel-sha256 --kernel --kernel-build-dir --force
expect "ivlab image build --arch " "aarch64 all x86_64"
expect "ivlab image build -a x" "x86_64"
expect "ivlab bench b" "boot"
expect "ivlab bench boot --r" "--runs"
expect "ivlab bench --it" "--iterations"
expect "ivlab console " "arm x86a x86b"
expect "ivlab console x86" "x86a x86b"
expect "ivlab console x86a " ""
expect "ivlab -f pair.xml console " "left right"
expect "ivlab --lab pair.xml xml " "left right"
expect "ivlab -f pair.xml xml left r" "right"
expect "ivlab -f pair.xml xml --" "--accel --help"
expect "ivlab -f " "lab.xml pair.xml sub"
expect "ivlab -c qemu:///system -f p" "pair.xml"
expect "ivlab -c qemu:///s" "qemu:///session qemu:///system"
expect "ivlab help im" "image"
tap_done
