#!/bin/sh
# The container's entry point: checks what a container can get wrong before Moderator starts,
# then becomes Moderator (exec, so `docker stop`'s SIGTERM reaches it and the run stays resumable).
#   <image>                                   usage
#   <image> demo [--keep-serving]             the bundled offline demo, built in the workspace
#   <image> "Build a TODO CLI" -y             a run on the workspace (DUO_AGENT_WORKSPACE)
#   <image> --resume <runId>                  continue it after a crash or `docker stop`
# Runs on the host too (the tests do): it finds the app next to itself.
set -eu

app=$(cd "$(dirname "$0")/.." && pwd)
workspace=${DUO_AGENT_WORKSPACE:-/workspace}

fail() {
  echo "moderator entrypoint: $*" >&2
  exit 2
}

# Bound to 0.0.0.0 in here, the server wants its token from whatever comes through the published
# port (only the HEALTHCHECK, from inside, goes without). Beyond the host's loopback the port is
# only published with a token the user set, not one generated per run and printed in the logs.
published=${MODERATOR_PUBLISH_ADDRESS:-127.0.0.1}
case $published in
  127.* | localhost | ::1 | "[::1]") ;;
  *) [ -n "${DUO_AGENT_MONITOR_TOKEN:-}" ] ||
    fail "the monitoring port is published on $published: set DUO_AGENT_MONITOR_TOKEN (16 or more characters) or publish on 127.0.0.1" ;;
esac

mkdir -p "$workspace" 2>/dev/null || true
[ -d "$workspace" ] && [ -w "$workspace" ] ||
  fail "the workspace $workspace is not a writable folder for uid $(id -u): mount one (-v ./workspace:$workspace) that this user owns (compose.yaml: MODERATOR_UID)"
# git refuses a repository another user owns ("dubious ownership"); say so before a run starts.
if [ -d "$workspace/.git" ] && [ "$(stat -c %u "$workspace/.git")" != "$(id -u)" ]; then
  fail "the repository in $workspace belongs to uid $(stat -c %u "$workspace/.git"), this container runs as uid $(id -u): run it as that user (docker run --user, compose.yaml: MODERATOR_UID)"
fi

# The demo builds its program in the workspace, so the result outlives the container.
if [ "${1:-}" = demo ]; then
  targeted=no
  for arg in "$@"; do
    case $arg in --target | --target=* | -t) targeted=yes ;; esac
  done
  if [ "$targeted" = no ]; then
    shift
    set -- demo --target "$workspace" "$@"
  fi
fi

exec node "$app/bin/moderator.js" "$@"
