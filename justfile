# PBAC Gateway tasks. `just` installs from npm: npm install -g rust-just

default: test

# The whole demo: gateway, authorization server, backends, dashboard.
up:
    go run ./cmd/pbac up

# The README's test command.
test:
    go test ./...

race:
    go test -race ./...

lint:
    test -z "$(gofmt -l .)" || (gofmt -l . && exit 1)
    go vet ./...
    staticcheck ./...

# Per-call overhead side by side, on one backend: the backend directly, a bare
# reverse proxy, the gateway, and the gateway deciding through an OPA sidecar
# (open loop, 1,000 tools/call per second for 20 s per mode after a warm-up).
# Prints a table and writes bench/results.json (not committed).
bench:
    go run ./cmd/pbac bench -o bench/results.json

# The gateway measured from outside: one demo backend, nginx (Debian's:
# apt-get install nginx-light), Caddy (apt-get install caddy; a proxy
# written in Go; each skipped when absent) and pbac up, each its own
# process, driven in rounds at each rate; p50/p99, the latency the proxies
# and the gateway add over the direct call, CPU per call per process.
# Rewrites its section of bench/RESULTS.md and writes bench/external.json
# (not committed); about 7 minutes with the defaults. backend="light" puts the light bench
# backend (no schema validation) where the demo backend was, so the gateway's
# own cost is not lost in the backend's (its section of bench/RESULTS.md is its own);
# flags go on as they are, e.g. --pin: just bench-external 200,1000 5 8s light --pin
bench-external rates="200,1000" rounds="5" duration="8s" backend="demo" *flags="":
    go run ./cmd/pbac bench external --backend {{backend}} --rates {{rates}} --rounds {{rounds}} --duration {{duration}} --markdown-file bench/RESULTS.md -o bench/external.json {{flags}}

# Throughput at saturation (closed loop) and CPU per 1,000 calls.
bench-saturate:
    go run ./cmd/pbac bench --saturate --duration 10s

# Decision benchmarks: Wasm in wazero vs OPA's topdown, serial and parallel,
# swap latency, cold start from the compilation cache, and the AS's
# introspection and token issuance.
bench-go:
    go test -run '^$' -bench . -benchtime 2s -count 1 ./wasm/ ./plugins/ ./asrv/ ./gateway/

# The dashboard in headless Chromium (Debian's chromium; npm ci once).
browser-test:
    cd dashboard/e2e && npm ci --no-audit --no-fund
    PBAC_BROWSER_TESTS=1 go test -count=1 -run 'TestDashboardInBrowser|TestToolReviewInBrowser|TestApprovalsInBrowser' -v ./cmd/pbac/

# The official MCP conformance suite, directly and through the gateway
# (npm ci pins the suite and the Node 22 it needs under conformance/).
conformance:
    cd conformance && npm ci --no-audit --no-fund
    PBAC_CONFORMANCE=1 go test -count=1 -run TestOfficialSuiteThroughGateway -v ./conformance/official/

# Rego unit tests of the shipped policy.
policy-test:
    go run ./cmd/pbac policy test

# Build the shipped policy into a bundle.
policy-build out="bundle.tar.gz":
    go run ./cmd/pbac policy build -o {{out}}

# Fuzz the parsers of outside input for a while each.
fuzz seconds="30":
    go test -run '^$' -fuzz FuzzShippedPolicy -fuzztime {{seconds}}s ./wasm/
    go test -run '^$' -fuzz FuzzInstrument -fuzztime {{seconds}}s ./wasm/
    go test -run '^$' -fuzz FuzzReferenceDecide -fuzztime {{seconds}}s ./rego/
    go test -run '^$' -fuzz FuzzVerifyStatement -fuzztime {{seconds}}s ./asrv/
    go test -run '^$' -fuzz FuzzParseRegistration -fuzztime {{seconds}}s ./asrv/
    go test -run '^$' -fuzz FuzzDecodeRecord -fuzztime {{seconds}}s ./asrv/store/
    go test -run '^$' -fuzz FuzzParseMessage -fuzztime {{seconds}}s ./jsonrpc/
    go test -run '^$' -fuzz FuzzParseMessageDifferential -fuzztime {{seconds}}s ./jsonrpc/
    go test -run '^$' -fuzz FuzzBridgeMessages -fuzztime {{seconds}}s ./stdio/
    go test -run '^$' -fuzz FuzzAnswerWatch -fuzztime {{seconds}}s ./gateway/
    go test -run '^$' -fuzz FuzzEventData -fuzztime {{seconds}}s ./gateway/
    go test -run '^$' -fuzz FuzzResponseID -fuzztime {{seconds}}s ./gateway/

# What CI runs.
ci:
    bash .ci/run
