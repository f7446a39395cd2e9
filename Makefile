# Thin wrapper over CMake/CTest: the two commands of the README.
#   make run   install what is missing, build, run the embedded default job
#   make test  install what is missing, build (warnings on), run the whole test suite,
#              then the unit and gradient tests again under ASan + UBSan
BUILD ?= build
JOBS ?= $(shell nproc)
CMAKE_FLAGS ?= -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: run test deps build build-asan clean bench

deps:
	@bash tools/install-deps.sh

build: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j$(JOBS)

build-asan: deps
	@cmake -S . -B $(BUILD)-asan -DCMAKE_BUILD_TYPE=Debug -DVPD_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD)-asan -j$(JOBS)

run: build
	@bash tools/run-default.sh $(BUILD)

test: build build-asan
	@cd $(BUILD) && ctest --output-on-failure -j2
	@cd $(BUILD)-asan && ctest --output-on-failure -j2 -L 'unit|grad'

clean:
	rm -rf $(BUILD) $(BUILD)-asan
