#!/bin/sh
# test-image-fetch.sh: libcurl downloads (`ivlab image fetch`) from a loopback
# HTTP server this test starts: sha256 checked, cache hits download nothing,
# interrupted downloads resume with a byte range, a wrong sha256 is refused
# with the exact message and leaves no file behind.
. "$top_srcdir/tests/lib.sh"

PYTHON3=${PYTHON3:-python3}
command -v "$PYTHON3" >/dev/null 2>&1 || skip_or_fail "python3 not found (Debian package python3)"

export IVLAB_STATE_DIR="$scratch/state"
cache="$IVLAB_STATE_DIR/cache/downloads"
mkdir -p "$scratch/www"
head -c 3000000 /dev/urandom >"$scratch/www/kernel.bin"
head -c 1000 /dev/urandom >"$scratch/www/small.bin"
cp "$scratch/www/kernel.bin" "$scratch/www/again.bin"
head -c 200000 /dev/urandom >"$scratch/www/flaky.bin"
head -c 200000 /dev/urandom >"$scratch/www/stubborn.bin"
sha() { sha256sum "$1" | cut -d' ' -f1; }
kernel_sha=$(sha "$scratch/www/kernel.bin")
small_sha=$(sha "$scratch/www/small.bin")
flaky_sha=$(sha "$scratch/www/flaky.bin")
stubborn_sha=$(sha "$scratch/www/stubborn.bin")
wrong_sha=0000000000000000000000000000000000000000000000000000000000000000

log="$scratch/requests.log"
: >"$log"
"$PYTHON3" "$top_srcdir/tests/image-http-server.py" "$scratch/www" "$log" >"$scratch/server.out" 2>&1 &
server_pid=$!
trap 'kill $server_pid 2>/dev/null; wait $server_pid 2>/dev/null; rm -rf "$scratch"' EXIT
port=
for _ in $(seq 100); do
	port=$(sed -n 's/^port //p' "$scratch/server.out")
	[ -n "$port" ] && break
	kill -0 $server_pid 2>/dev/null || break
	sleep 0.05
done
[ -n "$port" ] || { not_ok "loopback HTTP server started"; diag "$(cat "$scratch/server.out")"; tap_done; exit 1; }
base="http://127.0.0.1:$port"
requests() { grep -c "\"path\": \"$1\"" "$log"; }

# Nothing built yet in this state dir.
"$IVLAB" image list >"$scratch/list" 2>&1
check "image list with no image prints only the header" [ "$(wc -l <"$scratch/list")" -eq 1 ]
check "image list --json with no image lists none" sh -c '"$1" image list --json | grep -q "\"images\":\[\]}$"' - "$IVLAB"

# A first fetch downloads, a second one finds the file in the cache.
path=$("$IVLAB" image fetch "$base/kernel.bin" --sha256 "$kernel_sha" 2>"$scratch/err")
check "fetch downloads and prints the cached path" [ "$path" = "$cache/$kernel_sha/kernel.bin" ]
check "the cached file is the served one" cmp -s "$path" "$scratch/www/kernel.bin"
check "the cached file is readable by everyone (0644)" [ "$(stat -c %a "$path")" = 644 ]
check "one request for the first fetch" [ "$(requests /kernel.bin)" -eq 1 ]
path2=$("$IVLAB" image fetch "$base/kernel.bin" --sha256 "$kernel_sha" 2>"$scratch/err")
check "a second fetch gives the same path" [ "$path2" = "$path" ]
check "a cache hit sends no request" [ "$(requests /kernel.bin)" -eq 1 ]
# The cache is keyed by content: another URL with the same sha256 is a hit.
"$IVLAB" image fetch "$base/again.bin" --sha256 "$(echo "$kernel_sha" | tr a-f A-F)" >/dev/null 2>&1
check "upper-case sha256 accepted; same content under another name is fetched once" \
	[ "$(requests /again.bin)" -eq 1 ]

# A wrong sha256: refused, with the exact message, and nothing left behind.
before=$(find "$cache" -mindepth 1 | sort)
"$IVLAB" image fetch "$base/small.bin" --sha256 "$wrong_sha" >/dev/null 2>"$scratch/err"
status=$?
expected="ivlab: $base/small.bin: sha256 mismatch: expected $wrong_sha, got $small_sha; the download was deleted"
check "a wrong sha256 exits 1" [ "$status" -eq 1 ]
if [ "$(tail -n 1 "$scratch/err")" = "$expected" ]; then
	ok "a wrong sha256 gives the exact message"
else
	not_ok "a wrong sha256 gives the exact message"
	diag "expected: $expected" "got: $(tail -n 1 "$scratch/err")"
fi
after=$(find "$cache" -mindepth 1 | sort)
check "a wrong sha256 leaves no file behind" [ "$before" = "$after" ]
check "no .part file left" [ -z "$(find "$cache" -name '*.part')" ]

# The server hangs up half way: the fetch resumes from where it stopped.
path=$("$IVLAB" image fetch "$base/cut/flaky.bin" --sha256 "$flaky_sha" 2>"$scratch/err")
check "an interrupted download completes" cmp -s "$path" "$scratch/www/flaky.bin"
check "it resumed with a byte range" grep -q '"path": "/cut/flaky.bin", "range": "bytes=[1-9][0-9]*-"' "$log"
check "two requests in all" [ "$(requests /cut/flaky.bin)" -eq 2 ]
check "the resume is reported" grep -q "resuming" "$scratch/err"

# A server that ignores ranges: the fetch starts over instead.
path=$("$IVLAB" image fetch "$base/norange/stubborn.bin" --sha256 "$stubborn_sha" 2>"$scratch/err")
check "a server without ranges still gives the right file" cmp -s "$path" "$scratch/www/stubborn.bin"
check "...after starting over" grep -q "cannot resume" "$scratch/err"

# A partial file from an earlier, killed run is resumed by the next run.
head -c 400 "$scratch/www/small.bin" >"$cache/$small_sha.part"
path=$("$IVLAB" image fetch "$base/small.bin" --sha256 "$small_sha" 2>"$scratch/err")
check "a .part file left by a killed run is completed" cmp -s "$path" "$scratch/www/small.bin"
check "...with a range from its size" grep -q '"path": "/small.bin", "range": "bytes=400-"' "$log"

# The progress bar: only when stderr is a terminal.
check "no progress bar when stderr is not a terminal" sh -c "! grep -q '%' '$scratch/err'"
if command -v script >/dev/null 2>&1; then
	head -c 500000 /dev/urandom >"$scratch/www/tty.bin"
	tty_sha=$(sha "$scratch/www/tty.bin")
	script -qec "'$IVLAB' image fetch '$base/tty.bin' --sha256 $tty_sha" /dev/null >"$scratch/tty.out" 2>&1
	check "a progress bar on a terminal" grep -q "100%" "$scratch/tty.out"
fi

# Errors a user can act on.
"$IVLAB" image fetch "$base/missing.bin" --sha256 "$small_sha" >/dev/null 2>"$scratch/err"
check "HTTP 404 exits 1" [ $? -eq 1 ]
check "HTTP 404 is named" grep -q "missing.bin: the server answered HTTP 404" "$scratch/err"
check "a 404 leaves no .part file" [ -z "$(find "$cache" -name '*.part')" ]
"$IVLAB" image fetch "$base/small.bin" --sha256 abc >/dev/null 2>"$scratch/err"
check "a malformed sha256 is a usage error (exit 2)" [ $? -eq 2 ]
check "...saying what is wrong" grep -q "64 hex digits" "$scratch/err"
"$IVLAB" image fetch "$base/small.bin" >/dev/null 2>"$scratch/err"
check "fetch without --sha256 is refused" [ $? -eq 2 ]
"$IVLAB" image fetch "http://127.0.0.1:1/x.bin" --sha256 "$small_sha" >/dev/null 2>"$scratch/err"
check "a refused connection exits 1 with a message" grep -q "x.bin" "$scratch/err"
tap_done
