# phiguard — make targets. `make demo` and `make test` are the two set-up commands.
GO      ?= go
BIN     ?= bin
PKGS    := ./...

.PHONY: all build test test-deps vet race bench bench-micro fuzz demo clean

all: build

build:
	$(GO) build -o $(BIN)/phiguard ./cmd/phiguard
	$(GO) build -o $(BIN)/messaging-app ./examples/messaging-app
	$(GO) build -o $(BIN)/demo ./examples/demo

# Every test: vet, then the race-enabled suite (fuzz seed corpora run as unit tests).
test: test-deps vet race

# The session store's tests start their own redis-server on loopback:
# install Debian's package when it is missing.
test-deps:
	@command -v redis-server >/dev/null || { echo "installing redis-server (tests start it on loopback)"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null; } \
		|| { echo "the tests need redis-server: apt-get install redis-server"; exit 1; }

vet:
	$(GO) vet $(PKGS)

race:
	$(GO) test -race -count=1 $(PKGS)

# phiguard beside a bare reverse proxy on loopback, real ES256 tokens on
# every request, interleaved rounds; prints one table and saves the rounds
# to bin/bench/<commit>.txt for benchstat. Flags: make bench BENCHFLAGS='-rounds 6'
bench: build
	$(GO) run ./bench -phiguard $(BIN)/phiguard $(BENCHFLAGS)

# The micro-benchmarks: transformer, tokens, route matching, JWT, audit.
bench-micro:
	$(GO) test -run '^$$' -bench . -benchmem $(PKGS)

# Explore beyond the seed corpora: make fuzz FUZZTIME=60s
FUZZTIME ?= 30s
fuzz:
	$(GO) test ./keys -run '^$$' -fuzz FuzzParseToken -fuzztime $(FUZZTIME)
	$(GO) test ./policy -run '^$$' -fuzz FuzzParseSelector -fuzztime $(FUZZTIME)
	$(GO) test ./policy -run '^$$' -fuzz FuzzLoad -fuzztime $(FUZZTIME)
	$(GO) test ./policy -run '^$$' -fuzz FuzzMatchIndex -fuzztime $(FUZZTIME)
	$(GO) test ./engine/codec -run '^$$' -fuzz FuzzRewriteJSON -fuzztime $(FUZZTIME)
	$(GO) test ./engine/codec -run '^$$' -fuzz FuzzRewriteForm -fuzztime $(FUZZTIME)
	$(GO) test ./engine -run '^$$' -fuzz FuzzCanonicalize -fuzztime $(FUZZTIME)
	$(GO) test ./engine -run '^$$' -fuzz FuzzValidJSON -fuzztime $(FUZZTIME)
	$(GO) test ./engine/codec -run '^$$' -fuzz FuzzHasTokenMarker -fuzztime $(FUZZTIME)
	$(GO) test ./audit -run '^$$' -fuzz FuzzAppendJSON -fuzztime $(FUZZTIME)
	$(GO) test ./identity -run '^$$' -fuzz FuzzReadHeader -fuzztime $(FUZZTIME)

# The demo app behind phiguard, with copy-paste curl lines. Ctrl-C stops it.
demo: build
	$(BIN)/demo -bin $(BIN)

clean:
	rm -rf $(BIN)
