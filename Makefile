# memif_cffi - common tasks. Everything runs inside .venv, created on demand.
#
#   make run     build, then run the loopback demo (python -m memif_cffi demo)
#   make test    build, then pytest + ruff + mypy + the C warning check (gcc and clang)
#   make docs    the documentation site (mkdocs, strict) into build/docs-site
#   make warnings  the C sources through gcc and clang, -Wall -Wextra -Werror, C11 and GNU11
#   make lib     build/libmemif.so and build/libmemif.a for C programs
#   make fuzz    libFuzzer targets (clang); FUZZ_SECONDS=N per target (default 60)
#   make sanitize  the whole suite again, with the extension, build/libmemif.so and
#                the C test programs built with AddressSanitizer + UBSan
#   make coverage  the whole suite again, measuring line coverage of libmemif-src/src
#                (gcov, >= 90%) and memif_cffi (coverage.py, >= 95%)
#   make bench   benchmarks into docs/benchmarks.md (~12 min; BENCH_QUICK=1: ~1 min smoke run)
#   make clean   remove build products (keeps .venv)

PYTHON3 ?= python3
VENV    ?= .venv
PY      := $(VENV)/bin/python
ifeq ($(origin CC),default)
CC := gcc
endif

LIBMEMIF_SRCS := $(addprefix libmemif-src/src/,errors.c msg.c ctrl.c sock.c shm.c datapath.c db.c details.c)
LIBMEMIF_HDRS := libmemif-src/include/libmemif.h libmemif-src/include/memif.h \
                 libmemif-src/src/memif_private.h
SUPPORT       := memif_cffi/_support.c memif_cffi/_support.h
CDEFS         := $(wildcard memif_cffi/_cdef/*.cdef)

EXT_SUFFIX := $(shell $(PYTHON3) -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
EXT        := memif_cffi/_libmemif$(EXT_SUFFIX)
# Tools the Makefile installs into .venv; the stamp's name changes with the list.
VENV_DEPS  := cffi setuptools pytest hypothesis ruff mypy build scapy mkdocs "mkdocstrings[python]"
VENV_STAMP := $(VENV)/.memif-deps-$(shell printf '%s' '$(VENV_DEPS)' | cksum | cut -d' ' -f1)

# MEMIF_CFFI_CFLAGS (extra flags for the extension, e.g. sanitizers) is
# recorded in a file that changes only when the value does, so that changing
# it rebuilds the extension.
FLAGS_STAMP := build/extension-flags
$(shell mkdir -p build && (printf '%s\n' '$(MEMIF_CFFI_CFLAGS)' | cmp -s - $(FLAGS_STAMP) || printf '%s\n' '$(MEMIF_CFFI_CFLAGS)' > $(FLAGS_STAMP)))

# LIB_EXTRA_CFLAGS: more flags for build/libmemif.so (make sanitize, make coverage).
LIB_EXTRA_CFLAGS ?=
LIB_CFLAGS := -std=gnu11 -O2 -fPIC -fvisibility=hidden -Wall -Wextra -Werror -pthread -Ilibmemif-src/include -Ilibmemif-src/src $(LIB_EXTRA_CFLAGS)
LIB_OBJS   := $(patsubst libmemif-src/src/%.c,build/obj/%.o,$(LIBMEMIF_SRCS))

.PHONY: all run test suite lib clean venv ext fuzz sanitize coverage bench docs warnings

all: ext

venv: $(VENV_STAMP)

$(VENV_STAMP):
	test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(VENV_DEPS)
	touch $@

ext: $(EXT)

# The extension is rebuilt whenever the C library, the helpers, the cdef
# files, the builder or the package version change.
$(EXT): $(VENV_STAMP) $(FLAGS_STAMP) build_ffi.py memif_cffi/_version.py $(LIBMEMIF_SRCS) $(LIBMEMIF_HDRS) $(SUPPORT) $(CDEFS)
	$(PY) build_ffi.py

run: $(EXT)
	$(PY) -m memif_cffi demo

# TEST_ENV: environment for pytest only (make sanitize preloads the sanitizer runtimes);
# PYTEST: how pytest is started (make coverage runs it under coverage.py).
TEST_ENV ?=
PYTEST   ?= -m pytest

test: suite warnings
	$(PY) -m ruff check memif_cffi build_ffi.py tests examples bench docs
	$(PY) -m mypy
	MYPYPATH=tests/cli $(PY) -m mypy tests/cli
	MYPYPATH=tests/examples:examples $(PY) -m mypy tests/examples examples
	MYPYPATH=tests/hostile:tests $(PY) -m mypy tests/hostile
	MYPYPATH=tests/contrib:tests/cli $(PY) -m mypy tests/contrib
	MYPYPATH=tests/packaging:tests $(PY) -m mypy tests/packaging tests/test_docs_build.py
	$(PY) -m mypy docs/mkdocs/hooks.py
	$(PY) -m mypy bench

# The pytest suite alone (make sanitize and make coverage run it in their trees).
suite: $(EXT) lib
	$(TEST_ENV) $(PY) $(PYTEST) -q tests

lib: build/libmemif.so build/libmemif.a

# Every C source of the library and of the extension's helpers, through both
# compilers in strict ISO C11 and in GNU C11, warnings as errors.
WARN_CCS  ?= gcc clang
WARN_SRCS := $(LIBMEMIF_SRCS) memif_cffi/_support.c memif_cffi/_system_libmemif.c
warnings:
	@for cc in $(WARN_CCS); do for std in c11 gnu11; do \
	  echo "$$cc -std=$$std -Wall -Wextra -Werror -fsyntax-only (libmemif-src, memif_cffi helpers)"; \
	  $$cc -std=$$std -Wall -Wextra -Werror -fsyntax-only -Ilibmemif-src/include -Ilibmemif-src/src \
	    -Imemif_cffi -DMEMIF_CFFI_VERSION='"0"' $(WARN_SRCS) || exit 1; \
	done; done

# The documentation site: docs/mkdocs/mkdocs.yml, pages from docs/ and the
# READMEs, API reference from the docstrings (mkdocstrings).
docs: $(VENV_STAMP)
	$(PY) -m mkdocs build --strict -f docs/mkdocs/mkdocs.yml

build/obj/%.o: libmemif-src/src/%.c $(LIBMEMIF_HDRS)
	@mkdir -p build/obj
	$(CC) $(LIB_CFLAGS) -c $< -o $@

build/libmemif.so: $(LIB_OBJS)
	$(CC) -shared -pthread $(LIB_EXTRA_CFLAGS) -Wl,-soname,libmemif.so -o $@ $(LIB_OBJS)

build/libmemif.a: $(LIB_OBJS)
	rm -f $@
	ar rcs $@ $(LIB_OBJS)

# Fuzzing: control-message decoding and the whole handshake driven by a
# scripted fake peer. New crash inputs land in build/fuzz/; copy them into
# libmemif-src/fuzz/regressions/ so that make test replays them.
FUZZ_SECONDS ?= 60
FUZZ_CC      ?= clang
FUZZ_TARGETS := fuzz_msg fuzz_handshake
FUZZ_FLAGS   := -std=gnu11 -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
                -Wall -Wextra -Werror -Ilibmemif-src/include -Ilibmemif-src/src

fuzz:
	@mkdir -p build/fuzz
	$(PYTHON3) libmemif-src/fuzz/make_seeds.py build/fuzz/seeds
	for t in $(FUZZ_TARGETS); do \
	  $(FUZZ_CC) $(FUZZ_FLAGS) $(LIBMEMIF_SRCS) libmemif-src/fuzz/$$t.c -o build/fuzz/$$t || exit 1; \
	done
	@mkdir -p build/fuzz/corpus/msg build/fuzz/corpus/handshake
	build/fuzz/fuzz_msg -max_total_time=$(FUZZ_SECONDS) -artifact_prefix=build/fuzz/msg- \
	  build/fuzz/corpus/msg build/fuzz/seeds/msg
	build/fuzz/fuzz_handshake -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	  -artifact_prefix=build/fuzz/handshake- build/fuzz/corpus/handshake build/fuzz/seeds/handshake \
	  libmemif-src/fuzz/regressions

# Sanitizers: a copy of the tree in build/sanitize (so the normal build stays
# usable meanwhile) runs make test with everything compiled with ASan + UBSan.
# Python itself is not instrumented: the runtimes are preloaded into it, with
# leak checking off there (the interpreter keeps memory until exit) and on in
# the C test programs (tests/cprog.py). Any report aborts the process.
SAN_FLAGS := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
SAN_TREE  := build/sanitize
SAN_PRELOAD = $(shell $(CC) -print-file-name=libasan.so) $(shell $(CC) -print-file-name=libubsan.so)

# copy_tree DIR: the working tree without build products, into DIR (the
# extension's type stub _libmemif.pyi is a source: the packaging tests want it).
copy_tree = rm -rf $(1) && mkdir -p $(1) && \
	tar --exclude=./.git --exclude=./.venv --exclude=./build \
	    --exclude='./memif_cffi/_libmemif*.so' --exclude='./memif_cffi/_libmemif.c' \
	    --exclude='*/__pycache__' -cf - . | tar -xf - -C $(1)

sanitize: $(VENV_STAMP)
	$(call copy_tree,$(SAN_TREE))
	$(MAKE) -C $(SAN_TREE) suite VENV=$(abspath $(VENV)) LIB_EXTRA_CFLAGS="$(SAN_FLAGS)" \
	    MEMIF_CFFI_CFLAGS="$(SAN_FLAGS)" MEMIF_SANITIZE=1 \
	    TEST_ENV="LD_PRELOAD='$(SAN_PRELOAD)' ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"

# Coverage: a copy of the tree in build/coverage, with the extension and
# build/libmemif.so compiled with --coverage, runs the suite under coverage.py
# (subprocesses included); tests/coverage_check.py then checks both totals and
# that every C function never called is listed there with its reason.
COV_TREE  := build/coverage
# Atomic counters: the data path runs in several threads at once.
COV_FLAGS := --coverage -fprofile-update=atomic

coverage: $(VENV_STAMP)
	$(PY) -m pip install --quiet "coverage>=7.10" gcovr
	$(call copy_tree,$(COV_TREE))
	$(MAKE) -C $(COV_TREE) suite VENV=$(abspath $(VENV)) LIB_EXTRA_CFLAGS="$(COV_FLAGS)" \
	    MEMIF_CFFI_CFLAGS="$(COV_FLAGS)" PYTEST="-m coverage run -m pytest"
	cd $(COV_TREE) && $(abspath $(PY)) -m coverage combine -q && \
	    $(abspath $(PY)) tests/coverage_check.py

bench: $(EXT) lib
	$(PY) -c 'import matplotlib' 2>/dev/null || $(PY) -m pip install --quiet matplotlib
	BENCH_QUICK=$(BENCH_QUICK) $(PY) -m bench

clean:
	rm -rf build memif_cffi/_libmemif*.so memif_cffi/_libmemif.c
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +
