# podshim: build, test, demo. Run as root on Debian bookworm (containerd 2.x, runc, CNI plugins from
# scripts/install-deps.sh). The end-to-end suite starts private containerd instances under /tmp.

CARGO       ?= cargo
# Where cargo puts binaries (respects CARGO_TARGET_DIR). The e2e suite runs the shim built here.
TARGET_DIR  ?= $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
# The commit the daemons' --version names (empty outside a git checkout: "unknown").
export PODSHIM_GIT_COMMIT ?= $(shell git -C $(CURDIR) rev-parse --short HEAD 2>/dev/null)
# e2e tests are isolated (own containerd, bridge, subnet, cgroup each) and run in parallel
# (verified stable at 4 threads on 2 cores); E2E_THREADS=1 for one at a time.
# Filter with E2E_FILTER=::runc or E2E_FILTER=::podshim.
E2E_THREADS ?= 2
E2E_FILTER  ?=
# The containerd release `make e2e` runs against: empty = the containerd on PATH (Debian's 2.1.9
# here); X.Y.Z = containerd-X.Y.Z-linux-<arch>.tar.xz from $(SHARED_DIR)/containerd (release
# builds of containerd, ctr and its runc shim), unpacked under $(TARGET_DIR)/containerd-X.Y.Z and
# put first on PATH. `make e2e-matrix` (and `make test`) run every release this machine has;
# E2E_MATRIX_JOBS of them at once, each with E2E_THREADS cases at once: 2 x 2 keeps the 4 cases
# at once the suite is proven stable with on 2 cores (the cases mostly wait on processes and
# timers; 3 x 2 ran too, in 6 minutes against 7, and lost one attach race of runc's shim once).
CONTAINERD  ?=
SHARED_DIR  ?= $(abspath $(CURDIR)/../shared)
E2E_MATRIX_JOBS ?= 2
# The shim as shipped: static, position-dependent (see shim/build.rs), release profile, linked against
# musl: static glibc brings about 600 KB of code a shim never runs (stdio, scanf, locales, NSS and
# dlopen, every CPU variant of the string functions), and the whole text of the binary is resident in
# every pod's shim. Falls back to static glibc where rustup has no musl target installed.
ARCH        := $(shell uname -m)
ifndef SHIM_TARGET
SHIM_TARGET := $(shell rustup target list --installed 2>/dev/null | grep -qx '$(ARCH)-unknown-linux-musl' \
                 && echo $(ARCH)-unknown-linux-musl || echo $(ARCH)-unknown-linux-gnu)
endif
SHIM_DIR     = $(TARGET_DIR)/$(SHIM_TARGET)/release
SHIM_RUSTFLAGS = -C target-feature=+crt-static -C relocation-model=static

.PHONY: all build chaos deb deb-test fuzz layout lint shim-release snapshotter-bin sandboxer-bin test unit e2e e2e-matrix e2e-runc e2e-podshim e2e-pauseless e2e-sandboxer demo bench bench-smoke bench-pull bench-snapshots critest release-daemons clippy

all: build

## build: release binaries of the whole workspace, and the static shim in $(SHIM_DIR)
build: shim-release
	$(CARGO) build --release --workspace --exclude podshim-shim --exclude podshim-holder --exclude podshim-exec --bins

## layout: the release shim's hot sections (.text, .rodata) against the 64 KiB windows
## shim/layout.toml allows: each window more is 64 KiB more RSS in every pod's shim
layout: shim-release
	$(CARGO) build -p podshim-integration --bin podshim-layout
	$(TARGET_DIR)/debug/podshim-layout $(SHIM_DIR)/containerd-shim-podshim-v1

## shim-release: containerd-shim-podshim-v1, podshim-holder and podshim-exec as they ship (one shim per pod: size is memory)
shim-release:
	RUSTFLAGS="$(SHIM_RUSTFLAGS)" $(CARGO) build --release -p podshim-shim -p podshim-holder -p podshim-exec --target $(SHIM_TARGET)

## test: unit tests of every crate, the installer's and the Debian package's tests, the
## end-to-end suite (runc reference and every podshim handler) against every containerd release
## this machine has, then a short chaos run (TEST_CHAOS_SECS) on the containerd on PATH; all
## always run, the target fails if any failed, and then prints what each failed e2e case said
TEST_CHAOS_SECS ?= 60
test:
	@rc=0; $(MAKE) --no-print-directory unit || rc=1; $(MAKE) --no-print-directory layout || rc=1; \
	 $(MAKE) --no-print-directory install-test || rc=1; \
	 $(MAKE) --no-print-directory deb-test || rc=1; \
	 $(MAKE) --no-print-directory deploy-test || rc=1; \
	 $(MAKE) --no-print-directory e2e-matrix || rc=1; \
	 $(MAKE) --no-print-directory chaos CHAOS_SECS=$(TEST_CHAOS_SECS) || rc=1; \
	 if [ $$rc -ne 0 ]; then TARGET_DIR=$(TARGET_DIR) bash scripts/failure-digest.sh; \
	   echo "make test: FAILED (see unit, install, deb, deploy, e2e and chaos output above)" >&2; fi; exit $$rc

unit:
	@rc=0; $(CARGO) test --no-fail-fast --workspace --exclude podshim-integration || rc=1; \
	 $(CARGO) test --no-fail-fast -p podshim-integration --lib --bins || rc=1; exit $$rc

## install-test: scripts/podshim-install for real in temp DESTDIRs (integration/tests/install.rs):
## against the containerd on PATH, and containerd 2.3.4 from $(SHARED_DIR) (SKIPPED, printed,
## without it); shellcheck of the script where shellcheck is installed
install-test:
	@if command -v shellcheck >/dev/null 2>&1; then shellcheck scripts/podshim-install && echo "shellcheck scripts/podshim-install: clean"; \
	 else echo "SKIPPED: shellcheck scripts/podshim-install: shellcheck is not installed"; fi
	SHARED_DIR=$(SHARED_DIR) TARGET_DIR=$(TARGET_DIR) $(CARGO) test -p podshim-integration --test install -- --nocapture

## install / uninstall: scripts/podshim-install on this node (as root; README, "Install", "Installing into an
## existing containerd 2.x"): the shim and holder into $(DESTDIR)$(PREFIX)/bin, the drop-ins, the
## main config's conversion and imports, a manifest that uninstall undoes exactly.
## INSTALL_ARGS="--with-sandboxer --with-snapshotter --restart --verify"; UNINSTALL_ARGS="--force".
PREFIX         ?= /usr/local
DESTDIR        ?=
INSTALL_ARGS   ?=
UNINSTALL_ARGS ?=
.PHONY: install uninstall install-test
install: build
	bash scripts/podshim-install install --prefix $(PREFIX) $(if $(DESTDIR),--destdir $(DESTDIR)) \
		--bin-dir $(SHIM_DIR) --bin-dir $(TARGET_DIR)/release $(INSTALL_ARGS)

uninstall:
	bash scripts/podshim-install uninstall --prefix $(PREFIX) $(if $(DESTDIR),--destdir $(DESTDIR)) $(UNINSTALL_ARGS)

## deb: $(TARGET_DIR)/deb/podshim_<version>_<arch>.deb (scripts/make-deb): the static shim and
## holder, the release daemons and their units, the installer, 50-podshim.toml and
## /etc/podshim/*.toml as conffiles; postinst runs `podshim-install install --packaged`
## (README, "Debian package"). DEB_MAINTAINER="Name <email>" for the Maintainer field.
DEB_MAINTAINER ?=
deb: build
	DEB_MAINTAINER="$(DEB_MAINTAINER)" bash scripts/make-deb --out $(TARGET_DIR)/deb \
		--bin-dir $(SHIM_DIR) --bin-dir $(TARGET_DIR)/release

## deb-test: the package (stand-in binaries) installed, upgraded, removed and purged by dpkg in
## a temp root (integration/tests/deb.rs), against the containerd on PATH and 2.3.4 from
## $(SHARED_DIR) (SKIPPED, printed, without it); shellcheck of make-deb and the maintainer scripts
DEB_SCRIPTS = scripts/make-deb packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm
deb-test:
	@if command -v shellcheck >/dev/null 2>&1; then shellcheck $(DEB_SCRIPTS) && echo "shellcheck $(DEB_SCRIPTS): clean"; \
	 else echo "SKIPPED: shellcheck $(DEB_SCRIPTS): shellcheck is not installed"; fi
	SHARED_DIR=$(SHARED_DIR) TARGET_DIR=$(TARGET_DIR) $(CARGO) test -p podshim-integration --test deb -- --nocapture

## deploy-image: $(TARGET_DIR)/deploy/podshim-node-installer.oci.tar, the node-installer image
## config-snippets/deploy/podshim-deploy.yaml runs (README, "Cluster install (DaemonSet)"), built
## offline like the test images: busybox, scripts/podshim-node-install, the static shim and holder,
## the release daemons, podshim-install and its snippets
.PHONY: deploy-image deploy-test
deploy-image: build
	$(CARGO) run -p podshim-integration --bin podshim-deploy-image -- --out $(TARGET_DIR)/deploy \
		--bin-dir $(SHIM_DIR) --bin-dir $(TARGET_DIR)/release

## deploy-test: the manifests checked against Kubernetes' API types (k8s-openapi), and the image
## run under a private containerd on a scratch node root: install, SIGTERM, uninstall leaves it
## byte-identical (integration/tests/deploy.rs); shellcheck of the entrypoint
deploy-test: shim-release sandboxer-bin
	@if command -v shellcheck >/dev/null 2>&1; then shellcheck scripts/podshim-node-install && echo "shellcheck scripts/podshim-node-install: clean"; \
	 else echo "SKIPPED: shellcheck scripts/podshim-node-install: shellcheck is not installed"; fi
	TARGET_DIR=$(TARGET_DIR) $(CARGO) test -p podshim-integration --test deploy -- --nocapture

E2E_ENV = PODSHIM_BIN_DIR=$(SHIM_DIR) PODSHIM_SNAPSHOTTER_BIN=$(TARGET_DIR)/debug/podshim-snapshotter \
	PODSHIM_SANDBOXER_BIN=$(TARGET_DIR)/debug/podshim-sandboxer TARGET_DIR=$(TARGET_DIR) \
	SHARED_DIR=$(SHARED_DIR) E2E_THREADS=$(E2E_THREADS) E2E_MATRIX_JOBS=$(E2E_MATRIX_JOBS) CARGO=$(CARGO)

## e2e: build the shim as it ships, podshim-snapshotter and podshim-sandboxer (the cases of those
## handlers start them), then run every e2e case against each handler on containerd $(CONTAINERD)
e2e: shim-release snapshotter-bin sandboxer-bin
	$(E2E_ENV) bash scripts/e2e-release.sh $(or $(CONTAINERD),system) -- $(E2E_FILTER)

## e2e-matrix: the same against the containerd on PATH and every release in $(SHARED_DIR)/containerd,
## then on the containerd on PATH with podshim-snapshotter as every handler's snapshotter
e2e-matrix: shim-release snapshotter-bin sandboxer-bin
	$(E2E_ENV) bash scripts/e2e-matrix.sh -- $(E2E_FILTER)

snapshotter-bin:
	$(CARGO) build -p podshim-snapshotter --bin podshim-snapshotter

sandboxer-bin:
	$(CARGO) build -p podshim-sandboxer --bin podshim-sandboxer

e2e-runc:
	$(MAKE) e2e E2E_FILTER=::runc

e2e-podshim:
	$(MAKE) e2e E2E_FILTER=::podshim

e2e-pauseless:
	$(MAKE) e2e E2E_FILTER=::podshim_pauseless

e2e-sandboxer:
	$(MAKE) e2e E2E_FILTER=::podshim_sandboxer

## demo: install packages, build release, run a pod under podshim and print logs, stats, shim memory
demo:
	bash scripts/install-deps.sh
	$(MAKE) --no-print-directory build
	PODSHIM_BIN_DIR=$(SHIM_DIR) $(TARGET_DIR)/release/podshim-demo

## bench: podshim against containerd's runc shim on one private containerd, handlers interleaved;
## Markdown table on stdout, raw samples in $(TARGET_DIR)/bench/bench.json. The shim under test is the
## release build, static as shipped. So is the benchmark's own driver: on two cores a debug client's
## CPU is taken from the daemons it times (README, "The benchmark's own client"). Extra flags:
## make bench BENCH_ARGS="--pods 100 --handlers runc,podshim --pool 10 --out x.json"
BENCH_ARGS  ?=
bench: release-daemons
	$(CARGO) build --release -p podshim-integration --bin podshim-bench
	$(RELEASE_ENV) $(TARGET_DIR)/release/podshim-bench --out $(TARGET_DIR)/bench/bench.json $(BENCH_ARGS)

## release-daemons: what `bench` and `critest` run, as shipped: the static shim and both daemons
## (release builds), named to the harness by RELEASE_ENV
RELEASE_ENV = PODSHIM_BIN_DIR=$(SHIM_DIR) \
	PODSHIM_SNAPSHOTTER_BIN=$(TARGET_DIR)/release/podshim-snapshotter \
	PODSHIM_SANDBOXER_BIN=$(TARGET_DIR)/release/podshim-sandboxer
release-daemons: shim-release
	$(CARGO) build --release -p podshim-snapshotter --bin podshim-snapshotter
	$(CARGO) build --release -p podshim-sandboxer --bin podshim-sandboxer

## bench-smoke: for CI, checks only that the benchmark runs and prints its table (--quick, 2 pods,
## debug shim and snapshotter, 1k files for Usage: its figures mean nothing)
bench-smoke:
	$(CARGO) build -p podshim-shim -p podshim-holder -p podshim-exec --bins
	$(CARGO) build -p podshim-snapshotter --bin podshim-snapshotter
	$(CARGO) build -p podshim-sandboxer --bin podshim-sandboxer
	$(CARGO) build -p podshim-integration --bin podshim-bench
	PODSHIM_BIN_DIR=$(TARGET_DIR)/debug PODSHIM_SNAPSHOTTER_BIN=$(TARGET_DIR)/debug/podshim-snapshotter \
		PODSHIM_SANDBOXER_BIN=$(TARGET_DIR)/debug/podshim-sandboxer \
		$(TARGET_DIR)/debug/podshim-bench --quick --pods 2 \
		--out $(TARGET_DIR)/bench/bench-smoke.json $(BENCH_ARGS)

## bench-pull: the pull figure (parallel layer unpack on containerd >= 2.2) on each release:
## the containerd on PATH, then 2.2.7 and 2.3.4 from $(SHARED_DIR) (SKIPPED where missing)
bench-pull:
	$(CARGO) build --release -p podshim-snapshotter --bin podshim-snapshotter
	$(CARGO) build --release -p podshim-integration --bin podshim-bench-snapshots
	PODSHIM_SNAPSHOTTER_BIN=$(TARGET_DIR)/release/podshim-snapshotter TARGET_DIR=$(TARGET_DIR) \
		SHARED_DIR=$(SHARED_DIR) bash scripts/bench-pull-releases.sh $(BENCH_ARGS)

## critest: the CRI validation suite (exec, streaming exec and security context specs) against every
## handler on each containerd release (scripts/critest.sh): CRITEST=<critest binary of cri-tools
## v1.32+>, which this repository neither ships nor builds. Not part of `make test`.
critest: release-daemons
	$(CARGO) build -p podshim-integration --bin podshim-critest
	$(RELEASE_ENV) TARGET_DIR=$(TARGET_DIR) SHARED_DIR=$(SHARED_DIR) bash scripts/critest.sh $(CRITEST_ARGS)

## bench-snapshots: only the snapshotter figures (release podshim-snapshotter and driver), on their
## own containerd
bench-snapshots:
	$(CARGO) build --release -p podshim-snapshotter --bin podshim-snapshotter
	$(CARGO) build --release -p podshim-integration --bin podshim-bench-snapshots
	PODSHIM_SNAPSHOTTER_BIN=$(TARGET_DIR)/release/podshim-snapshotter \
		$(TARGET_DIR)/release/podshim-bench-snapshots --out $(TARGET_DIR)/bench/bench-snapshots.json $(BENCH_ARGS)

## chaos: pods started and removed under load for CHAOS_SECS seconds (split between the handlers
## podshim, podshim-pauseless and podshim-sandboxer, each on its own private containerd) while
## containerd, podshim-sandboxer and pod shims get SIGKILL at random and are restarted; then every
## container's CRI log, every leftover and the daemons' fds and RSS are checked. CHAOS_SEED=N
## replays a run's random choices. make test runs it for TEST_CHAOS_SECS (60).
CHAOS_SECS  ?= 120
CHAOS_SEED  ?=
# e.g. CHAOS_ARGS="--handlers podshim,runc --pods 4 --lines 200"
CHAOS_ARGS  ?=
chaos: shim-release sandboxer-bin
	$(CARGO) build -p podshim-integration --bin podshim-chaos
	PODSHIM_BIN_DIR=$(SHIM_DIR) PODSHIM_SANDBOXER_BIN=$(TARGET_DIR)/debug/podshim-sandboxer \
		CHAOS_SECS=$(CHAOS_SECS) CHAOS_SEED=$(CHAOS_SEED) $(TARGET_DIR)/debug/podshim-chaos $(CHAOS_ARGS)

## fuzz: every decoder of outside input fed FUZZ_ITERATIONS inputs per target (`make unit`, and
## so CI, runs the same targets at 3000; FUZZ_SEED=N replays another run)
FUZZ_ITERATIONS ?= 300000
fuzz:
	FUZZ_ITERATIONS=$(FUZZ_ITERATIONS) $(CARGO) test --workspace --exclude podshim-integration fuzz

## lint: formatting as committed, and no clippy warning in any crate or test
lint: clippy
	$(CARGO) fmt --all --check

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
