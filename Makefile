# exposure: build, test and benchmark targets. `make test` needs only Go.
GO        ?= go
BIN       ?= bin/exposure
PKGS      ?= ./...
STATICCHECK_VERSION ?= v0.8.2

TEST_TIMEOUT ?= 10m
FUZZTIME  ?= 3s

.PHONY: all build test race fuzz lab bench lint run clean

all: build

# Build information for `exposure --version` and exposure_build_info, stamped
# into prometheus/common's version package as the Prometheus exporters do.
VERSION    ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION   ?= $(shell git rev-parse HEAD 2>/dev/null)
BRANCH     ?= $(shell git rev-parse --abbrev-ref HEAD 2>/dev/null)
BUILD_USER ?= $(shell id -un)@$(shell hostname)
BUILD_DATE ?= $(shell date -u +%Y%m%d-%H:%M:%S)
VERSION_PKG = github.com/prometheus/common/version
LDFLAGS    ?= -X $(VERSION_PKG).Version=$(VERSION) -X $(VERSION_PKG).Revision=$(REVISION) \
	-X $(VERSION_PKG).Branch=$(BRANCH) -X $(VERSION_PKG).BuildUser=$(BUILD_USER) -X $(VERSION_PKG).BuildDate=$(BUILD_DATE)

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/exposure

# Unit and loopback tests; lab tests skip themselves in -short mode. The
# timeout turns a hung test into a failure with every goroutine's stack.
test:
	CGO_ENABLED=0 $(GO) test -short -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

# make test under the race detector, which needs cgo (and gcc).
race:
	CGO_ENABLED=1 $(GO) test -race -short -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

# Every fuzz target for FUZZTIME past its seeds, one at a time (go test
# fuzzes one target of one package per run). The targets are listed by
# go test -list, so a new one is fuzzed without editing this file. A
# failing input is written under the package's testdata/fuzz/.
fuzz:
	@list=$$(CGO_ENABLED=0 $(GO) test -list '^Fuzz' $(PKGS)) || { echo "$$list"; exit 1; }; \
	targets=$$(echo "$$list" | awk '/^Fuzz/ { f[n++] = $$1 } /^ok / { for (i = 0; i < n; i++) print $$2 " " f[i]; n = 0 }'); \
	[ -n "$$targets" ] || { echo "fuzz: no fuzz targets found" >&2; exit 1; }; \
	echo "$$targets" | while read -r pkg fn; do \
		echo "== fuzz $$pkg $$fn ($(FUZZTIME))"; \
		run() { CGO_ENABLED=0 $(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZTIME) "$$pkg" 2>&1; }; \
		if ! out=$$(run); then \
			echo "$$out"; \
			case "$$out" in *"Failing input written"*) exit 1;; esac; \
			echo "== fuzz $$fn stopped without a failing input (Go's fuzzer can report 'context deadline exceeded' at the deadline); once more"; \
			run || exit 1; \
		else echo "$$out" | tail -3; fi; \
	done

# Root-only tests in network namespaces with real daemons. A missing
# dependency is a failure here, not a skip.
lab:
	EXPOSURE_LAB=required CGO_ENABLED=0 $(GO) test -count=1 -timeout 20m -run 'Lab|CrashRecovery' $(PKGS)

bench:
	CGO_ENABLED=0 $(GO) test -run '^$$' -bench . -benchmem $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $(PKGS)

run: build
	./$(BIN) daemon

clean:
	rm -rf bin
