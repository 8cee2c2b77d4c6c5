# The README's quick start: `make demo` (the main job) and `make test` (the tests).
# Both install libpmem-dev with apt-get first when it is missing.

.PHONY: demo test deps

deps:
	@scripts/ensure-deps.sh

# Builds the daxheap tool and runs its demo on an emulated device file in the temp dir.
demo: deps
	swift build --product daxheap
	"$$(swift build --show-bin-path)/daxheap" demo

# The whole test suite.
test: deps
	swift test
