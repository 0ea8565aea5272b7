# The two commands: `make up` and `make test`. Both install what is missing and build first.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
# Runs the tests of a label and fails if fewer ran than tests/suite.txt defines for it.
RUN_TESTS = scripts/run-tests $(BUILD_DIR)

.PHONY: all deps configure build console up down test test-unit test-slow bench tsan asan clean

all: build

deps:
	@scripts/install-deps

$(BUILD_DIR)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

configure: deps $(BUILD_DIR)/Makefile

# Everything: the arbor binary, every test and benchmark.
build: configure
	cmake --build $(BUILD_DIR) -j$(JOBS)

# The web console's files (npm ci against console/package-lock.json, then Vite), which the
# daemon serves from $(BUILD_DIR)/console.
console: configure
	cmake --build $(BUILD_DIR) -j$(JOBS) --target console

# Only what `make up` runs: the arbor binary and the console it serves.
up: configure
	cmake --build $(BUILD_DIR) -j$(JOBS) --target arbor console
	$(BUILD_DIR)/arbor up

# Only stops: no installing, no building.
down:
	@if [ -x $(BUILD_DIR)/arbor ]; then $(BUILD_DIR)/arbor down; \
	 else echo "$(BUILD_DIR)/arbor is not built: nothing to stop"; fi

# The whole suite that CI runs: unit and integration tests (the slow label is separate).
# Then the store's tests again under ThreadSanitizer.
test: build
	$(RUN_TESTS) 'unit|integration'
	$(MAKE) --no-print-directory tsan

test-unit: build
	$(RUN_TESTS) unit

test-slow: build
	$(RUN_TESTS) slow

bench: build
	bench/run-all $(BUILD_DIR)

# Sanitizer builds, one switch away.
tsan: deps
	cmake -S . -B build-tsan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DARBOR_SANITIZE=thread >/dev/null
	cmake --build build-tsan -j$(JOBS) --target storage_test
	TSAN_OPTIONS="halt_on_error=1 die_after_fork=0 suppressions=$(CURDIR)/tests/tsan.supp" build-tsan/src/storage/storage_test

asan: deps
	cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DARBOR_SANITIZE=address
	cmake --build build-asan -j$(JOBS)
	ctest --test-dir build-asan --output-on-failure -L unit

clean:
	rm -rf $(BUILD_DIR) build-tsan build-asan
