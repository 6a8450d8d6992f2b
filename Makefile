# exposure: build, test and benchmark targets. `make test` needs only Go.
GO        ?= go
BIN       ?= bin/exposure
PKGS      ?= ./...
STATICCHECK_VERSION ?= v0.8.2

.PHONY: all build test lab bench lint run clean fuzz

all: build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN) ./cmd/exposure

# Unit and loopback tests; lab tests skip themselves in -short mode.
test:
	CGO_ENABLED=0 $(GO) test -short -count=1 $(PKGS)

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
