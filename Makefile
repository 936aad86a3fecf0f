# memif_cffi - common tasks. Everything runs inside .venv, created on demand.
#
#   make run     build, then run the loopback demo (python -m memif_cffi.demo)
#   make test    build, then pytest + ruff + mypy
#   make lib     build/libmemif.so and build/libmemif.a for C programs
#   make fuzz    libFuzzer targets (clang); FUZZ_SECONDS=N per target (default 60)
#   make clean   remove build products (keeps .venv)

PYTHON3 ?= python3
VENV    := .venv
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
VENV_STAMP := $(VENV)/.memif-deps

# MEMIF_CFFI_CFLAGS (extra flags for the extension, e.g. sanitizers) is
# recorded in a file that changes only when the value does, so that changing
# it rebuilds the extension.
FLAGS_STAMP := build/extension-flags
$(shell mkdir -p build && (printf '%s\n' '$(MEMIF_CFFI_CFLAGS)' | cmp -s - $(FLAGS_STAMP) || printf '%s\n' '$(MEMIF_CFFI_CFLAGS)' > $(FLAGS_STAMP)))

LIB_CFLAGS := -std=gnu11 -O2 -fPIC -fvisibility=hidden -Wall -Wextra -Werror -pthread -Ilibmemif-src/include -Ilibmemif-src/src
LIB_OBJS   := $(patsubst libmemif-src/src/%.c,build/obj/%.o,$(LIBMEMIF_SRCS))

.PHONY: all run test lib clean venv ext fuzz

all: ext

venv: $(VENV_STAMP)

$(VENV_STAMP):
	test -x $(PY) || $(PYTHON3) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet cffi setuptools pytest ruff mypy
	touch $@

ext: $(EXT)

# The extension is rebuilt whenever the C library, the helpers, the cdef
# files, the builder or the package version change.
$(EXT): $(VENV_STAMP) $(FLAGS_STAMP) build_ffi.py memif_cffi/_version.py $(LIBMEMIF_SRCS) $(LIBMEMIF_HDRS) $(SUPPORT) $(CDEFS)
	$(PY) build_ffi.py

run: $(EXT)
	$(PY) -m memif_cffi.demo

test: $(EXT) lib
	$(PY) -m pytest -q tests
	$(PY) -m ruff check memif_cffi build_ffi.py tests
	$(PY) -m mypy

lib: build/libmemif.so build/libmemif.a

build/obj/%.o: libmemif-src/src/%.c $(LIBMEMIF_HDRS)
	@mkdir -p build/obj
	$(CC) $(LIB_CFLAGS) -c $< -o $@

build/libmemif.so: $(LIB_OBJS)
	$(CC) -shared -pthread -Wl,-soname,libmemif.so -o $@ $(LIB_OBJS)

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

clean:
	rm -rf build memif_cffi/_libmemif*.so memif_cffi/_libmemif.c
	find . -name __pycache__ -type d -not -path './$(VENV)/*' -prune -exec rm -rf {} +
