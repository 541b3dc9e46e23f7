# ihala - build, test, demo and benchmark. Plain GNU make; libraries via pkg-config.
#
#   make            build everything into build/
#   make deps       install the Debian packages the project needs (when missing)
#   make test       deps + build + the whole suite; last line "N passed, N failed"
#   make sanitize   the same suite built with ASan + UBSan into build-san/
#   make demo       deps + build + a real referral lifecycle on loopback
#   make bench      deps + build + the benchmark (not part of the tests)
#   make clean

B ?= build
CC ?= cc
PROTOC_C ?= protoc-c

# Debian packages the build, tests, demo and benchmark need.
DEB_PKGS = gcc make pkg-config libc6-dev openssl \
	libzmq3-dev libprotobuf-c-dev protobuf-c-compiler \
	liblmdb-dev lmdb-utils libssl-dev libcmocka-dev \
	libinih-dev libjansson-dev libmicrohttpd-dev iproute2 procps

PKG_LIBS = libzmq libprotobuf-c lmdb openssl inih jansson libmicrohttpd

WARN = -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
HARDEN = -D_FORTIFY_SOURCE=2 -fstack-protector-strong -fPIE
OPT ?= -O2 -g
ifdef SAN
SANFLAGS = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
endif
CFLAGS_ALL = -std=gnu11 $(OPT) $(WARN) $(HARDEN) $(SANFLAGS) -MMD -MP \
	-Iproto -Ibroker -Iclients -I$(B)/gen \
	$(shell pkg-config --cflags $(PKG_LIBS) 2>/dev/null) $(CFLAGS)
LDFLAGS_ALL = -pie -Wl,-z,relro -Wl,-z,now $(SANFLAGS) $(LDFLAGS)
LIBS = $(shell pkg-config --libs $(PKG_LIBS) 2>/dev/null) -lpthread -lm
TEST_LIBS = $(shell pkg-config --libs cmocka 2>/dev/null)

GEN_C = $(B)/gen/ihala.pb-c.c
GEN_H = $(B)/gen/ihala.pb-c.h

PROTO_SRC = $(wildcard proto/*.c)
CLIENT_SRC = $(wildcard clients/*.c)
CLI_SRC = $(wildcard clients/cli/*.c)
BROKER_SRC = $(filter-out broker/main.c,$(wildcard broker/*.c))
UNIT_SRC = $(wildcard tests/unit/*_test.c)
TOOL_SRC = $(wildcard tests/tools/*.c)
BENCH_SRC = $(wildcard bench/*.c)

obj = $(patsubst %.c,$(B)/obj/%.o,$(1))
LIB_OBJ = $(call obj,$(PROTO_SRC) $(CLIENT_SRC)) $(B)/obj/gen/ihala.pb-c.o
BROKER_OBJ = $(call obj,$(BROKER_SRC))
UNIT_BIN = $(patsubst tests/unit/%.c,$(B)/tests/unit/%,$(UNIT_SRC))
TOOL_BIN = $(patsubst tests/tools/%.c,$(B)/tests/tools/%,$(TOOL_SRC))
BENCH_BIN = $(patsubst bench/%.c,$(B)/bench/%,$(BENCH_SRC))

BINS = $(B)/ihala-broker $(B)/ihala $(B)/libihala.a

# Keep intermediate objects (no rebuild of test objects on every run).
.SECONDARY:

.PHONY: all deps test check sanitize demo bench bench-smoke clean fuzz tests
.DEFAULT_GOAL := all

all: $(BINS) tests

tests: $(UNIT_BIN) $(TOOL_BIN)

# Idempotent: installs only what is missing, says what it installs.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "make deps: installing:$$missing"; \
		SUDO=""; [ "$$(id -u)" = 0 ] || SUDO=sudo; \
		$$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing || exit 1; \
	fi

$(GEN_C) $(GEN_H): proto/ihala.proto
	@mkdir -p $(B)/gen
	$(PROTOC_C) --c_out=$(B)/gen -Iproto proto/ihala.proto

# Generated code: same flags, but its style is not ours to fix.
$(B)/obj/gen/ihala.pb-c.o: $(GEN_C)
	@mkdir -p $(dir $@)
	$(CC) $(filter-out -Werror -Wmissing-prototypes,$(CFLAGS_ALL)) -c -o $@ $<

$(B)/obj/%.o: %.c | $(GEN_H)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS_ALL) -c -o $@ $<

$(B)/libihala.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/libbroker.a: $(BROKER_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(B)/ihala-broker: $(B)/obj/broker/main.o $(B)/libbroker.a $(B)/libihala.a
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(B)/ihala: $(call obj,$(CLI_SRC)) $(B)/libihala.a
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(B)/tests/unit/%: $(B)/obj/tests/unit/%.o $(B)/libbroker.a $(B)/libihala.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS) $(TEST_LIBS)

$(B)/tests/tools/%: $(B)/obj/tests/tools/%.o $(B)/libbroker.a $(B)/libihala.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS)

$(B)/bench/%: $(B)/obj/bench/%.o $(B)/libbroker.a $(B)/libihala.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ALL) -o $@ $^ $(LIBS) $(BENCH_LIBS)

# The suite: unit tests, then integration tests against real processes.
check: all
	@tests/run $(B)

test: deps
	@$(MAKE) --no-print-directory check

sanitize: deps
	@$(MAKE) --no-print-directory B=build-san SAN=1 OPT="-O1 -g" check

clean:
	rm -rf build build-san

-include $(shell find $(B)/obj -name '*.d' 2>/dev/null)
