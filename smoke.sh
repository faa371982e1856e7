#!/bin/sh
# smoke.sh — checks a running workshop server end to end, from anywhere curl reaches it.
#
#   sh smoke.sh                                   # $WORKSHOP_URL, else http://localhost:4242
#   sh smoke.sh http://my-vps:4242                # the URL given wins over WORKSHOP_URL
#
# POSIX sh and curl only (no jq, no bash). One line per check, `ok   name` or
# `FAIL name: why`; exits 1 when any check fails, 2 when the server cannot be reached, 64
# (and checks nothing) when given more than one argument or one that is not an http(s) URL.
# It leaves behind only smoke.* things: messages on channel `smoke` (types smoke.*, and the
# task.* announcements of its own tasks), tasks titled `smoke: ...` (all finished `done`),
# one presence row and one small blob, all from `smoke.<host>.<pid>`.

LC_ALL=C
export LC_ALL
USAGE='usage: sh smoke.sh [URL]   (default: $WORKSHOP_URL, else http://localhost:4242)'
case $#:${1-} in
  0:) URL=${WORKSHOP_URL:-http://localhost:4242} ;;
  1:-h | 1:--help) printf '%s\n' "$USAGE"; exit 0 ;;
  1:http://* | 1:https://*) URL=$1 ;;
  # Never a fallback to another server: checking the wrong one would report its success.
  *) printf '%s\n' "$USAGE" >&2; exit 64 ;;
esac
URL=${URL%/}
CH=smoke
HOST_TAG=$(uname -n 2>/dev/null | tr -cd 'A-Za-z0-9.-' | cut -c1-40)
ME="smoke.${HOST_TAG:-host}.$$"
OTHER="$ME.other"
ULID_RE='[0-9A-HJKMNP-TV-Z]\{26\}'
HASH_RE='sha256:[0-9a-f]\{64\}'

TMP=$(mktemp -d 2>/dev/null) || { TMP=${TMPDIR:-/tmp}/smoke.$$; mkdir -m 700 "$TMP" || exit 2; }
BG_PIDS=""
cleanup() {
  for p in $BG_PIDS; do kill "$p" 2>/dev/null; done
  rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Polling step: a tenth of a second where sleep takes fractions (GNU, busybox), else 1 s.
if sleep 0.01 2>/dev/null; then TICK=0.1; TICKS_PER_S=10; else TICK=1; TICKS_PER_S=1; fi

START=$(date +%s)
CHECKS=0
FAILS=0
ok() { CHECKS=$((CHECKS + 1)); printf 'ok   %s\n' "$1"; }
fail() { CHECKS=$((CHECKS + 1)); FAILS=$((FAILS + 1)); printf 'FAIL %s: %s\n' "$1" "$2"; }

# req METHOD PATH [curl args...] — sets CODE; body in $TMP/body, headers in $TMP/headers.
req() {
  _m=$1; _p=$2; shift 2
  if [ "$_m" = HEAD ]; then set -- -I "$@"; else set -- -X "$_m" "$@"; fi
  CODE=$(curl -s -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' --max-time 15 \
    "$@" "$URL$_p") || CODE=${CODE:-000}
  [ -n "$CODE" ] || CODE=000
}
# post PATH JSON — a JSON POST.
post() { req POST "$1" -H 'Content-Type: application/json' --data-binary "$2"; }
# hdr NAME — the value of a response header (last one if repeated), without the CR.
hdr() { tr -d '\r' 2>/dev/null <"$TMP/headers" | grep -i "^$1:" | tail -n 1 | sed 's/^[^:]*:[[:space:]]*//'; }
# jstr KEY [FILE] — the string value of "KEY" in a one-line JSON document (last occurrence).
jstr() { sed -n "s/.*\"$1\"[[:space:]]*:[[:space:]]*\"\\([^\"]*\\)\".*/\\1/p" "${2:-$TMP/body}" | head -n 1; }
# has TEXT [FILE] — the body contains TEXT literally.
has() { grep -F -q -- "$1" "${2:-$TMP/body}"; }
brief() { tr -d '\r' 2>/dev/null <"$TMP/body" | tr '\n' ' ' | cut -c1-160; }
# expect NAME CODE — the last request answered CODE; otherwise a FAIL line saying what came.
expect() {
  if [ "$CODE" = "$2" ]; then return 0; fi
  fail "$1" "expected HTTP $2, got $CODE $(brief)"
  return 1
}
# wait_for FILE TEXT SECONDS — until FILE contains TEXT, at most SECONDS.
wait_for() {
  _n=$(($3 * TICKS_PER_S))
  while [ "$_n" -gt 0 ]; do
    grep -F -q -- "$2" "$1" 2>/dev/null && return 0
    sleep "$TICK"
    _n=$((_n - 1))
  done
  grep -F -q -- "$2" "$1" 2>/dev/null
}
# sse NAME PATH [curl args...] — a background SSE reader writing to $TMP/NAME; sets SSE_PID.
sse() {
  _f=$TMP/$1; _p=$2; shift 2
  : >"$_f"
  curl -s -N --max-time 60 "$@" "$URL$_p" >"$_f" 2>/dev/null &
  SSE_PID=$!
  BG_PIDS="$BG_PIDS $SSE_PID"
}
stop_sse() { kill "$1" 2>/dev/null; wait "$1" 2>/dev/null; }
# publish TYPE BODY-JSON [extra JSON fields] — sets ID (empty on failure).
publish() {
  post "/ch/$CH" "{\"from\":\"$ME\",\"type\":\"$1\",\"body\":$2${3:+,$3}}"
  ID=""
  [ "$CODE" = 201 ] && ID=$(jstr id)
}
is_ulid() { printf '%s\n' "$1" | grep -q "^$ULID_RE\$"; }

# ---------------------------------------------------------------- status
req GET /status
if [ "$CODE" = 000 ]; then
  printf 'FAIL status: no answer from %s\n' "$URL"
  exit 2
fi
if expect status 200; then
  missing=""
  for k in uptime-s messages tasks agents-live subscribers; do has "\"$k\"" || missing="$missing $k"; done
  if [ -n "$missing" ]; then fail status "missing keys:$missing in $(brief)"
  elif ! hdr content-type | grep -q '^application/json'; then fail status "content-type $(hdr content-type)"
  elif [ "$(hdr x-content-type-options)" != nosniff ]; then fail status "no X-Content-Type-Options: nosniff"
  else ok status; fi
fi

# ---------------------------------------------------------------- publish
publish smoke.ping "{\"n\":1,\"who\":\"$ME\"}"
A=$ID
if expect publish 201; then
  if ! is_ulid "$A"; then fail publish "no ULID id in $(brief)"
  elif ! has '"ts"'; then fail publish "no ts in $(brief)"
  else ok publish; fi
fi
publish smoke.ping '{"n":2}' '"reply_to":"'"$A"'"'
B=$ID
if expect "publish reply_to" 201; then
  if [ -z "$B" ] || ! expr "$B" \> "$A" >/dev/null; then fail "publish reply_to" "ids not increasing: $A then $B"
  else ok "publish reply_to"; fi
fi
post "/ch/$CH" "{\"from\":\"$ME\",\"body\":{}}"
expect "publish without type is 400" 400 && ok "publish without type is 400"
post "/ch/$CH" '{"from":'
expect "publish bad JSON is 400" 400 && ok "publish bad JSON is 400"
post "/ch/bad%20name" "{\"from\":\"$ME\",\"type\":\"smoke.bad\"}"
expect "publish bad channel name is 400" 400 && ok "publish bad channel name is 400"
# A JSON body over 1 MiB is refused whole.
{ printf '{"from":"%s","type":"smoke.big","body":"' "$ME"; dd if=/dev/zero bs=1024 count=1100 2>/dev/null | tr '\000' A; printf '"}'; } >"$TMP/big.json"
req POST "/ch/$CH" -H 'Content-Type: application/json' --data-binary "@$TMP/big.json"
expect "publish over 1 MiB is 413" 413 && ok "publish over 1 MiB is 413"

# ---------------------------------------------------------------- history
req GET "/ch/$CH/history?n=5"
if expect history 200; then
  la=$(grep -n "\"id\":\"$A\"" "$TMP/body" | cut -d: -f1)
  lb=$(grep -n "\"id\":\"$B\"" "$TMP/body" | cut -d: -f1)
  if ! hdr content-type | grep -q '^application/x-ndjson'; then fail history "content-type $(hdr content-type)"
  elif [ -z "$la" ] || [ -z "$lb" ]; then fail history "published ids $A $B not in the newest 5"
  elif [ "$la" -ge "$lb" ]; then fail history "not oldest first"
  elif ! grep "\"id\":\"$B\"" "$TMP/body" | grep -q "\"reply_to\":\"$A\""; then fail history "reply_to not kept"
  elif ! grep "\"id\":\"$A\"" "$TMP/body" | grep "\"from\":\"$ME\"" | grep -q "\"ch\":\"$CH\""; then
    fail history "envelope lacks from/ch: $(grep "\"id\":\"$A\"" "$TMP/body" | cut -c1-160)"
  else ok history; fi
fi
req GET "/ch/$CH/history?since=$A&n=1"
if expect "history since" 200; then
  if has "\"id\":\"$B\"" && ! has "\"id\":\"$A\"" && [ "$(grep -c . "$TMP/body")" = 1 ]; then ok "history since"
  else fail "history since" "expected exactly $B after $A, got $(brief)"; fi
fi
req GET "/ch/$CH/history?type=smoke.pi&n=3"
if expect "history type prefix" 200; then
  if has "\"id\":\"$B\"" && ! grep -v '"type":"smoke\.pi' "$TMP/body" | grep -q .; then ok "history type prefix"
  else fail "history type prefix" "$(brief)"; fi
fi
req GET "/ch/$CH/history?n=abc"
expect "history bad n is 400" 400 && ok "history bad n is 400"
# A batch: several messages in one request, committed together, in order.
post "/ch/$CH" "[{\"from\":\"$ME\",\"type\":\"smoke.batch\",\"body\":{\"n\":1}},{\"from\":\"$ME\",\"type\":\"smoke.batch\",\"body\":{\"n\":2}}]"
if expect "publish batch" 201; then
  C1=$(grep -o "$ULID_RE" "$TMP/body" | sed -n 1p)
  C2=$(grep -o "$ULID_RE" "$TMP/body" | sed -n 2p)
  if [ -z "$C2" ] || ! expr "$C1" \> "$B" >/dev/null || ! expr "$C2" \> "$C1" >/dev/null; then
    fail "publish batch" "expected two increasing ids after $B, got $(brief)"
  else ok "publish batch"; fi
fi
req GET "/history?n=50"
if expect "history all channels" 200; then
  if has "\"id\":\"$B\""; then ok "history all channels"; else fail "history all channels" "$B not among the newest 50"; fi
fi
req GET /channels
if expect channels 200; then
  if has "\"$CH\""; then ok channels; else fail channels "no \"$CH\" in $(brief)"; fi
fi

# ---------------------------------------------------------------- SSE
req HEAD "/ch/$CH"
if expect "sse HEAD" 200; then
  if ! hdr content-type | grep -q '^text/event-stream'; then fail "sse HEAD" "content-type $(hdr content-type)"
  elif [ "$(hdr x-content-type-options)" != nosniff ]; then fail "sse HEAD" "no X-Content-Type-Options: nosniff"
  elif [ "$(hdr cache-control)" != no-cache ]; then fail "sse HEAD" "Cache-Control '$(hdr cache-control)', want no-cache"
  else ok "sse HEAD"; fi
fi

sse live "/ch/$CH"
LIVE_PID=$SSE_PID
if ! wait_for "$TMP/live" ': open' 20; then
  fail "sse live" "no ': open' within 20 s"
else
  publish smoke.sse '{"step":"live"}'
  C=$ID
  if [ -z "$C" ]; then fail "sse live" "publish failed: $CODE $(brief)"
  elif ! wait_for "$TMP/live" "id: $C" 20; then fail "sse live" "event $C not received within 20 s"
  else
    live_line=$(tr -d '\r' <"$TMP/live" | sed -n 's/^data: //p' | grep "\"id\":\"$C\"")
    req GET "/ch/$CH/history?since=$B&n=1000"
    hist_line=$(tr -d '\r' <"$TMP/body" | grep "\"id\":\"$C\"")
    if [ -z "$live_line" ]; then fail "sse live" "no data line for $C"
    elif [ "$live_line" != "$hist_line" ]; then fail "sse live" "live and history JSON differ: $live_line / $hist_line"
    else ok "sse live (same bytes as history)"; fi
  fi
fi
stop_sse "$LIVE_PID"

publish smoke.sse '{"step":"missed"}'
D=$ID
sse resume "/ch/$CH" -H "Last-Event-ID: ${C:-$B}"
RESUME_PID=$SSE_PID
if [ -z "$D" ]; then fail "sse resume Last-Event-ID" "publish failed: $CODE"
elif ! wait_for "$TMP/resume" "id: $D" 20; then fail "sse resume Last-Event-ID" "missed event $D not replayed within 20 s"
else
  publish smoke.sse '{"step":"after-resume"}'
  E=$ID
  if [ -z "$E" ]; then fail "sse resume Last-Event-ID" "publish failed: $CODE"
  elif ! wait_for "$TMP/resume" "id: $E" 20; then fail "sse resume Last-Event-ID" "live event $E not received after replay"
  elif grep -q "^id: ${C:-$B}" "$TMP/resume"; then fail "sse resume Last-Event-ID" "replayed the Last-Event-ID message itself"
  elif [ "$(grep -n "^id: $D" "$TMP/resume" | cut -d: -f1)" -gt "$(grep -n "^id: $E" "$TMP/resume" | cut -d: -f1)" ]; then
    fail "sse resume Last-Event-ID" "replayed $D came after live $E"
  else ok "sse resume Last-Event-ID"; fi
fi
stop_sse "$RESUME_PID"

sse since "/ch/$CH?since=$D"
SINCE_PID=$SSE_PID
if [ -n "$D" ] && wait_for "$TMP/since" "id: $E" 20 && ! grep -q "^id: $D" "$TMP/since"; then ok "sse resume ?since="
else fail "sse resume ?since=" "expected $E and not $D, got: $(grep '^id: ' "$TMP/since" | tr '\n' ' ')"; fi
stop_sse "$SINCE_PID"

sse god "/?type=smoke.god"
GOD_PID=$SSE_PID
if ! wait_for "$TMP/god" ': open' 20; then fail "sse all channels ?type=" "no ': open' within 20 s"
else
  publish smoke.other '{"step":"filtered out"}'
  publish smoke.god '{"step":"god feed"}'
  G=$ID
  if [ -z "$G" ]; then fail "sse all channels ?type=" "publish failed: $CODE"
  elif ! wait_for "$TMP/god" "id: $G" 20; then fail "sse all channels ?type=" "event $G not received within 20 s"
  elif tr -d '\r' <"$TMP/god" | grep '^data: ' | grep -v -q '"type":"smoke\.god'; then fail "sse all channels ?type=" "a message of another type came through"
  else ok "sse all channels ?type="; fi
fi
stop_sse "$GOD_PID"

# ---------------------------------------------------------------- files
BLOB=$TMP/blob.bin
dd if=/dev/urandom of="$BLOB" bs=1024 count=70 2>/dev/null
printf 'smoke \000\001\r\n\377 %s\n' "$ME" >>"$BLOB"
SIZE=$(wc -c <"$BLOB" | tr -d ' ')
req POST /files -H 'Content-Type: application/octet-stream' --data-binary "@$BLOB"
HASH=""
if expect "file upload" 201; then
  HASH=$(sed -n "s/.*\"hash\"[[:space:]]*:[[:space:]]*\"\\($HASH_RE\\)\".*/\\1/p" "$TMP/body")
  want=""
  if command -v sha256sum >/dev/null 2>&1; then want="sha256:$(sha256sum "$BLOB" | cut -c1-64)"; fi
  if [ -z "$HASH" ]; then fail "file upload" "no hash in $(brief)"
  elif ! has "\"size\":$SIZE"; then fail "file upload" "size is not $SIZE: $(brief)"
  elif [ -n "$want" ] && [ "$want" != "$HASH" ]; then fail "file upload" "hash $HASH, sha256sum says $want"
  else ok "file upload"; fi
fi
if [ -n "$HASH" ]; then
  req POST /files --data-binary "@$BLOB"
  if expect "file upload twice" 201; then
    if has "\"$HASH\""; then ok "file upload twice"; else fail "file upload twice" "different answer: $(brief)"; fi
  fi
  req GET "/files/$HASH"
  if expect "file download" 200; then
    if ! cmp -s "$BLOB" "$TMP/body"; then fail "file download" "bytes differ from the upload"
    elif [ "$(hdr content-length)" != "$SIZE" ]; then fail "file download" "Content-Length '$(hdr content-length)', want $SIZE"
    elif [ -z "$(hdr etag)" ]; then fail "file download" "no ETag"
    elif ! hdr cache-control | grep -q immutable; then fail "file download" "Cache-Control '$(hdr cache-control)'"
    else ok "file download (cmp)"; fi
  fi
  req HEAD "/files/$HASH"
  if expect "file HEAD" 200; then
    if [ "$(hdr content-length)" = "$SIZE" ] && [ -n "$(hdr etag)" ]; then ok "file HEAD"
    else fail "file HEAD" "Content-Length '$(hdr content-length)' (want $SIZE), ETag '$(hdr etag)'"; fi
  fi
fi
req GET /files/sha256:nothex
expect "file bad hash is 400" 400 && ok "file bad hash is 400"
req GET /files/../../etc/passwd --path-as-is
expect "file path traversal is 400" 400 && ok "file path traversal is 400"
req GET "/files/sha256:0000000000000000000000000000000000000000000000000000000000000000"
expect "file not stored is 404" 404 && ok "file not stored is 404"
publish smoke.file '{}' '"files":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]'
expect "publish unknown file is 400" 400 && ok "publish unknown file is 400"
if [ -n "$HASH" ]; then
  publish smoke.file "{\"size\":$SIZE}" "\"files\":[\"$HASH\"]"
  expect "publish with file" 201 && ok "publish with file"
fi

# ---------------------------------------------------------------- tasks
# Made for us (`for`), so the hub's own workers never take it; leased, so a run cut short
# leaves no task claimed for ever.
post /tasks "{\"from\":\"$ME\",\"title\":\"smoke: lifecycle\",\"for\":\"$ME\",\"context\":{\"smoke\":true},\"ch\":\"$CH\"}"
T1=""
if expect "task create" 201; then
  T1=$(jstr id)
  if is_ulid "$T1"; then ok "task create"; else fail "task create" "no id in $(brief)"; fi
fi
post /tasks "{\"from\":\"$ME\",\"ch\":\"$CH\"}"
expect "task create without title is 400" 400 && ok "task create without title is 400"
req GET /tasks/00000000000000000000000000
expect "task unknown is 404" 404 && ok "task unknown is 404"
if [ -n "$T1" ]; then
  req GET "/tasks/$T1"
  if expect "task get" 200; then
    if has '"status":"open"' && has '"title":"smoke: lifecycle"' && has '"context":{"smoke":true}'; then ok "task get"
    else fail "task get" "$(brief)"; fi
  fi
  req GET "/tasks?status=open&ch=$CH&n=1000"
  if expect "task list" 200; then
    if has "\"id\":\"$T1\""; then ok "task list"; else fail "task list" "$T1 not among open tasks on $CH"; fi
  fi
  post "/tasks/$T1/claim" "{\"from\":\"$ME\",\"lease_s\":300}"
  if expect "task claim" 200; then
    if has '"status":"claimed"'; then ok "task claim"; else fail "task claim" "$(brief)"; fi
  fi
  post "/tasks/$T1/claim" "{\"from\":\"$ME\"}"
  expect "task second claim is 409" 409 && ok "task second claim is 409"
  post "/tasks/$T1/update" "{\"from\":\"$ME\",\"progress\":\"half way\"}"
  expect "task update" 200 && ok "task update"
  post "/tasks/$T1/done" "{\"from\":\"$OTHER\",\"result\":{}}"
  expect "task done by another is 403" 403 && ok "task done by another is 403"
  post "/tasks/$T1/done" "{\"from\":\"$ME\",\"result\":{\"ok\":true}${HASH:+,\"files\":[\"$HASH\"]}}"
  if expect "task done" 200; then
    if has '"status":"done"'; then ok "task done"; else fail "task done" "$(brief)"; fi
  fi
  req GET "/tasks/$T1"
  if expect "task done state" 200; then
    if has '"status":"done"' && has "\"claimed_by\":\"$ME\"" && has '"result":{"ok":true}'; then ok "task done state"
    else fail "task done state" "$(brief)"; fi
  fi
  req GET "/tasks?for=$ME&n=1000"
  if expect "task list for" 200; then
    if has "\"id\":\"$T1\""; then ok "task list for"; else fail "task list for" "$T1 not listed for $ME"; fi
  fi
  req GET "/ch/$CH/history?type=task.&n=1000"
  if expect "task announcements" 200; then
    missing=""
    for t in created claimed updated done; do
      grep "\"type\":\"task\\.$t\"" "$TMP/body" | grep -q "$T1" || missing="$missing task.$t"
    done
    if [ -z "$missing" ]; then ok "task announcements"; else fail "task announcements" "missing on $CH:$missing"; fi
  fi
fi
# A second task, assigned to us so no real agent picks it up: abandon, interrupt, then done.
post /tasks "{\"from\":\"$ME\",\"title\":\"smoke: abandon\",\"for\":\"$ME\",\"ch\":\"$CH\"}"
T2=""
[ "$CODE" = 201 ] && T2=$(jstr id)
if [ -z "$T2" ]; then fail "task abandon" "create failed: $CODE $(brief)"
else
  post "/tasks/$T2/claim" "{\"from\":\"$OTHER\"}"
  expect "task claim for another is 403" 403 && ok "task claim for another is 403"
  post "/tasks/$T2/abandon" "{\"from\":\"$ME\",\"reason\":\"not claimed\"}"
  expect "task abandon unclaimed is 409" 409 && ok "task abandon unclaimed is 409"
  post "/tasks/$T2/claim" "{\"from\":\"$ME\"}"
  post "/tasks/$T2/abandon" "{\"from\":\"$ME\",\"reason\":\"smoke test\"}"
  if expect "task abandon" 200; then
    if has '"status":"open"'; then ok "task abandon"; else fail "task abandon" "$(brief)"; fi
  fi
  post "/tasks/$T2/interrupt" "{\"from\":\"$ME\",\"reason\":\"smoke test\"}"
  if expect "task interrupt" 200; then
    if has '"signalled":true'; then ok "task interrupt"; else fail "task interrupt" "$(brief)"; fi
  fi
  post "/tasks/$T2/claim" "{\"from\":\"$ME\"}"
  post "/tasks/$T2/done" "{\"from\":\"$ME\",\"result\":{\"smoke\":\"cleaned up\"}}"
  expect "task finish" 200 && ok "task finish"
fi
post /tasks/00000000000000000000000000/claim "{\"from\":\"$ME\"}"
expect "task claim unknown is 404" 404 && ok "task claim unknown is 404"

# ---------------------------------------------------------------- presence
post /presence "{\"from\":\"$ME\",\"channels\":[\"$CH\"],\"meta\":{\"smoke\":true}}"
if expect "presence post" 200; then
  if has '"ok":true'; then ok "presence post"; else fail "presence post" "$(brief)"; fi
fi
req GET /presence
if expect "presence get" 200; then
  if has "\"agent_id\":\"$ME\""; then ok "presence get"; else fail "presence get" "$ME not listed: $(brief)"; fi
fi

# ---------------------------------------------------------------- ui, CORS, errors
req GET /ui
if expect ui 200; then
  if ! hdr content-type | grep -qi '^text/html'; then fail ui "content-type $(hdr content-type)"
  elif ! grep -qi -e '<html' -e '<!doctype html' "$TMP/body"; then fail ui "no HTML document"
  else ok ui; fi
fi
# CORS is opt-in (WORKSHOP_CORS_ORIGINS): a foreign origin gets no Allow-Origin and its writes
# are refused, unless the server opened itself to every origin with `*`.
EVIL=https://evil.example
req OPTIONS "/ch/$CH" -H "Origin: $EVIL" -H 'Access-Control-Request-Method: POST'
if expect "OPTIONS CORS" 204; then
  case "$(hdr access-control-allow-origin)" in
    '') ok "OPTIONS CORS" ;;
    '*') if hdr access-control-allow-methods | grep -q POST; then ok "OPTIONS CORS (WORKSHOP_CORS_ORIGINS=*)"
         else fail "OPTIONS CORS" "Allow-Methods '$(hdr access-control-allow-methods)'"; fi ;;
    *) fail "OPTIONS CORS" "Allow-Origin '$(hdr access-control-allow-origin)' for $EVIL" ;;
  esac
fi
req POST "/ch/$CH" -H 'Content-Type: text/plain' -H "Origin: $EVIL" -H 'Sec-Fetch-Site: cross-site' \
  --data-binary "{\"from\":\"$ME\",\"type\":\"smoke.csrf\"}"
case "$CODE:$(hdr access-control-allow-origin)" in
  403:) ok "cross-origin write refused" ;;
  '201:*') ok "cross-origin write allowed (WORKSHOP_CORS_ORIGINS=*)" ;;
  *) fail "cross-origin write refused" "expected HTTP 403, got $CODE $(brief)" ;;
esac
req GET /no/such/route
if expect "unknown route is 404" 404; then
  if has '"error"'; then ok "unknown route is 404"; else fail "unknown route is 404" "no JSON error: $(brief)"; fi
fi
req PUT /status
if expect "wrong method is 405" 405; then
  case $(hdr allow) in
    *GET*) ok "wrong method is 405" ;;
    *) fail "wrong method is 405" "no Allow header with GET: $(hdr allow)" ;;
  esac
fi

# ---------------------------------------------------------------- summary
ELAPSED=$(($(date +%s) - START))
if [ "$FAILS" -gt 0 ]; then
  printf 'smoke: %d of %d checks FAILED against %s (%ss)\n' "$FAILS" "$CHECKS" "$URL" "$ELAPSED"
  exit 1
fi
printf 'smoke: all %d checks passed against %s (%ss)\n' "$CHECKS" "$URL" "$ELAPSED"
