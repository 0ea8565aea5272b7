# The two commands: `make up` and `make test`. Both install what is missing and build first.
BUILD_DIR ?= build
BUILD_TYPE ?= RelWithDebInfo
JOBS ?= $(shell nproc)
CTEST = ctest --test-dir $(BUILD_DIR) --output-on-failure --timeout 900

.PHONY: all deps build up down test test-unit test-slow bench tsan asan clean

all: build

deps:
	@scripts/install-deps

$(BUILD_DIR)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD_DIR) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: deps $(BUILD_DIR)/Makefile
	cmake --build $(BUILD_DIR) -j$(JOBS)

up: build
	$(BUILD_DIR)/arbor up

down: build
	$(BUILD_DIR)/arbor down

# The whole suite that CI runs: unit and integration tests (the slow label is separate).
# Then the store's tests again under ThreadSanitizer.
test: build
	$(CTEST) -L 'unit|integration' -LE slow
	$(MAKE) --no-print-directory tsan

test-unit: build
	$(CTEST) -L unit

test-slow: build
	$(CTEST) -L slow

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
