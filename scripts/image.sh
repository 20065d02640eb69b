#!/usr/bin/env bash
# image.sh: builds the mxpolicyd container image from contrib/compose/Dockerfile
# without a Docker engine, checks what was built, and runs it. scripts/test.sh
# calls it; run it as root from anywhere in a checkout:
#
#   scripts/image.sh              build, inspect and run, then throw it away
#   scripts/image.sh -o FILE.tar  also keep the image as a docker-archive
#                                 (docker load -i FILE.tar; podman load -i FILE.tar),
#                                 tagged mxpolicyd:latest as docker-compose.yml expects
#
# The binary is compiled here (static, CGO_ENABLED=0) and copied in: the image
# is FROM scratch, so nothing is pulled from a registry. buildah builds it in
# Docker format (the OCI image config has no HEALTHCHECK) with the vfs storage
# driver and chroot isolation, which need neither overlayfs nor a daemon.
# Everything lives in a throwaway store under /tmp, so concurrent runs and the
# machine's own container store never meet.
#
# Then podman runs it as docker-compose.yml does (host network, read-only root,
# no capabilities, its log rotated) with a config that listens on a free
# loopback port and turns SPF off (no DNS here): one policy request must get
# the greylisting deferral, which needs the SQLite store in the state volume;
# the health check must pass; SIGTERM must end it with status 0.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib/policy.sh

save=""
if [ "${1:-}" = "-o" ] && [ -n "${2:-}" ]; then
	save=$(realpath -m "$2")
elif [ $# -ne 0 ]; then
	echo "usage: scripts/image.sh [-o FILE.tar]" >&2
	exit 2
fi

# Size budget: the stripped binary is about 20 MB and nothing else is there.
max_mb=30
uid=65532 # contrib/compose/Dockerfile USER
tag=localhost/mxpolicyd:latest

tmp=$(mktemp -d /tmp/mxp-image-XXXXXX)
store=(--root "$tmp/storage" --runroot "$tmp/run" --storage-driver vfs)
ctr=mxp-image-$$
cleanup() {
	podman "${store[@]}" rm -f -t 0 "$ctr" >/dev/null 2>&1 || true
	# vfs layers are plain directories; the store's mounts are gone with
	# the container, so removing the tree removes everything.
	rm -rf "$tmp"
}
trap cleanup EXIT

fail() {
	echo "image.sh: $*" >&2
	exit 1
}

version=$(git describe --tags --always --dirty 2>/dev/null || echo devel)
revision=$(git rev-parse HEAD 2>/dev/null || echo unknown)

echo "image.sh: building the static binary ($version)"
ctx=$tmp/context
mkdir -p "$ctx/state"
CGO_ENABLED=0 go build -trimpath -buildvcs=false \
	-ldflags "-s -w -X main.buildVersion=$version" \
	-o "$ctx/mxpolicyd" ./cmd/mxpolicyd
echo "mxpolicyd:x:$uid:$uid:mxpolicyd:/var/lib/mxpolicyd:/sbin/nologin" >"$ctx/passwd"
echo "mxpolicyd:x:$uid:" >"$ctx/group"

echo "image.sh: buildah bud (vfs, chroot isolation, docker format)"
buildah "${store[@]}" bud --quiet --isolation chroot --format docker \
	--label "org.opencontainers.image.version=$version" \
	--label "org.opencontainers.image.revision=$revision" \
	--label "org.opencontainers.image.created=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
	-f contrib/compose/Dockerfile -t "$tag" "$ctx" >/dev/null

inspect() { podman "${store[@]}" image inspect --format "$1" "$tag"; }
user=$(inspect '{{.Config.User}}')
entry=$(inspect '{{json .Config.Entrypoint}}')
health=$(inspect '{{json .HealthCheck.Test}}')
title=$(inspect '{{index .Labels "org.opencontainers.image.title"}}')
size=$(inspect '{{.Size}}')
echo "image.sh: user $user, entrypoint $entry, health check $health, $((size / 1024 / 1024)) MB"
[ "$user" = "$uid:$uid" ] || fail "image user $user, want $uid:$uid"
[ "$entry" = '["/usr/local/bin/mxpolicyd"]' ] || fail "entrypoint $entry"
[ "$health" = '["CMD","/usr/local/bin/mxpolicyd","healthcheck"]' ] ||
	fail "health check $health: built without --format docker?"
[ "$title" = mxpolicyd ] || fail "label org.opencontainers.image.title is '$title'"
[ "$size" -lt $((max_mb * 1024 * 1024)) ] || fail "image is $size bytes, over $max_mb MB"

port=$(free_port) || fail "no free loopback port"
cat >"$tmp/mxpolicyd.yaml" <<EOF
listen: ["127.0.0.1:$port"]
checks:
  spf: {enabled: false}
EOF
chmod 644 "$tmp/mxpolicyd.yaml"

# runc, not crun: crun refuses a host with both cgroup v1 and v2 hierarchies
# mounted ("hybrid mode"), as this test machine has. podman raises the
# open-files and process limits for root by default, which needs
# CAP_SYS_RESOURCE; the container gets this shell's open-files limit and a
# process limit far above what it uses (Go's threads count, a few dozen).
# The health check is the one docker-compose.yml sets (this config file, not
# the defaults); it runs below on demand, as podman schedules it only through
# systemd timers, which this machine lacks.
echo "image.sh: podman run on 127.0.0.1:$port"
podman "${store[@]}" run -d --name "$ctr" --runtime runc \
	--ulimit "nofile=$(ulimit -Sn):$(ulimit -Hn)" --ulimit nproc=4096:4096 \
	--network host --read-only --cap-drop ALL --security-opt no-new-privileges \
	--log-driver json-file --log-opt max-size=50m --log-opt max-file=5 \
	-v "$tmp/mxpolicyd.yaml:/etc/mxpolicyd/mxpolicyd.yaml:ro" \
	--health-cmd '["/usr/local/bin/mxpolicyd", "--config", "/etc/mxpolicyd/mxpolicyd.yaml", "healthcheck"]' \
	--health-interval disable \
	"$tag" --config /etc/mxpolicyd/mxpolicyd.yaml serve >/dev/null

# The daemon listens once it has opened the store (migrations included).
for _ in $(seq 100); do
	(exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
	sleep 0.1
done
reply=$(policy_ask "$port" bob@example.net)
echo "image.sh: reply: $reply"
case $reply in
action=DEFER_IF_PERMIT*) ;;
*)
	podman "${store[@]}" logs "$ctr" >&2 || true
	fail "want the greylisting deferral, got '$reply'"
	;;
esac

podman "${store[@]}" healthcheck run "$ctr" >/dev/null || fail "health check failed"
echo "image.sh: health check passed"

podman "${store[@]}" stop -t 10 "$ctr" >/dev/null
status=$(podman "${store[@]}" inspect --format '{{.State.ExitCode}}' "$ctr")
if [ "$status" != 0 ]; then
	podman "${store[@]}" logs "$ctr" >&2 || true
	fail "container exited with status $status after SIGTERM, want 0"
fi
echo "image.sh: stopped cleanly"

if [ -n "$save" ]; then
	podman "${store[@]}" save --format docker-archive -o "$save" "$tag" >/dev/null
	echo "image.sh: saved $save"
fi
