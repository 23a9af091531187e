#!/bin/bash
# Envoy's preStop hook. A plain SIGTERM makes Envoy exit at once and cut every open stream, so the
# kubelet runs this first and sends SIGTERM only when it returns:
#   1. ask Envoy to drain gracefully: from now on responses carry `Connection: close` (HTTP/2 gets
#      GOAWAY), so keep-alive clients reconnect to other pods; the listener still accepts connections
#      and closes only after --drain-time-s;
#   2. keep serving for GATEWAY_DEREGISTER_SECONDS while the pod is removed from the Service's
#      endpoints (kube-proxy and ingress controllers learn it with a delay);
#   3. wait for in-flight requests (long SSE streams) to finish, at most until GATEWAY_DRAIN_SECONDS.
# Only bash builtins and `sleep`: the Envoy image has no curl, so the admin API (loopback only) is
# reached through bash's /dev/tcp.
set -u
admin_port="${GATEWAY_ADMIN_PORT:-9901}"
drain_seconds="${GATEWAY_DRAIN_SECONDS:-20}"
deregister_seconds="${GATEWAY_DEREGISTER_SECONDS:-5}"

admin() {  # METHOD PATH: print the admin API's response; fails when Envoy is not answering
  exec 3<>"/dev/tcp/127.0.0.1/${admin_port}" || return 1
  printf '%s %s HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n' "$1" "$2" >&3
  cat <&3
  exec 3<&-
}

active_requests() {  # prints the number of requests in flight on the gateway listener
  local stats
  stats="$(admin GET '/stats?filter=http.gateway.downstream_rq_active$')" || return 1
  [[ "${stats}" =~ downstream_rq_active:\ ([0-9]+) ]] || return 1
  echo "${BASH_REMATCH[1]}"
}

started=${SECONDS}
admin POST '/drain_listeners?graceful' | head -n 1
sleep "${deregister_seconds}"
while (( SECONDS - started < drain_seconds )); do
  active="$(active_requests)" || break  # Envoy is gone: nothing left to wait for
  (( active == 0 )) && break
  echo "waiting for ${active} request(s) in flight"
  sleep 1
done
exit 0
