#!/usr/bin/env bash
# Requests lost when the proxy is replaced or reloaded under load: sluice,
# nginx and HAProxy, side by side, in one run on this machine.
#
#   bash benches/upgrade.sh             # ~1.5 min; SECONDS_PER_RUN=12 RELOADS=5
#   RELOADS=0 bash benches/upgrade.sh   # the same load without handovers (baseline)
#   HAPROXY_RELOAD=sf bash benches/upgrade.sh   # HAProxy reloaded with -sf
#
# One backend (nginx, one worker, answering "ok" from memory, as in
# compare.sh) and each proxy in turn with one worker, pinned to CPU 0, with
# access logs off; wrk (-t2 -c16) and the backend run on CPU 1. Per proxy,
# two runs of SECONDS_PER_RUN seconds: keep-alive, and a new connection per
# request (Connection: close). During each run, RELOADS handovers, SPACING
# (1.5) seconds apart, each waited for before the next:
#   sluice   SIGUSR2: it starts its binary again with the listening sockets
#            and the old process drains; the new pid lands in --pid-file,
#            which is read again for the next signal.
#   nginx    SIGHUP to the master (nginx -s reload): new worker, old drains.
#   HAProxy  master-worker mode (-W), SIGUSR2 to the master (what Debian's
#            unit does); or, with HAPROXY_RELOAD=sf, a new daemon started
#            with -sf $(cat pidfile), which binds its own sockets.
# A handover is done when a new process serves (sluice: the pid file names
# a new pid; nginx, HAProxy -W: the master has a new worker; -sf: the new
# daemon has started). Prints, per proxy and mode, wrk's requests, its
# socket errors (connect, read, write, timeout) and non-2xx/3xx answers,
# errors per handover and how long handovers took; then what the sluice
# processes wrote (level warn). 127.0.0.1 only; every process it starts,
# including the sluice processes started by upgrades, is stopped at exit.
#
# Needs: nginx, haproxy, wrk (installed from Debian's packages if missing,
# when run as root), python3 (free ports), and a release build of sluice
# (built here unless NO_BUILD=1). KEEP=1 keeps the work directory (logs).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/common.sh
need_packages nginx:nginx-light haproxy:haproxy wrk:wrk
[ -n "${NO_BUILD:-}" ] || cargo build --release --quiet

SECS=${SECONDS_PER_RUN:-12}
RELOADS=${RELOADS:-5}
SPACING=${SPACING:-1.5}
HAPROXY_RELOAD=${HAPROXY_RELOAD:-master-worker}
case "$HAPROXY_RELOAD" in master-worker|sf) ;; *) echo "HAPROXY_RELOAD: master-worker or sf" >&2; exit 2 ;; esac
BIN=target/release/sluice
work=$(mktemp -d /tmp/sluice-upgrade-XXXX)
chmod 755 "$work"
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
now_ms() { date +%s%3N; }

# --- processes: every pid started (or named by a pid file) goes into
# $work/pids; exit stops them all, by pid, whatever way the script ends ---
touch "$work/pids"
wrk_pid=
track() { echo "$1" >> "$work/pids"; }
# A process of ours that still runs (not a zombie, and still one of ours:
# a pid is only signalled while its command is one this script starts).
alive() {
  local st
  st=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
  [[ $st != Z* ]] || return 1
  case "$(cat "/proc/$1/comm" 2>/dev/null)" in sluice|nginx|haproxy|wrk|taskset) return 0 ;; *) return 1 ;; esac
}
# Stops the given pids and their children: SIGTERM, then SIGKILL after 10 s.
stop_pids() {
  local all=() p c t
  for p in "$@"; do
    [ -n "$p" ] || continue
    all+=("$p")
    for c in $(pgrep -P "$p" 2>/dev/null || true); do all+=("$c"); done
  done
  for p in "${all[@]}"; do alive "$p" && kill -TERM "$p" 2>/dev/null || true; done
  for ((t = 0; t < 200; t++)); do
    local left=0
    for p in "${all[@]}"; do alive "$p" && left=1; done
    [ $left = 0 ] && return 0
    sleep 0.05
  done
  for p in "${all[@]}"; do alive "$p" && kill -KILL "$p" 2>/dev/null || true; done
  return 0
}
cleanup() {
  set +e
  [ -n "$wrk_pid" ] && alive "$wrk_pid" && kill -TERM "$wrk_pid"
  local pids
  pids=$(cat "$work/pids" "$work"/*.pid 2>/dev/null | sort -u)
  # shellcheck disable=SC2086
  stop_pids $pids
  if [ -n "${KEEP:-}" ]; then echo "work directory kept: $work" >&2; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {
  local t
  for ((t = 0; t < 400; t++)); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.05
  done
  echo "nothing listens on $1" >&2
  exit 1
}
# Children of a master (workers), sorted, one per line.
workers() { pgrep -P "$1" 2>/dev/null | sort || true; }
# The master binds before it forks: waits for its first worker too.
first_workers() {
  local t
  for ((t = 0; t < 200; t++)); do [ -n "$(workers "$1")" ] && break; sleep 0.05; done
  workers "$1"
}

# --- the backend: one nginx, one worker, answering from memory ---
backend=$(port)
cat > "$work/backend.conf" <<CONF
worker_processes 1; daemon off; pid $work/backend.nginxpid; error_log $work/backend.err crit;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  server { listen 127.0.0.1:$backend backlog=4096;
    location / { default_type text/plain; return 200 "ok"; } } }
CONF
taskset -c 1 nginx -c "$work/backend.conf" & track $!
wait_port "$backend"

# --- the proxies: configs, start, handover, stop ---
declare -A ports=([sluice]=$(port) [nginx]=$(port) [haproxy]=$(port))
cat > "$work/sluice.toml" <<CONF
[runtime]
worker_threads = 1
shutdown_grace = "5s"
[log]
access_log = false
level = "warn"
[[listener]]
name = "public"
bind = "127.0.0.1:${ports[sluice]}"
[[route]]
pool = "p"
[pool.p]
backends = [{ addr = "127.0.0.1:$backend" }]
CONF
cat > "$work/nginx.conf" <<CONF
worker_processes 1; daemon off; pid $work/nginx.nginxpid; error_log $work/nginx.err error;
events { worker_connections 20000; }
http { access_log off; keepalive_requests 1000000; keepalive_timeout 120s;
  upstream be { server 127.0.0.1:$backend; keepalive 128; }
  server { listen 127.0.0.1:${ports[nginx]} backlog=4096;
    location / { proxy_pass http://be; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
CONF
cat > "$work/haproxy.cfg" <<CONF
global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 120s
  timeout server 120s
  timeout http-keep-alive 120s
  http-reuse always
frontend fe
  bind 127.0.0.1:${ports[haproxy]}
  default_backend be
backend be
  server s1 127.0.0.1:$backend
CONF

# Each start_X leaves the process to signal in $main; each handover_X
# returns non-zero when no new process served within 10 s.
start_sluice() {
  rm -f "$work/sluice.pid"
  taskset -c 0 "$BIN" --config "$work/sluice.toml" --pid-file "$work/sluice.pid" >>"$log" 2>&1 &
  main=$!; track "$main"; gens=("$main")
  wait_port "${ports[sluice]}"
  local t
  for ((t = 0; t < 200; t++)); do [ -s "$work/sluice.pid" ] && break; sleep 0.05; done
  main=$(cat "$work/sluice.pid")
}
handover_sluice() {
  local old new t0
  old=$(cat "$work/sluice.pid")
  kill -USR2 "$old"
  t0=$(now_ms)
  while :; do
    new=$(cat "$work/sluice.pid" 2>/dev/null || true)
    [ -n "$new" ] && [ "$new" != "$old" ] && break
    if (($(now_ms) - t0 > 10000)); then
      echo "sluice: the pid file still names $old 10 s after SIGUSR2" >&2
      return 1
    fi
    sleep 0.01
  done
  track "$new"; gens+=("$new"); main=$new
}
stop_sluice() {
  local p live=()
  for p in "${gens[@]}"; do alive "$p" && live+=("$p"); done
  left=$((${#live[@]} - 1))
  stop_pids "${live[@]}"
}

start_nginx() {
  taskset -c 0 nginx -c "$work/nginx.conf" 2>>"$log" &
  main=$!; track "$main"
  wait_port "${ports[nginx]}"
  gens=($(first_workers "$main"))
}
# A new worker of $main, not among $1 (the workers before the signal).
wait_new_worker() {
  local before=$1 t0=$(now_ms) w
  while :; do
    for w in $(workers "$main"); do
      grep -qx "$w" <<<"$before" || { gens+=("$w"); return 0; }
    done
    if (($(now_ms) - t0 > 10000)); then
      echo "$2: no new worker 10 s after the signal" >&2
      return 1
    fi
    sleep 0.01
  done
}
handover_nginx() {
  local before
  before=$(workers "$main")
  kill -HUP "$main"
  wait_new_worker "$before" nginx
}
stop_nginx() {
  left=$(($(workers "$main" | wc -l) - 1))
  stop_pids "$main"
}

start_haproxy() {
  rm -f "$work/haproxy.pid"
  if [ "$HAPROXY_RELOAD" = sf ]; then
    taskset -c 0 haproxy -D -f "$work/haproxy.cfg" -p "$work/haproxy.pid" >>"$log" 2>&1
    main=$(cat "$work/haproxy.pid"); track "$main"; gens=("$main")
  else
    taskset -c 0 haproxy -W -f "$work/haproxy.cfg" -p "$work/haproxy.pid" >>"$log" 2>&1 &
    main=$!; track "$main"
  fi
  wait_port "${ports[haproxy]}"
  [ "$HAPROXY_RELOAD" = sf ] || gens=($(first_workers "$main"))
}
handover_haproxy() {
  if [ "$HAPROXY_RELOAD" = sf ]; then
    local old
    old=$(cat "$work/haproxy.pid")
    taskset -c 0 haproxy -D -f "$work/haproxy.cfg" -p "$work/haproxy.pid" -sf "$old" >>"$log" 2>&1 || return 1
    main=$(cat "$work/haproxy.pid"); track "$main"; gens+=("$main")
    [ "$main" != "$old" ]
  else
    local before
    before=$(workers "$main")
    kill -USR2 "$main"
    wait_new_worker "$before" haproxy
  fi
}
stop_haproxy() {
  if [ "$HAPROXY_RELOAD" = sf ]; then
    local p live=()
    for p in "${gens[@]}"; do alive "$p" && live+=("$p"); done
    left=$((${#live[@]} - 1))
    stop_pids "${live[@]}"
  else
    left=$(($(workers "$main" | wc -l) - 1))
    stop_pids "$main"
  fi
}

# --- one run: load, handovers during it, wrk's counts ---
: > "$work/rows"; : > "$work/details"
run() {
  local proxy=$1 mode=$2 extra=() k t0 took=() done_=0 late=0
  [ "$mode" = close ] && extra=(-H "Connection: close")
  log="$work/$proxy-$mode.log"; : > "$log"
  "start_$proxy"
  local out="$work/wrk-$proxy-$mode.txt"
  taskset -c 1 wrk -t2 -c16 -d"${SECS}s" "${extra[@]}" "http://127.0.0.1:${ports[$proxy]}/" >"$out" 2>&1 &
  wrk_pid=$!; track "$wrk_pid"
  for ((k = 1; k <= RELOADS; k++)); do
    sleep "$SPACING"
    if ! alive "$wrk_pid"; then late=$((RELOADS - k + 1)); break; fi
    t0=$(now_ms)
    if "handover_$proxy"; then
      done_=$((done_ + 1)); took+=($(($(now_ms) - t0)))
    else
      took+=(failed)
    fi
  done
  wait "$wrk_pid" || true
  wrk_pid=
  "stop_$proxy"
  local what=pids
  [ "$proxy" = nginx ] || { [ "$proxy" = haproxy ] && [ "$HAPROXY_RELOAD" = master-worker ]; } && what="workers"
  echo "$proxy $mode: handovers took (ms): ${took[*]:-none}; old processes still up when the load ended: $left;" \
    "$what: ${gens[*]:-?}" >> "$work/details"
  [ $late -gt 0 ] && echo "$proxy $mode: $late handover(s) not done, the load had ended" >> "$work/details"

  local reqs sock non2xx c r w to errs per max
  reqs=$(sed -nE 's/^ *([0-9]+) requests in.*/\1/p' "$out")
  if [ -z "$reqs" ]; then
    echo "wrk failed ($proxy, $mode):" >&2; cat "$out" >&2
    reqs=0
  fi
  sock=$(grep -E 'Socket errors:' "$out" || true)
  field() { sed -nE "s/.*$1 ([0-9]+).*/\\1/p" <<<"$sock"; }
  c=$(field connect); r=$(field read); w=$(field write); to=$(field timeout)
  c=${c:-0}; r=${r:-0}; w=${w:-0}; to=${to:-0}
  non2xx=$(sed -nE 's/.*Non-2xx or 3xx responses: ([0-9]+).*/\1/p' "$out"); non2xx=${non2xx:-0}
  errs=$((c + r + w + to + non2xx))
  per=-; [ $done_ -gt 0 ] && per=$(awk -v e=$errs -v n=$done_ 'BEGIN { printf "%.1f", e / n }')
  max=-; [ ${#took[@]} -gt 0 ] && max=$(printf '%s\n' "${took[@]}" | grep -E '^[0-9]+$' | sort -n | tail -1 || true)
  echo "| $proxy | $mode | $done_/$RELOADS | $reqs | $c | $r | $w | $to | $non2xx | $errs | $per | ${max:--} |" >> "$work/rows"
  echo "$proxy $mode: $reqs requests, $errs errors, $done_ handovers" >&2
}

for proxy in sluice nginx haproxy; do
  for mode in keep-alive close; do
    run "$proxy" "$mode"
  done
done

hap=$([ "$HAPROXY_RELOAD" = sf ] && echo "new daemon with -sf \$(cat pidfile) (no socket transfer)" \
  || echo "master-worker (-W), SIGUSR2 to the master")
echo
echo "## upgrade.sh: wrk -t2 -c16 -d${SECS}s per run, $RELOADS handovers ${SPACING} s apart; $(nproc) CPUs"
echo "nginx $(nginx -v 2>&1 | sed 's|.*/||'), HAProxy $(haproxy -v | head -1 | awk '{print $3}')," \
  "sluice $("$BIN" --version | awk '{print $2}'); one worker each"
echo "handovers: sluice SIGUSR2 (re-exec with the listening sockets); nginx SIGHUP to the master; HAProxy $hap"
echo
echo "| proxy | mode | handovers | requests | connect | read | write | timeout | non-2xx/3xx | errors | errors/handover | longest handover ms |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
cat "$work/rows"
echo
cat "$work/details"
for mode in keep-alive close; do
  f="$work/sluice-$mode.log"
  echo
  echo "sluice output ($mode run, every process): $(wc -l < "$f") line(s)"
  head -n 40 "$f"
done
for f in "$work"/nginx-*.log "$work"/haproxy-*.log "$work/nginx.err"; do
  [ -s "$f" ] || continue
  echo
  echo "$(basename "$f"): $(wc -l < "$f") line(s)"
  head -n 10 "$f"
done
