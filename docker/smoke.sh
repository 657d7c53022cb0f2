#!/usr/bin/env bash
# Builds the image and smoke-tests it where a container engine can pull the base image:
# the offline demo in a temp workspace, /api/health from the host while it serves
# (--keep-serving), the image's own HEALTHCHECK, the entrypoint's refusal to publish without a
# token, then `stop` (SIGTERM) ending it with status 0. .ci/run runs it.
# Exit status: 0 passed, 1 failed, 77 skipped (nothing here can build images; it says why).
set -uo pipefail
cd "$(dirname "$0")/.."

skip() { echo "docker smoke test skipped: $*"; exit 77; }
fail() { echo "docker smoke test failed: $*"; exit 1; }

engine=
for candidate in docker podman; do
  # A client without a daemon (or a registry) is not an engine that can build.
  if command -v "$candidate" >/dev/null 2>&1 && "$candidate" info >/dev/null 2>&1; then engine=$candidate; break; fi
done
[ -n "$engine" ] || skip "no working docker or podman (a client without a daemon does not count)"
base=$(sed -nE 's/^FROM ([^ ]+).*/\1/p' Dockerfile | head -n 1)
if ! "$engine" image inspect "$base" >/dev/null 2>&1 && ! "$engine" pull -q "$base" >/dev/null 2>&1; then
  skip "$engine cannot pull the base image $base (no registry reachable)"
fi

tag=moderator:smoke
name=moderator-smoke-$$
workspace=$(mktemp -d)
chmod 777 "$workspace" # the image's uid 1000 writes here, whoever runs this script
cleanup() {
  "$engine" rm -f "$name" >/dev/null 2>&1
  # The files belong to uid 1000: delete them from inside.
  "$engine" run --rm -v "$workspace:/w" --entrypoint sh "$tag" -c 'rm -rf /w/* /w/.[!.]*' >/dev/null 2>&1
  rm -rf "$workspace"
}
trap cleanup EXIT

echo "building $tag with $engine"
"$engine" build -q -t "$tag" . >/dev/null || fail "$engine build"

"$engine" run --rm "$tag" --version >/dev/null || fail "the image does not run moderator --version"
if "$engine" run --rm -e MODERATOR_PUBLISH_ADDRESS=0.0.0.0 "$tag" --version >/dev/null 2>&1; then
  fail "the entrypoint published the port beyond loopback without DUO_AGENT_MONITOR_TOKEN"
fi

# The server binds 0.0.0.0 in the container: what arrives through the published port comes from
# the container network, not loopback, and needs the token; the HEALTHCHECK inside needs none.
token=smoke-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')
"$engine" run -d --init --name "$name" -v "$workspace:/workspace" -p 127.0.0.1::8080 -e DUO_AGENT_MONITOR_TOKEN="$token" \
  --health-interval 2s --health-start-period 1s "$tag" demo --keep-serving >/dev/null || fail "$engine run"

# Waiting on a container from outside has no event to wait for: poll, with a deadline.
deadline=$((SECONDS + 300))
until "$engine" logs "$name" 2>&1 | grep -q 'the dashboard stays up'; do
  [ "$("$engine" inspect -f '{{.State.Running}}' "$name" 2>/dev/null)" = true ] || { "$engine" logs "$name" 2>&1 | tail -n 20; fail "the demo container stopped before serving"; }
  [ "$SECONDS" -lt "$deadline" ] || fail "the demo did not finish within 300 s"
  sleep 1
done
address=$("$engine" port "$name" 8080 | head -n 1)
node docker/healthcheck.js "http://$address/api/health" "$token" || fail "/api/health from the host at $address"
if node docker/healthcheck.js "http://$address/api/health" >/dev/null 2>&1; then
  fail "/api/health from the host answered without the token"
fi
until [ "$("$engine" inspect -f '{{.State.Health.Status}}' "$name")" = healthy ]; do
  [ "$SECONDS" -lt "$deadline" ] || fail "the HEALTHCHECK never reported healthy"
  sleep 1
done
git -c safe.directory='*' -C "$workspace" log --oneline --merges | grep -q . || fail "no merged PRs in the workspace"

"$engine" stop -t 20 "$name" >/dev/null
status=$("$engine" inspect -f '{{.State.ExitCode}}' "$name")
[ "$status" = 0 ] || fail "after stop the demo exited $status, expected 0 (a finished run)"
echo "docker smoke test passed ($engine): demo done, /api/health and HEALTHCHECK healthy, stopped cleanly"
