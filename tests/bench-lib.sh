# bench-lib.sh: what the benchmarks (tests/bench-*.sh) share. Sourced with
# bench=NAME and top_srcdir set; sets IVLAB (default: the build's ivlab),
# LIBVIRT_DEFAULT_URI and scratch (a fresh directory the caller's EXIT trap
# removes), and defines die, median, renamed and timed.
IVLAB=${IVLAB:-$top_srcdir/ivlab}
export LIBVIRT_DEFAULT_URI=${LIBVIRT_DEFAULT_URI:-qemu:///system}
scratch=$(mktemp -d "/tmp/bench-$bench-XXXXXX")

die() {
	echo "bench-$bench: $*" >&2
	exit 1
}

# median FILE: the median of the numbers in FILE, one a line.
median() {
	sort -n "$1" | awk '{ v[NR] = $1 } END { print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# renamed LAB NAME: the lab file LAB with its lab called NAME, on stdout.
renamed() {
	sed "s/<lab name=\"[^\"]*\"/<lab name=\"$2\"/" "$1"
}

# timed FILE COMMAND...: run COMMAND; if it succeeds, append its wall
# seconds to FILE. Returns COMMAND's status.
timed() {
	timed_file=$1
	shift
	timed_start=$(date +%s.%N)
	"$@" || return
	echo "$timed_start $(date +%s.%N)" | awk '{ printf "%.2f\n", $2 - $1 }' >>"$timed_file"
}
