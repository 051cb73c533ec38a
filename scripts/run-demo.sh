#!/usr/bin/env bash
# `make run`: the sidecar image next to a tiny app, the way a pod runs them.
#
# The app is a busybox shell (process name "sh") that prints its config whenever it gets SIGHUP.
# Both containers run as UID 65534 and see demo/config read-only; the sidecar joins the app's PID
# namespace (--pid=container:...), as `shareProcessNamespace: true` does in Kubernetes.
set -euo pipefail

image=${1:?usage: run-demo.sh IMAGE LABEL}
label=${2:?usage: run-demo.sh IMAGE LABEL}
cd "$(dirname "$0")/.."

config=$PWD/demo/config
app=config-reloader-demo-app
sidecar=config-reloader-demo
app_image=config-reloader-demo-app:latest

mkdir -p "$config"
chmod 0755 demo "$config"
[ -e "$config/app.conf" ] || echo 'greeting = hello' >"$config/app.conf"
chmod 0644 "$config/app.conf"

# An app image FROM scratch: busybox-static and a script that reloads on SIGHUP.
ctx=$(mktemp -d)
cleanup() {
    docker rm -f "$app" "$sidecar" >/dev/null 2>&1 || true
    [ -z "${logs_pid:-}" ] || kill "$logs_pid" 2>/dev/null || true
    rm -rf "$ctx"
}
trap cleanup EXIT
mkdir -p "$ctx/bin"
cp /bin/busybox "$ctx/bin/busybox"
ln -s busybox "$ctx/bin/sh"
cat >"$ctx/app.sh" <<'APP'
show() { echo "app: config is now: $(cat /config/app.conf)"; }
trap 'echo "app: got SIGHUP, reloading"; show' HUP
trap 'exit 0' TERM INT
show
# `wait` returns as soon as a trapped signal arrives, so the reload prints at once.
while :; do /bin/busybox sleep 3600 & wait $!; /bin/busybox kill $! 2>/dev/null; done
APP
cat >"$ctx/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY bin/ /bin/
COPY app.sh /app.sh
ENTRYPOINT ["/bin/sh", "/app.sh"]
DOCKERFILE
docker build --quiet --label "$label=demo" -t "$app_image" "$ctx" >/dev/null
docker image prune -f --filter "label=$label=demo" >/dev/null

docker rm -f "$app" "$sidecar" >/dev/null 2>&1 || true
docker run -d --name "$app" --label "$label=demo" --user 65534:65534 \
    -v "$config:/config:ro" "$app_image" >/dev/null
docker logs -f "$app" &
logs_pid=$!

cat <<MSG

  The app container ($app) prints its config; the sidecar ($sidecar) watches /config.
  In another terminal, change the config and watch both logs here:

      echo 'greeting = hola' > demo/config/app.conf

  A chmod or touch, or writing the same content again, sends nothing. Ctrl-C stops the demo.

MSG

# In the foreground; docker passes Ctrl-C on to the sidecar, which logs "exiting" and stops.
docker run --rm --name "$sidecar" --label "$label=demo" --pid "container:$app" \
    -v "$config:/config:ro" -e CONFIG_DIR=/config -e PROCESS_NAME=sh "$image" || true
