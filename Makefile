# podshim: build, test, demo. Run as root on Debian bookworm (containerd 2.x, runc, CNI plugins from
# scripts/install-deps.sh). The end-to-end suite starts private containerd instances under /tmp.

CARGO       ?= cargo
# Where cargo puts binaries (respects CARGO_TARGET_DIR). The e2e suite runs the shim built here.
TARGET_DIR  ?= $(or $(CARGO_TARGET_DIR),$(CURDIR)/target)
# e2e tests are isolated (own containerd, bridge, subnet, cgroup each) and run in parallel
# (verified stable at 4 threads on 2 cores); E2E_THREADS=1 for one at a time.
# Filter with E2E_FILTER=::runc or E2E_FILTER=::podshim.
E2E_THREADS ?= 2
E2E_FILTER  ?=
# The shim as shipped: static, position-dependent (see shim/build.rs), release profile.
SHIM_TARGET  = x86_64-unknown-linux-gnu
SHIM_DIR     = $(TARGET_DIR)/$(SHIM_TARGET)/release
SHIM_RUSTFLAGS = -C target-feature=+crt-static -C relocation-model=static

.PHONY: all build shim-release test unit e2e e2e-runc e2e-podshim demo bench clippy

all: build

## build: release binaries of the whole workspace, and the static shim in $(SHIM_DIR)
build: shim-release
	$(CARGO) build --release --workspace --exclude podshim-shim --bins

## shim-release: containerd-shim-podshim-v1 as it ships (one per pod: size is memory)
shim-release:
	RUSTFLAGS="$(SHIM_RUSTFLAGS)" $(CARGO) build --release -p podshim-shim --target $(SHIM_TARGET)

## test: unit tests of every crate, then the end-to-end suite (runc reference and podshim);
## both always run, the target fails if either failed
test:
	@rc=0; $(MAKE) --no-print-directory unit || rc=1; $(MAKE) --no-print-directory e2e || rc=1; \
	 if [ $$rc -ne 0 ]; then echo "make test: FAILED (see unit and e2e output above)" >&2; fi; exit $$rc

unit:
	@rc=0; $(CARGO) test --no-fail-fast --workspace --exclude podshim-integration || rc=1; \
	 $(CARGO) test --no-fail-fast -p podshim-integration --lib --bins || rc=1; exit $$rc

## e2e: build the shim as it ships, then run every e2e case against both handlers
e2e: shim-release
	PODSHIM_BIN_DIR=$(SHIM_DIR) $(CARGO) test --no-fail-fast -p podshim-integration --test e2e -- \
		--test-threads=$(E2E_THREADS) $(E2E_FILTER)

e2e-runc:
	$(MAKE) e2e E2E_FILTER=::runc

e2e-podshim:
	$(MAKE) e2e E2E_FILTER=::podshim

## demo: install packages, build release, run a pod under podshim and print logs, stats, shim memory
demo:
	bash scripts/install-deps.sh
	$(MAKE) --no-print-directory build
	PODSHIM_BIN_DIR=$(SHIM_DIR) $(TARGET_DIR)/release/podshim-demo

bench:
	@echo "make bench: the benchmarks are not built yet" >&2
	@exit 1

clippy:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
