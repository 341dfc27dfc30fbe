# allocbench: two commands do everything on a fresh Debian machine.
#   make bench   installs what is missing, builds, and replays the bundled traces
#   make test    installs what is missing, builds, and runs the whole test suite
SWIFT      ?= swift
BUILD_DIR  := .build/release
SHARED     ?= ../shared
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages the build links against, as pkg-config names them, and the package to install.
PKG_jemalloc := libjemalloc-dev
PKG_zlib     := zlib1g-dev
# Malloc replacements allocbench runs through LD_PRELOAD (found by file name, not pkg-config).
PRELOAD_LIBS := libmimalloc.so.2:libmimalloc-dev libtcmalloc_minimal.so.4:libtcmalloc-minimal4 libtbbmalloc_proxy.so.2:libtbbmalloc2
MULTIARCH    := $(shell gcc -print-multiarch 2>/dev/null || echo x86_64-linux-gnu)
# LLVM's scudo lives under the LLVM version's own directory; any installed version will do.
SCUDO_GLOB   := /usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.scudo_standalone-$(shell uname -m).so
SCUDO_PKG    := libclang-rt-14-dev
# The lean replay children (Sources/LeanChild/build.sh): Embedded Swift linked with musl or glibc.
LEAN_BUILD   := Sources/LeanChild/build.sh
# The bundled traces: the seed program, and real programs recorded with `allocbench record`.
SCALE_OPS    ?= 1000000,10000000
TRACES       := $(wildcard Benchmarks/traces/*.txt Benchmarks/traces/*.txt.gz)

.PHONY: all deps build bench bench-replay-loop bench-handover test test-fast gate baselines targets fuzz fuzz-smoke fuzz-build fuzz-corpus clean

all: build

# Installs a package only when pkg-config cannot find it, so a set-up machine is not touched.
deps:
	@command -v pkg-config >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq pkg-config; }
	@missing=""; \
	for lib in jemalloc zlib; do \
	  pkg-config --exists $$lib || missing="$$missing $$(case $$lib in jemalloc) echo $(PKG_jemalloc);; zlib) echo $(PKG_zlib);; esac)"; \
	done; \
	for pair in $(PRELOAD_LIBS); do \
	  [ -e /usr/lib/$(MULTIARCH)/$${pair%%:*} ] || missing="$$missing $${pair##*:}"; \
	done; \
	ls $(SCUDO_GLOB) >/dev/null 2>&1 || missing="$$missing $(SCUDO_PKG)"; \
	command -v musl-gcc >/dev/null || missing="$$missing musl-tools"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq $$missing; \
	fi

build: deps
	$(SWIFT) build -c release
	$(LEAN_BUILD) $(BUILD_DIR)

bench: build
	$(BUILD_DIR)/allocbench list
	$(BUILD_DIR)/allocbench --trace $(TRACES)
	@if [ -f $(SHARED)/traces/android/systemui.zip ]; then \
	  $(BUILD_DIR)/parse-benchmark $(SHARED)/traces/android/systemui.zip; \
	fi
	@# Parse speed at a large live set (issue 17: ≥ 300 MB/s at any size): synthetic traces of
	@# 100 k and 1 M live blocks over 8 threads, generated here, never committed.
	@mkdir -p .build; [ -f .build/synthetic-100k.txt ] || python3 Benchmarks/synthetic_trace.py --live 100000 --ops 3000000 .build/synthetic-100k.txt
	@[ -f .build/synthetic-1m.txt ] || python3 Benchmarks/synthetic_trace.py --live 1000000 --ops 6000000 .build/synthetic-1m.txt
	$(BUILD_DIR)/parse-benchmark .build/synthetic-100k.txt .build/synthetic-1m.txt
	@# The parent's max RSS per million ops and wall time against trace length (issue 17: at most
	@# 256 MiB at 50 M ops, text and .gz alike): SCALE_OPS=1000000,10000000,50000000 for the full table.
	python3 Benchmarks/scale.py --allocbench $(BUILD_DIR)/allocbench --ops $(SCALE_OPS)
	@# Whole invocations' median ns/op side by side (issue 17: within ±5 % on a quiet machine).
	python3 Benchmarks/repeatability.py --allocbench $(BUILD_DIR)/allocbench \
	  $(firstword $(wildcard $(SHARED)/traces/android/systemui.zip) Benchmarks/traces/gcc-O2-cc1.txt.gz)
	$(MAKE) --no-print-directory bench-replay-loop
	@# What one hand-over between threads of a per-thread replay costs, against the kernel's floor.
	$(MAKE) --no-print-directory bench-handover

# The replay loop against a plain C loop (issue #17: at most 1.05x per op for every process-malloc
# row): Benchmarks/ReplayLoop/reference.c linked with each malloc the way its lean child is
# (Sources/LeanChild/build.sh), and compare.py timing it and the row's lean child in interleaved
# rounds on systemui and the bundled traces. A report of ratios measured in one run, not a gate.
REPLAY_LOOP_DIR    := .build/replay-loop
REPLAY_LOOP_ROUNDS ?= 10
REPLAY_LOOP_TRACES := $(wildcard $(SHARED)/traces/android/systemui.zip) $(TRACES)
REPLAY_LOOP_SOURCE := Benchmarks/ReplayLoop/reference.c
REPLAY_LOOP_CFLAGS := -std=c11 -O2 -D_GNU_SOURCE -Wall -Wextra -Werror -I Sources/CAllocBench/include
# The launcher links the parent side of the C shim (ab_spawn), which is written for clang, the
# compiler SwiftPM builds it with.
REPLAY_LOOP_SHIM   := Sources/CAllocBench/CAllocBench.c Sources/CAllocBench/child.c
REPLAY_LOOPS       := $(addprefix $(REPLAY_LOOP_DIR)/,reference-glibc reference-glibc-static reference-musl \
                      reference-jemalloc reference-jemalloc-static time-child)

bench-replay-loop: build $(REPLAY_LOOPS)
	python3 Benchmarks/ReplayLoop/compare.py --bin $(BUILD_DIR) --loops $(REPLAY_LOOP_DIR) \
	  --rounds $(REPLAY_LOOP_ROUNDS) $(REPLAY_LOOP_TRACES)

$(REPLAY_LOOP_DIR)/reference-glibc: $(REPLAY_LOOP_SOURCE) Sources/CAllocBench/include/CAllocBench.h
	@mkdir -p $(@D)
	gcc $(REPLAY_LOOP_CFLAGS) $< -o $@ -Wl,-z,now
$(REPLAY_LOOP_DIR)/reference-glibc-static: $(REPLAY_LOOP_SOURCE) Sources/CAllocBench/include/CAllocBench.h
	@mkdir -p $(@D)
	gcc $(REPLAY_LOOP_CFLAGS) $< -o $@ -static
$(REPLAY_LOOP_DIR)/reference-musl: $(REPLAY_LOOP_SOURCE) Sources/CAllocBench/include/CAllocBench.h
	@mkdir -p $(@D)
	musl-gcc $(REPLAY_LOOP_CFLAGS) $< -o $@ -static
$(REPLAY_LOOP_DIR)/reference-jemalloc: $(REPLAY_LOOP_SOURCE) Sources/CAllocBench/include/CAllocBench.h
	@mkdir -p $(@D)
	gcc $(REPLAY_LOOP_CFLAGS) $< -o $@ -Wl,-z,now $$(pkg-config --libs jemalloc)
$(REPLAY_LOOP_DIR)/reference-jemalloc-static: $(REPLAY_LOOP_SOURCE) Sources/CAllocBench/include/CAllocBench.h
	@mkdir -p $(@D)
	gcc $(REPLAY_LOOP_CFLAGS) $< -o $@ -static $$(pkg-config --static --libs jemalloc) -lstdc++ -lm -lpthread
$(REPLAY_LOOP_DIR)/time-child: Benchmarks/ReplayLoop/time-child.c $(REPLAY_LOOP_SHIM) Sources/CAllocBench/include/CAllocBench.h
	@mkdir -p $(@D)
	clang $(REPLAY_LOOP_CFLAGS) $< $(REPLAY_LOOP_SHIM) -o $@ -ldl

HANDOVER := $(REPLAY_LOOP_DIR)/handover

bench-handover: $(HANDOVER)
	$(HANDOVER)

$(HANDOVER): Benchmarks/HandOver/handover.c $(REPLAY_LOOP_SHIM) Sources/CAllocBench/include/CAllocBench.h
	@mkdir -p $(@D)
	clang $(REPLAY_LOOP_CFLAGS) $< $(REPLAY_LOOP_SHIM) -o $@ -ldl -lpthread

# The baselines are read, never written, by a test run: recording them here would make the gate
# gate nothing. Their checksum, taken first and compared last, fails the run if anything wrote them.
BASELINES_SUM := cat Benchmarks/baselines/* | cksum
BASELINES_SUM_FILE := .build/baselines-before-test.cksum

test: deps
	@mkdir -p .build && $(BASELINES_SUM) > $(BASELINES_SUM_FILE)
	$(SWIFT) build --build-tests
	$(LEAN_BUILD) .build/debug
	$(SWIFT) test --skip-build --disable-swift-testing
	$(MAKE) gate
	$(MAKE) fuzz-smoke
	@[ "$$($(BASELINES_SUM))" = "$$(cat $(BASELINES_SUM_FILE))" ] || \
	  { echo "make test: Benchmarks/baselines changed during the run; they are recorded only by the baselines target" >&2; exit 1; }

# The pure tests only (parser, gate, metric table, text formats): no child process, seconds.
test-fast:
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build --disable-swift-testing --filter AllocBenchUnitTests

# Our own allocators against the committed baselines: a change that makes one touch or map more
# pages on a bundled trace fails here. The baselines were taken with a release build.
gate: build
	$(BUILD_DIR)/allocbench check --baseline Benchmarks/baselines --trace $(TRACES)

# Re-record the baselines after an intended change, then review and commit the diff.
baselines: build
	$(BUILD_DIR)/allocbench baseline update --trace $(TRACES) --output Benchmarks/baselines

# The issues' page and speed targets on the real traces in $(SHARED)/traces: a report, not a gate.
targets: build $(HANDOVER)
	SHARED=$(SHARED) python3 Benchmarks/targets.py

# libFuzzer targets for the trace parser and the gate's inputs (Fuzz/; docs/architecture.md,
# "Fuzzing"), built with -sanitize=fuzzer and address in a scratch directory of their own. The
# targets exist only when ALLOCBENCH_FUZZ=1 (Package.swift). `make fuzz` runs each for
# FUZZ_SECONDS and keeps what it finds in $(FUZZ_DIR)/corpus; `make fuzz-smoke` is CI's short run
# from the seeds alone (a fresh corpus each time). A crash, leak or hang (-timeout) fails the target and leaves the input in
# $(FUZZ_DIR)/artifacts/.
FUZZ_DIR           := .build-fuzz
FUZZ_SECONDS       ?= 300
FUZZ_SMOKE_SECONDS ?= 20
FUZZ_CORPUS        ?= $(FUZZ_DIR)/corpus
FUZZ_TARGETS       := ParserFuzzer BaselineFuzzer
# SwiftPM's --sanitize=fuzzer links libFuzzer's main instead of the target's; it hands swiftc one
# -sanitize= per sanitizer and swiftc keeps only the last, so the Swift code also gets both at once.
FUZZ_SANITIZERS    ?= --sanitize=fuzzer --sanitize=address -Xswiftc -sanitize=fuzzer,address
FUZZ_ARGS_ParserFuzzer   := -max_len=8192 -dict=Fuzz/trace.dict
FUZZ_ARGS_BaselineFuzzer := -max_len=16384
CORPUS_ParserFuzzer      := parser
CORPUS_BaselineFuzzer    := baseline
ALLOCBENCH_BIN     := $(firstword $(wildcard $(BUILD_DIR)/allocbench .build/debug/allocbench))

fuzz-build: deps
	@for target in $(FUZZ_TARGETS); do \
	  ALLOCBENCH_FUZZ=1 $(SWIFT) build -c release --scratch-path $(FUZZ_DIR) $(FUZZ_SANITIZERS) --product $$target || exit 1; \
	done

# Seeds: slices of $(SHARED)/traces and Benchmarks/traces, the committed baselines (never committed copies).
fuzz-corpus:
	python3 Fuzz/make_corpus.py $(FUZZ_DIR)/seeds $(SHARED) $(ALLOCBENCH_BIN)

fuzz: fuzz-build fuzz-corpus
	@for target in $(FUZZ_TARGETS); do $(MAKE) --no-print-directory fuzz-run-$$target || exit 1; done

fuzz-run-%:
	@mkdir -p $(FUZZ_CORPUS)/$* $(FUZZ_DIR)/artifacts
	@echo "fuzz: $* for $(FUZZ_SECONDS) s"
	LSAN_OPTIONS=suppressions=Fuzz/lsan.supp:print_suppressions=0 \
	$(FUZZ_DIR)/release/$* -max_total_time=$(FUZZ_SECONDS) -timeout=10 -print_final_stats=1 \
	  -artifact_prefix=$(FUZZ_DIR)/artifacts/$*- $(FUZZ_ARGS_$*) $(FUZZ_CORPUS)/$* $(FUZZ_DIR)/seeds/$(CORPUS_$*)

fuzz-smoke:
	rm -rf $(FUZZ_DIR)/smoke-corpus
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS) FUZZ_CORPUS=$(FUZZ_DIR)/smoke-corpus

clean:
	rm -rf .build $(FUZZ_DIR)
