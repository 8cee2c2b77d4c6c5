# The README's quick start: `make demo` (the main job) and `make test` (the tests).
# Both install what building needs with apt-get first when it is missing
# (scripts/ensure-deps.sh). `make install PREFIX=DIR` installs the C API (docs/C-API.md).

.PHONY: demo test deps install test-installed

PREFIX ?= /usr/local

# What `make install` runs, in order, each with PREFIX (and DESTDIR) in its environment.
# A component with files to install appends its script here.
INSTALL_STEPS = scripts/install-capi.sh
INSTALL_STEPS += samples/sqlite/install.sh

# Tests of the installed files, run by `make test` after `swift test` against one fresh
# install into a temporary PREFIX (scripts/test-installed.sh); each script gets that
# PREFIX as its argument. Kept out of `swift test`: the release build takes minutes.
INSTALLED_TESTS = samples/c/test.sh
INSTALLED_TESTS += samples/sqlite/test.sh

deps:
	@scripts/ensure-deps.sh

# Builds the daxheap tool and runs its demo on an emulated device file in the temp dir.
demo: deps
	swift build --product daxheap
	"$$(swift build --show-bin-path)/daxheap" demo

# The whole test suite, then the tests of an installed C API.
test: deps
	swift test
	scripts/test-installed.sh $(INSTALLED_TESTS)

# Only the tests of the installed files.
test-installed: deps
	scripts/test-installed.sh $(INSTALLED_TESTS)

# Builds in release mode and installs under PREFIX: lib/libdaxheap.so, include/daxheap.h,
# lib/pkgconfig/daxheap.pc, and the SQLite VFS lib/libdaxheap_sqlite.so (samples/sqlite).
install: deps
	@set -e; for step in $(INSTALL_STEPS); do PREFIX="$(PREFIX)" DESTDIR="$(DESTDIR)" $$step; done
