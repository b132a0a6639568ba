# Shared by the load scripts (sourced): installs the Debian packages of the
# commands a script needs when they are missing (as root), and stops the
# services Debian starts with them, since the scripts run their own.
# Usage: need_packages command:package ...
need_packages() {
  local missing=() pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || [ -x "/usr/sbin/${pair%%:*}" ] || missing+=("${pair#*:}")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]} (Debian packages)" >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null && apt-get install -y -qq "${missing[@]}" >/dev/null
    (service nginx stop; service haproxy stop) >/dev/null 2>&1 || true
  fi
  export PATH="$PATH:/usr/sbin"
}
