#!/usr/bin/env bash
# test_cli.sh - the xrail command-line tool on real shm rails.
# usage: test_cli.sh XRAIL_BINARY SCRIPTS_DIR
set -uo pipefail
X=$1
export XRAIL_SCRIPT_PATH=$2
unset XRAIL_CONFIG XRAIL_RAILS XRAIL_PROVIDER XRAIL_POLICY
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0
ok()   { echo "ok: $*"; }
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# expect_fail [-2] DESCRIPTION COMMAND...: exit status 1 (2 with -2: a usage
# error, docs/cli.md) and exactly one line on stderr
expect_fail() {
  local want=1
  if [ "$1" = -2 ]; then want=2; shift; fi
  local what=$1; shift
  "$@" >"$tmp/out" 2>"$tmp/err"
  local st=$?
  if [ "$st" -ne "$want" ]; then fail "$what: exit $st, want $want"; return; fi
  if [ "$(wc -l <"$tmp/err")" -ne 1 ]; then fail "$what: stderr is not one line: $(cat "$tmp/err")"; return; fi
  ok "$what: $(cat "$tmp/err")"
}

if ! fi_info -p shm >/dev/null 2>&1; then
  echo "SKIPPED: no shm provider"; exit 77
fi

cat >"$tmp/c.lua" <<'LUA'
return {
  rails = { { provider = "shm", count = 2, speed = 400 }, { provider = "shm", count = 2, speed = 100 } },
  policy = "weighted.lua",
}
LUA

"$X" rails --config "$tmp/c.lua" >"$tmp/rails" || fail "rails"
[ "$(grep -c ' shm ' "$tmp/rails")" -eq 4 ] && ok "rails lists 4 rails" || fail "rails: $(cat "$tmp/rails")"

"$X" config --config "$tmp/c.lua" >"$tmp/eff.lua" || fail "config"
grep -q 'policy = ".*weighted.lua"' "$tmp/eff.lua" && ok "config shows the policy" || fail "config: $(cat "$tmp/eff.lua")"
# The effective settings are themselves a config script that opens the same rails.
"$X" rails --config "$tmp/eff.lua" >"$tmp/rails2" || fail "config output as a config"
[ "$(grep -c ' shm ' "$tmp/rails2")" -eq 4 ] && ok "config output reloads as a config" || fail "round trip: $(cat "$tmp/rails2")"

# With neither policy nor layout named, the nils must still read back as a script.
echo 'return { rails = { { provider = "shm", count = 1 } } }' >"$tmp/bare.lua"
"$X" config --config "$tmp/bare.lua" >"$tmp/bare-eff.lua" && "$X" rails --config "$tmp/bare-eff.lua" >/dev/null \
  && grep -q 'layout = nil, --' "$tmp/bare-eff.lua" && ok "config output with built-in policy and layout reloads" \
  || fail "bare config round trip: $(cat "$tmp/bare-eff.lua")"

"$X" policy explain --size 1M --config "$tmp/c.lua" >"$tmp/explain" || fail "explain"
grep -q 'rail 0: weight share 40.0%' "$tmp/explain" && grep -q 'rail 3: weight share 10.0%' "$tmp/explain" \
  && ok "explain shows the weighted split" || fail "explain: $(cat "$tmp/explain")"
"$X" policy explain --size 64k --policy round_robin.lua --peer-rails 8 --config "$tmp/c.lua" >"$tmp/explain2" \
  && grep -q 'one rail' "$tmp/explain2" && ok "explain with --policy and --peer-rails" || fail "explain2: $(cat "$tmp/explain2")"

for p in "$2"/policy/*.lua; do
  "$X" policy check "$p" --config "$tmp/c.lua" >/dev/null 2>&1 && ok "policy check $(basename "$p")" \
    || fail "policy check $p"
done
echo 'return { plan = function() return { rails = { 42 } } end }' >"$tmp/bad.lua"
expect_fail "policy check of a bad policy" "$X" policy check "$tmp/bad.lua" --config "$tmp/c.lua"
# A mistake on the read path alone is caught too.
cat >"$tmp/badread.lua" <<'LUA'
return { plan = function(req) if req.op == "read" then return { rails = { 42 } } end
                                return { rails = { 0 } } end }
LUA
expect_fail "policy check of a policy wrong only for reads" "$X" policy check "$tmp/badread.lua" --config "$tmp/c.lua"
# A bare script name in the working directory is used from there.
(cd "$tmp" && "$X" rails --config c.lua >"$tmp/rails-cwd" 2>&1) \
  && [ "$(grep -c ' shm ' "$tmp/rails-cwd")" -eq 4 ] && ok "--config NAME from the working directory" \
  || fail "--config c.lua in its directory: $(cat "$tmp/rails-cwd")"

"$X" md get --config "$tmp/c.lua" >"$tmp/blob" || fail "md get"
"$X" md check "$tmp/blob" | grep -q '4 rail(s)' && ok "md check" || fail "md check"
"$X" md dump "$tmp/blob" | grep -q '^rails: 4' && ok "md dump" || fail "md dump"
"$X" md dump "$tmp/blob" --json | grep -q '^{"name": "xrail-cli", .*"rails": \[{"index": 0' \
  && ok "md dump --json" || fail "md dump --json"
# A name with a quote, a backslash and a tab still makes valid JSON.
"$X" md get --name 'we"ird\	name' --config "$tmp/c.lua" >"$tmp/blob2" || fail "md get --name"
if command -v python3 >/dev/null; then
  "$X" md dump "$tmp/blob2" --json | python3 -c 'import json, sys; d = json.load(sys.stdin); sys.exit(d["name"] != "we\"ird\\\tname")' \
    && ok "md dump --json escapes a hostile name" || fail "md dump --json: $("$X" md dump "$tmp/blob2" --json | head -c 200)"
fi
head -c 100 "$tmp/blob" >"$tmp/cut"
expect_fail "md check of a truncated blob" "$X" md check "$tmp/cut"
printf 'garbage' >"$tmp/junk"
expect_fail "md dump of a non-blob" "$X" md dump "$tmp/junk"

# Layout scripts: every shipped one checks; a malformed one is one line.
for l in "$2"/layout/*.lua; do
  "$X" layout check "$l" >/dev/null && ok "layout check $(basename "$l")" || fail "layout check $l"
done
"$X" layout show kv_cache.lua | grep -Eq '^  3 +kv.base +u64 +required' \
  && ok "layout show lists typed custom fields" || fail "layout show: $("$X" layout show kv_cache.lua)"
echo 'return { name = "x", version = 1, fields = { { id = 1, name = "name", type = "text" } } }' >"$tmp/badl.lua"
expect_fail "layout check of a malformed layout" "$X" layout check "$tmp/badl.lua"
"$X" md check "$tmp/blob" --layout xrail_v1.lua | grep -q "readable by layout 'xrail.v1'" \
  && ok "md check --layout" || fail "md check --layout"
expect_fail "md check of a v1 blob against kv_cache" "$X" md check "$tmp/blob" --layout kv_cache.lua
grep -q 'custom.model missing' "$tmp/err" && ok "... names custom.model" || fail "message: $(cat "$tmp/err")"

# --version: the library's, which is the header's here.
hdr=$(dirname "$2")/engine/include/xrail.h
want=$(awk '/^#define XR_VERSION_(MAJOR|MINOR|PATCH) /{v = v (v ? "." : "") $3} END {print v}' "$hdr")
"$X" --version | grep -q "^xrail $want " && ok "--version says $want" || fail "--version: $("$X" --version) (header: $want)"

# --help: the whole list, and each command's own usage.
"$X" --help | grep -q 'layout show FILE' && ok "--help lists every command" || fail "--help"
for c in "rails" "config" "policy check" "policy explain" "md get" "md dump" "md check" \
         "layout show" "layout check"; do
  # shellcheck disable=SC2086
  "$X" $c --help >"$tmp/help"
  if grep -q "^  xrail $c" "$tmp/help" && [ "$(grep -c '^  xrail ' "$tmp/help")" -eq 1 ]; then
    ok "$c --help"
  else
    fail "$c --help: $(cat "$tmp/help")"
  fi
done
expect_fail -2 "unknown command" "$X" frobnicate
expect_fail -2 "an unknown option" "$X" rails --frobnicate
expect_fail -2 "explain without --size" "$X" policy explain --config "$tmp/c.lua"
expect_fail -2 "a bad --op" "$X" policy explain --size 1M --op swap --config "$tmp/c.lua"
expect_fail "a missing config" "$X" rails --config /nonexistent.lua
echo 'return { railz = 1 }' >"$tmp/badcfg.lua"
expect_fail "a config with an unknown key" "$X" config --config "$tmp/badcfg.lua"

[ "$fails" -eq 0 ] && echo "cli: passed" || echo "cli: $fails failure(s)"
[ "$fails" -eq 0 ]
