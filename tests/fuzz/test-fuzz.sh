#!/bin/sh
# test-fuzz.sh: the fuzz targets in make check: each runs over its
# committed crashes (regression tests: each once), its seeds, then fuzzes
# for FUZZ_CHECK_SECONDS (default 2) with a throw-away corpus. The long
# runs are `make fuzz FUZZ_SECONDS=N`.
. "$top_srcdir/tests/lib.sh"

if [ "${IVLAB_FUZZ:-}" != yes ]; then
	skip_or_fail "no clang with libFuzzer (configure found none: the Debian package clang)"
fi
seconds=${FUZZ_CHECK_SECONDS:-2}
build=$top_builddir/tests/fuzz
src=$top_srcdir/tests/fuzz
# result STATUS DESCRIPTION LOG: a test point; a failure shows its log's end.
result() {
	if [ "$1" -eq 0 ]; then
		ok "$2"
	else
		not_ok "$2"
		tail -n 30 "$3" | sed 's/^/# /'
	fi
}

work=$(mktemp -d "${TMPDIR:-/tmp}/test-fuzz-XXXXXX")
trap 'rm -rf "$work"' EXIT

sh "$src/make-seeds.sh" "$work/seeds" >"$work/seeds.log" 2>&1
result $? "make-seeds.sh makes the generated seeds" "$work/seeds.log"
for target in $IVLAB_FUZZ_TARGETS; do
	program=$build/fuzz-$target
	mkdir -p "$work/tmp-$target" "$work/corpus-$target" "$work/artifacts-$target"
	files=
	for dir in "$src/crashes/$target" "$src/seeds/$target" "$work/seeds/$target"; do
		[ -d "$dir" ] && [ -n "$(ls "$dir")" ] && files="$files $dir/*"
	done
	if [ -n "$files" ]; then
		# shellcheck disable=SC2086
		TMPDIR=$work/tmp-$target "$program" $files >"$work/$target-files.log" 2>&1
		result $? "$target: its crashes and seeds pass" "$work/$target-files.log"
	fi
	dirs="$work/corpus-$target"
	for dir in "$src/seeds/$target" "$work/seeds/$target"; do
		[ -d "$dir" ] && dirs="$dirs $dir"
	done
	# shellcheck disable=SC2086
	TMPDIR=$work/tmp-$target "$program" -max_total_time="$seconds" -timeout=10 -max_len=4096 \
		-artifact_prefix="$work/artifacts-$target/" $dirs >"$work/$target.log" 2>&1
	result $? "$target: fuzzes ${seconds} s without a crash" "$work/$target.log"
done
tap_done
