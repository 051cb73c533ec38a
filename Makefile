# Build, package and test config-reloader-sidecar.
#
#   make          static musl release binaries for x86_64 and aarch64 (target/TRIPLE/release/config-reloader,
#                 staged as target/dist/{amd64,arm64}/config-reloader for Dockerfile.scratch)
#   make image    config-reloader-sidecar:latest for the host's platform, FROM scratch, and its size
#   make image-multiarch  target/oci/config-reloader-sidecar.tar: one OCI index, linux/amd64 + linux/arm64
#   make test-arm64       the reload and fault tests against the aarch64 binary under qemu-user
#   make run      the image next to a demo app; edit demo/config/app.conf and watch it reload
#   make test     everything CI checks: fmt, clippy, static binaries, images, cargo test (incl. docker e2e),
#                 bench-smoke, test-arm64
#   make bench    ours vs the inotifywait | pkill shell loop, side by side (bench/results/latest.md)
#   make soak     10,000 kubelet updates against the release binary: fds, RSS, signals per update
#   make clean    cargo clean, plus every container/image the e2e tests or the demo left behind
#
# Every target installs what it needs and is safe to run again (see `deps`).

SHELL        := /bin/bash
.SHELLFLAGS  := -euo pipefail -c
.DEFAULT_GOAL := all

TARGET       := x86_64-unknown-linux-musl
RELEASE_DIR  := target/$(TARGET)/release
BIN          := $(RELEASE_DIR)/config-reloader
SIGRECORD    := $(RELEASE_DIR)/sigrecord
IMAGE        := config-reloader-sidecar:latest
VERSION      := $(shell sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
SOURCE       := $(shell sed -n 's/^repository *= *"\(.*\)"/\1/p' Cargo.toml | head -n1)
# Line 2: the servers of tests/e2e_servers.rs (README "Tested with") and psql to query them.
# Line 3: the programs tests/targets.rs signals (tini, dumb-init, a python3 sigwait app) and
# the tools of tests/sending.rs (strace to hold the reloader, util-linux's setpriv/unshare;
# prlimit for tests/regressions_watch.rs).
# Line 4: the app tests/webhook_prometheus.rs reloads over HTTP (POST /-/reload), and the FUSE
# filesystem of tests/polling*.rs and the FUSE e2e mount (bindfs, fusermount).
APT_PACKAGES := busybox-static nginx-light inotify-tools curl \
                pgbouncer haproxy postgresql postgresql-client apache2-bin \
                tini dumb-init python3 strace util-linux \
                prometheus bindfs fuse3
# Every container and image the e2e tests and the demo create carries this label.
E2E_LABEL    := io.github.config-reloader-sidecar.e2e
PRUNE_OLD    := --filter label=org.opencontainers.image.title=config-reloader-sidecar --filter until=30s
# apt-get needs root; use sudo when we are not root and it exists.
SUDO         := $(shell [ "$$(id -u)" -eq 0 ] || command -v sudo)

.PHONY: all deps deps-rust deps-apt build-test-bins image run test clean restore-sysctl

# Both architectures, then each binary copied to target/dist/ARCH/ under its Docker/OCI
# architecture name, which is what Dockerfile.scratch's TARGETARCH selects.
all: deps-rust
	cargo build --release --target $(TARGET) --bin config-reloader
	cargo build --release --target $(ARM64_TARGET) --bin config-reloader
	@install -D -m 0755 $(BIN) target/dist/amd64/config-reloader
	@install -D -m 0755 $(ARM64_BIN) target/dist/arm64/config-reloader
	@for b in $(BIN) $(ARM64_BIN); do ls -l $$b | awk '{print "binary: " $$NF " " $$5 " bytes"}'; done

deps: deps-rust deps-apt deps-arm64

# The musl targets give fully static binaries that run in an empty (FROM scratch) image.
deps-rust:
	@for t in $(TARGET) $(ARM64_TARGET); do \
	  rustup target list --installed | grep -qx "$$t" || rustup target add "$$t"; \
	done

# Only installs (and only runs apt-get update) when a package is missing. dpkg-query prints one
# line: `dpkg -s | grep -q` under pipefail saw installed packages with long descriptions
# (buildah) as missing whenever grep quit before dpkg finished writing (SIGPIPE, exit 141).
deps-apt:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  [ "$$(dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null)" = "install ok installed" ] \
	    || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

# sigrecord is the signal-recording app the docker e2e tests put in their images.
build-test-bins: deps-rust
	cargo build --release --target $(TARGET) --bin config-reloader -p config-reloader
	cargo build --release --target $(TARGET) --bin sigrecord -p testkit

# .dockerignore keeps the build context down to the binaries; the prune drops the previous
# (now untagged) build. Docker 20.10's classic builder does not set TARGETARCH: we pass the
# host's, since that is the only platform `docker run` here can start. PRUNE_OLD spares
# untagged images younger than 30 s: the legacy builder's intermediate images carry the label
# too, and pruning them fails any build of Dockerfile.scratch running meanwhile (an e2e test
# binary's, say) with "No such image".
image: all
	docker build --quiet -f Dockerfile.scratch \
	  --build-arg TARGETARCH=$(HOST_ARCH) --build-arg VERSION=$(VERSION) --build-arg SOURCE=$(SOURCE) \
	  -t $(IMAGE) . >/dev/null
	@docker image prune -f $(PRUNE_OLD) >/dev/null
	@size=$$(docker image inspect -f '{{.Size}}' $(IMAGE)); \
	echo "image: $(IMAGE) $$size bytes ($$(( (size + 1023) / 1024 )) KiB)"

run: image deps-apt
	scripts/run-demo.sh $(IMAGE) $(E2E_LABEL)

test: restore-sysctl deps
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	$(MAKE) --no-print-directory build-test-bins image image-multiarch
	# Keeps the bench from rotting; its figures are reported, never asserted.
	$(MAKE) --no-print-directory bench-smoke
	CONFIG_RELOADER_BIN=$(CURDIR)/$(BIN) cargo test --workspace --no-fail-fast 2>&1 | tee target/test.log
	$(MAKE) --no-print-directory test-arm64
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "total: %d passed, %d failed\n", p, f }' \
	  target/test.log target/test-arm64.log

# tests/faults.rs lowers the global fs.inotify.max_queued_events to 16 for an instant and puts
# it back from a guard; a run killed in that instant leaves 16 behind. Restore the kernel default.
MAX_QUEUED_EVENTS := /proc/sys/fs/inotify/max_queued_events
restore-sysctl:
	@f=$(MAX_QUEUED_EVENTS); \
	if [ "$$(cat $$f)" = 16 ]; then \
	  echo "restoring $$f to 16384 (left at 16 by a killed test run)"; \
	  echo 16384 | $(SUDO) tee $$f >/dev/null; \
	fi

clean:
	cargo clean
	@ids=$$(docker ps -aq --filter label=$(E2E_LABEL)); [ -z "$$ids" ] || docker rm -f $$ids >/dev/null
	@ids=$$(docker images -q --filter label=$(E2E_LABEL) | sort -u); [ -z "$$ids" ] || docker rmi -f $$ids >/dev/null
	@docker image prune -f $(PRUNE_OLD) >/dev/null
	rm -rf demo

# ---- bench (issue 6): ours vs `inotifywait -m -r … | while read; do pkill -HUP -x …; done` ----
#   make bench        full run, a few minutes; table on stdout, bench/results/latest.{md,json}
#   make bench-smoke  the same with small counts, a few seconds (target/bench-smoke/)
# Figures are reported, never asserted. The bench crate is no default member: `cargo test` skips it.
.PHONY: bench bench-smoke deps-bench
deps-bench:
	@$(MAKE) --no-print-directory deps-apt APT_PACKAGES="inotify-tools procps util-linux bindfs fuse3"

bench bench-smoke: deps-bench build-test-bins
	cargo build -p bench
	target/debug/bench $(if $(filter bench-smoke,$@),--smoke)

# ---- soak (issue 5): kubelet updates, each awaited, against the static release binary ----
#   make soak   10,000 updates (SOAK_UPDATES=N to change); fds, VmRSS/VmHWM, signals per update
.PHONY: soak
soak: all
	cargo build --release -p testkit --bin sigrecord
	SOAK_BIN=$(CURDIR)/$(BIN) SOAK_UPDATES=$${SOAK_UPDATES:-10000} \
	  cargo test --release -p config-reloader --test soak -- --nocapture

# ---- arm64 (issue 12): a static aarch64 binary, its tests under qemu, a two-platform image ----
#   make                  builds it next to the x86_64 one (see `all`)
#   make image-multiarch  target/oci/config-reloader-sidecar.tar, one OCI index for both platforms
#   make test-arm64       the reload and fault suites against it, under qemu-user
ARM64_TARGET  := aarch64-unknown-linux-musl
ARM64_BIN     := target/$(ARM64_TARGET)/release/config-reloader
# Docker/OCI name of this machine's architecture: the platform `make image` builds.
HOST_ARCH     := $(shell uname -m | sed -e 's/^x86_64$$/amd64/' -e 's/^aarch64$$/arm64/')

# Linker for aarch64: rust-lld. rustc's musl targets are self-contained (musl's crt1.o, libc.a
# and libunwind.a ship in the rustup target), so a cross build needs only a linker that knows
# aarch64 ELF. rust-lld comes with the toolchain (same LLVM as rustc, same version on every
# machine, nothing to install); Debian's gcc-aarch64-linux-gnu would be 19 packages (~145 MB)
# of glibc cross toolchain used only to drive ld. Checked here with today's no_std binary and
# with the std + inotify port. x86_64 keeps the default `cc`, so the amd64 binary links exactly
# as before (on an aarch64 host, set CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld).
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER ?= rust-lld

.PHONY: deps-arm64 image-multiarch test-arm64
# qemu-user-static runs the aarch64 binary here; buildah builds the image index; skopeo reads
# it back (tests) and publishes it (README).
ARM64_APT_PACKAGES := qemu-user-static buildah skopeo
deps-arm64:
	@$(MAKE) --no-print-directory deps-apt APT_PACKAGES="$(ARM64_APT_PACKAGES)"

# One image reference, two platforms: buildah builds Dockerfile.scratch once per platform
# (setting TARGETARCH as buildx would) into a manifest list, then writes it as an OCI layout
# archive whose index.json points at one image index. One platform at a time, so the index
# always lists them in this order (`--platform a,b` builds them concurrently). The storage
# lives under target/ and is thrown away each time, so a run never appends to the list of an
# earlier one. --timestamp (the last commit's time) makes the digests depend only on the
# binaries. Runs as root, as `make test` does (buildah rootless needs subuids set up).
OCI_ARCHIVE   := target/oci/config-reloader-sidecar.tar
PLATFORMS     := linux/amd64 linux/arm64
BUILDAH_STORE := target/oci/buildah
BUILDAH       := buildah --root $(CURDIR)/$(BUILDAH_STORE)/root \
                 --runroot $(CURDIR)/$(BUILDAH_STORE)/run --storage-driver vfs
EPOCH         := $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
image-multiarch: deps-arm64 all
	@rm -rf $(BUILDAH_STORE) $(OCI_ARCHIVE)
	@mkdir -p $(dir $(OCI_ARCHIVE))
	for platform in $(PLATFORMS); do \
	  $(BUILDAH) bud --quiet --identity-label=false --timestamp $(EPOCH) \
	    --platform $$platform --manifest config-reloader-sidecar -f Dockerfile.scratch \
	    --build-arg VERSION=$(VERSION) --build-arg SOURCE=$(SOURCE) . >/dev/null; \
	done
	$(BUILDAH) manifest push --quiet --all --format oci config-reloader-sidecar \
	  oci-archive:$(OCI_ARCHIVE):$(VERSION)
	@rm -rf $(BUILDAH_STORE)
	@echo "image-multiarch: $(OCI_ARCHIVE) $$(stat -c %s $(OCI_ARCHIVE)) bytes," \
	  $$(skopeo inspect --raw oci-archive:$(OCI_ARCHIVE) \
	     | grep -o '"architecture":"[a-z0-9]*"' | cut -d'"' -f4 | paste -sd+)

# The tests run $CONFIG_RELOADER_BIN, so a two-line wrapper puts qemu in front of the aarch64
# binary: same pid (exec), arguments and environment. The reloader's inotify, signalfd, ppoll,
# pidfds and /proc scan all go through qemu's syscall translation; the apps it signals
# (sigrecord, Debian programs) stay native, as the rest of an arm64 pod is native to it.
# Skipped here (each still runs natively in `make test`), and why:
# - sigusr1_and_realtime_signals_are_sent_as_configured: qemu-user 7.2 moves guest real-time
#   signals up by two on the host (the host's glibc keeps the first two for itself), so the
#   SIGRTMIN+2 (36) the aarch64 binary sends reaches a native app as 38. An arm64 kernel
#   delivers 36: only the emulation is wrong.
QEMU_RELOADER := target/qemu/config-reloader
ARM64_SUITES  := reload faults
ARM64_SKIP    := sigusr1_and_realtime_signals_are_sent_as_configured
test-arm64: deps-arm64 all
	cargo build --quiet -p testkit --bin sigrecord
	@mkdir -p $(dir $(QEMU_RELOADER))
	@printf '#!/bin/sh\n# Written by make test-arm64.\nexec qemu-aarch64-static %s "$$@"\n' \
	  '$(CURDIR)/$(ARM64_BIN)' >$(QEMU_RELOADER)
	@chmod +x $(QEMU_RELOADER)
	CONFIG_RELOADER_BIN=$(CURDIR)/$(QEMU_RELOADER) cargo test -p config-reloader --no-fail-fast \
	  $(addprefix --test ,$(ARM64_SUITES)) -- $(addprefix --skip ,$(ARM64_SKIP)) \
	  2>&1 | tee target/test-arm64.log
