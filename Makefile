# restic-manager build, test and demo entry points. See README.md.
SHELL := /bin/bash
GO ?= go
TOOLS := $(CURDIR)/.tools/bin
RESTIC_VERSION := v0.18.1
REST_SERVER_VERSION := v0.14.0
STATICCHECK_VERSION := v0.8.2
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X github.com/restic-manager/restic-manager/internal/cli.Version=$(VERSION)
# The whole suite must stay well under CI's limit; this bounds a hung test.
# The e2e package, the longest, takes 16–18 min on a quiet 2-core machine;
# under load it went past 20 min without a hung test.
TEST_TIMEOUT ?= 25m

.PHONY: all build tools test lint demo fuzz clean cross bench browser mosquitto databases backends axe screenshots

all: build

build:
	@mkdir -p bin
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/restic-manager ./cmd/restic-manager
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/restic-manager-agent ./cmd/restic-manager-agent

# Pinned restic and rest-server, built from tools/go.mod (kept apart from the
# main module so their dependencies never enter it). Reused once built; a
# version change in tools/go.mod rebuilds them.
tools: $(TOOLS)/restic $(TOOLS)/rest-server $(TOOLS)/restic-0.14.0 $(TOOLS)/versitygw $(TOOLS)/oidcprovider

$(TOOLS)/restic: tools/go.mod
	@mkdir -p $(TOOLS)
	@echo "building restic $(RESTIC_VERSION) (a few minutes the first time)"
	cd tools && $(GO) build -trimpath -o $(TOOLS)/restic github.com/restic/restic/cmd/restic

$(TOOLS)/rest-server: tools/go.mod
	@mkdir -p $(TOOLS)
	cd tools && $(GO) build -trimpath -o $(TOOLS)/rest-server github.com/restic/rest-server/cmd/rest-server

$(TOOLS)/restic-0.14.0: tools/restic014/go.mod
	@mkdir -p $(TOOLS)
	cd tools/restic014 && $(GO) build -trimpath -o $(TOOLS)/restic-0.14.0 github.com/restic/restic/cmd/restic

# The S3-compatible server of the backend tests (e2e/backends_test.go):
# versitygw, an S3 gateway over a plain directory (its posix backend: a
# bucket is a directory). Chosen because it is a real S3 implementation
# (SigV4, multipart, the listing and bucket-location calls minio-go, restic's
# S3 client, makes), it is published on the Go module proxy with semver tags
# (MinIO's RELEASE.* tags are not modules a go.mod can pin; SeaweedFS only
# as a pseudo-version of a far larger tree), and it builds from
# tools/versitygw/go.mod in 5 minutes the first time on a busy 2-core machine
# (downloads included; 2.5 minutes of CPU). A module of its
# own: its AWS SDK and newer x/ dependencies would otherwise move restic's.
$(TOOLS)/versitygw: tools/versitygw/go.mod
	@mkdir -p $(TOOLS)
	@echo "building versitygw (a few minutes the first time)"
	cd tools/versitygw && $(GO) build -trimpath -o $(TOOLS)/versitygw github.com/versity/versitygw/cmd/versitygw

# The OpenID provider of the sign-in tests (e2e/signin_oidc_test.go): the
# zitadel/oidc library's OpenID provider (discovery, JWKS, the code flow
# with PKCE, userinfo) with its example storage and login form, pinned in
# tools/oidcprovider/go.mod; tools/oidcprovider/main.go only sets the
# issuer's address, the client, users from a file and a groups claim.
# Chosen over ory/hydra because hydra needs a login and consent app of our
# own and a database, and over a token-signing stub because the tests must
# go through a real issuer's discovery, keys and code flow. Builds in
# seconds; a module of its own so its dependencies never move ours.
$(TOOLS)/oidcprovider: tools/oidcprovider/go.mod tools/oidcprovider/main.go
	@mkdir -p $(TOOLS)
	cd tools/oidcprovider && $(GO) build -trimpath -o $(TOOLS)/oidcprovider .

$(TOOLS)/staticcheck:
	@mkdir -p $(TOOLS)
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# Debian's Chromium for the console's browser tests (e2e/browser_test.go),
# which fail without it. Installing needs root (CI runs as root).
browser:
	@command -v chromium >/dev/null || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y chromium; \
		else echo "Chromium is missing and installing it needs root: run 'sudo apt-get install -y chromium' (the browser tests fail without /usr/bin/chromium)"; exit 1; fi; }

# Debian's Mosquitto 2, pinned, for the external-broker tests
# (e2e/mosquitto_test.go), which fail without it. Installing needs root.
MOSQUITTO_VERSION := 2.0.11-1.2+deb12u2
mosquitto:
	@command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y --no-install-recommends mosquitto=$(MOSQUITTO_VERSION); \
		else echo "Mosquitto is missing and installing it needs root: run 'sudo apt-get install -y mosquitto=$(MOSQUITTO_VERSION)'"; exit 1; fi; }

# Debian's PostgreSQL 15, MariaDB 10.11 and SQLite 3, pinned, for the
# database dump recipes' tests (e2e/databases_test.go, docs/databases.md),
# which fail without them; the tests run private servers of their own, never
# the system's service. Installing needs root.
# The versions are bookworm's main suite. For PostgreSQL and MariaDB the
# programs' packages are pinned as well as the top ones: the top packages
# only ask for ">=" of them, so apt would otherwise take newer programs from
# bookworm-security. Libraries (libpq5, libmariadb3) are left to apt: pinning
# them would mean a downgrade, which apt refuses, on a machine that already
# has the security version.
POSTGRES_VERSION := 15.18-0+deb12u1
MARIADB_VERSION := 1:10.11.18-0+deb12u1
SQLITE_VERSION := 3.40.1-2+deb12u2
DATABASE_PACKAGES := postgresql-15=$(POSTGRES_VERSION) postgresql-client-15=$(POSTGRES_VERSION) \
	mariadb-server=$(MARIADB_VERSION) mariadb-server-core=$(MARIADB_VERSION) \
	mariadb-client=$(MARIADB_VERSION) mariadb-client-core=$(MARIADB_VERSION) sqlite3=$(SQLITE_VERSION)
databases:
	@{ ls /usr/lib/postgresql/*/bin/postgres && { command -v mariadbd || test -x /usr/sbin/mariadbd; } && command -v mariadb-dump && command -v sqlite3; } >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y --no-install-recommends $(DATABASE_PACKAGES); \
		else echo "PostgreSQL, MariaDB or SQLite is missing and installing them needs root: run 'sudo apt-get install -y --no-install-recommends $(DATABASE_PACKAGES)'"; exit 1; fi; }

# Debian's OpenSSH server, pinned, for the SFTP backend tests
# (e2e/backends_test.go), which fail without it; the tests run an sshd of
# their own on a loopback port, never the system's service. The client and
# sftp-server packages are pinned with it (sftp-server is only asked for
# unversioned). Installing needs root.
OPENSSH_VERSION := 1:9.2p1-2+deb12u10
OPENSSH_PACKAGES := openssh-server=$(OPENSSH_VERSION) openssh-client=$(OPENSSH_VERSION) openssh-sftp-server=$(OPENSSH_VERSION)
backends: $(TOOLS)/versitygw
	@{ test -x /usr/sbin/sshd && command -v ssh && command -v ssh-keygen; } >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y --no-install-recommends $(OPENSSH_PACKAGES); \
		else echo "OpenSSH's server is missing and installing it needs root: run 'sudo apt-get install -y --no-install-recommends $(OPENSSH_PACKAGES)'"; exit 1; fi; }

# axe-core, the accessibility checker the browser tests inject into every
# page (e2e/a11y_test.go), pinned by version and by the integrity the npm
# registry publishes for it (checked here, not only by npm). Fetched with
# npm, which the machine image has, into .tools rather than vendored: the
# other test tools are fetched the same way, and 0.5 MiB of minified
# third-party code stays out of the repository. Only axe.min.js and its
# licence (MPL-2.0) are kept; an older version's copy is removed.
AXE_VERSION := 4.11.0
AXE_INTEGRITY := sha512-ilYanEU8vxxBexpJd8cWM4ElSQq4QctCLKih0TSfjIfCQTeyH/6zVrmIJfLPrKTKJRbiG+cfnZbQIjAlJmF1jQ==
AXE_JS := $(CURDIR)/.tools/axe/axe-core-$(AXE_VERSION).min.js
axe: $(AXE_JS)
$(AXE_JS):
	@command -v npm >/dev/null || { \
	if [ "$$(id -u)" = 0 ]; then apt-get update && apt-get install -y npm; \
	else echo "npm is missing: install Node.js's npm (Debian: apt-get install -y npm) to fetch axe-core"; exit 1; fi; }
	@set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	(cd "$$tmp" && npm pack --silent axe-core@$(AXE_VERSION) >/dev/null); \
	got="sha512-$$(openssl dgst -sha512 -binary "$$tmp/axe-core-$(AXE_VERSION).tgz" | base64 -w0)"; \
	if [ "$$got" != "$(AXE_INTEGRITY)" ]; then echo "axe-core $(AXE_VERSION): integrity $$got, want $(AXE_INTEGRITY)"; exit 1; fi; \
	tar -xzf "$$tmp/axe-core-$(AXE_VERSION).tgz" -C "$$tmp" package/axe.min.js package/LICENSE; \
	mkdir -p $(dir $(AXE_JS)); rm -f $(dir $(AXE_JS))axe-core-*.min.js; \
	cp "$$tmp/package/LICENSE" $(dir $(AXE_JS))LICENSE; cp "$$tmp/package/axe.min.js" $(AXE_JS); \
	echo "axe-core $(AXE_VERSION) in $(AXE_JS)"

# The README's screenshots (docs/screenshots/*.png), taken by the browser
# tests that reach each state (RM_SCREENSHOTS=1 writes them there as well as
# to e2e/artifacts).
SCREENSHOT_TESTS := TestBrowserDashboardAndLiveBackup|TestBrowserRestoreWizardToAnotherHost|TestBrowserPolicyCreateAndDelete|TestA11yEveryPage
screenshots: tools browser axe
	RM_SCREENSHOTS=1 $(GO) test -count=1 -timeout 15m ./e2e/ -run '^($(SCREENSHOT_TESTS))$$'

# Every test, with the race detector, against the real tools.
test: tools browser mosquitto databases backends axe
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.tools/*'))" || { echo "gofmt needed:"; gofmt -l .; exit 1; }
	$(GO) vet ./...
	GOOS=windows $(GO) vet ./agent/... ./runner/... ./wire/... ./cmd/restic-manager-agent/...
	$(MAKE) --no-print-directory cross
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

lint: $(TOOLS)/staticcheck
	$(GO) vet ./...
	$(TOOLS)/staticcheck ./...

# Fuzzing of every wire decoder and restic output parser (their seed
# corpora also run in `make test`). FUZZTIME per target.
FUZZTIME ?= 20s
FUZZ_TARGETS := wire:FuzzDecodeStatus wire:FuzzDecodeCommand wire:FuzzDecodeProgress wire:FuzzDecodeResult \
	wire:FuzzDecodeSchedulesDesired wire:FuzzDecodeSchedulesReported wire:FuzzDecodeFire wire:FuzzDecodeIndexChunk \
	wire:FuzzDecodeArgs wire:FuzzParseTopic wire:FuzzParseLabels runner:FuzzParseLine runner:FuzzParsers agent:FuzzWindowsPathToTree
fuzz:
	for t in $(FUZZ_TARGETS); do \
		$(GO) test ./$${t%%:*}/ -run '^$$' -fuzz "^$${t#*:}$$" -fuzztime $(FUZZTIME) || exit 1; done

cross:
	for t in linux/amd64 linux/arm64 windows/amd64 windows/arm64; do \
		GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build -o /dev/null ./cmd/restic-manager-agent || exit 1; done

demo: build tools
	$(GO) build -o bin/demo ./deploy/demo
	./bin/demo

clean:
	rm -rf bin .demo

# Figures for the closing notes (docs/scale.md): dispatch latency and idle
# RSS, snapshot browsing, store growth, agent overhead on 1 GiB, drills, the
# console's policy edit and the fleet simulator at 1,000 agents (with the
# bare-broker reference) and at 10,000 on the embedded broker and on
# Mosquitto, backups of 1 GiB to each backend (local, S3, SFTP,
# rest-server) and copies between them, with binaries built without the
# race detector. Each benchmark prints as it always has and also writes its
# figures to bench-out/*.json (RM_BENCH_OUT, internal/benchout); the last
# step prints them as one table beside their targets and the references
# measured in the same run. The directory is emptied first, so the table
# never mixes runs; `make bench-table` prints it again.
bench: export RM_BENCH_OUT := $(CURDIR)/bench-out
bench: tools mosquitto databases backends
	rm -f bench-out/*.json && mkdir -p bench-out
	RM_BENCH_NORACE=1 RM_BENCH_MIB=1024 $(GO) test ./e2e/ -run '^$$' -bench 'BenchmarkBackends' -benchtime 1x -timeout 20m
	RM_BENCH_NORACE=1 $(GO) test ./e2e/ -run '^$$' -bench 'BenchmarkJobStart|BenchmarkScheduleApply|BenchmarkSnapshotBrowse|BenchmarkPostgresSource' -benchtime 1x -timeout 40m
	RM_BENCH_NORACE=1 RM_BENCH_FILES=1000000 $(GO) test ./e2e/ -run '^$$' -bench 'BenchmarkSnapshotBrowse' -benchtime 1x -timeout 120m
	$(GO) test ./storage/ -run '^$$' -bench 'BenchmarkListJobsPerHost' -benchtime 20x
	$(GO) test ./console/report/ -run '^$$' -bench 'BenchmarkComplianceReport' -benchtime 20x
	$(GO) test ./console/ -run '^$$' -bench 'BenchmarkPolicyEdit' -benchtime 5x
	RM_BENCH_NORACE=1 RM_STORE_JOBS=100000 $(GO) test -p 1 ./storage/ ./e2e/ -run '^$$' -bench 'BenchmarkStoreGrowth|BenchmarkAgentOverhead' -benchtime 1x -timeout 60m
	RM_BENCH_NORACE=1 $(GO) test ./e2e/ -run '^$$' -bench 'BenchmarkDrill' -benchtime 1x -timeout 40m
	$(GO) run ./cmd/fleetsim -agents 1000 -jobs 200 -duration 20s -flood 10s -publishers 100 -json bench-out/fleetsim.json
	$(GO) run ./cmd/fleetsim -agents 10000 -jobs 100 -duration 5s -flood 3s -publishers 20 -skip-bare -json bench-out/fleetsim-report-10000.json
	$(GO) run ./cmd/fleetsim -broker mosquitto -agents 10000 -jobs 1000 -duration 20s -skip-bare -json bench-out/fleetsim-report-mosquitto-10000.json
	$(GO) run ./cmd/benchtable bench-out

# The one table of the last `make bench` (bench-out/*.json), again.
.PHONY: bench-table
bench-table:
	$(GO) run ./cmd/benchtable bench-out

# The chaos suite at its full size (RM_CHAOS=full: more jobs per fault and
# repetitions): real server, agents, restic and rest-server with faults
# injected. Needs root (a tmpfs mount). Writes e2e/artifacts/chaos.md.
.PHONY: chaos
chaos: tools
	RM_CHAOS=full $(GO) test -race -count=1 -timeout 20m ./e2e/ -run '^TestChaos' -v

# The deployment tests alone: the deploy files and install scripts, both
# commands, and end to end install.sh against a live console, the agent
# under the service wrapper and backup-store/restore-store.
.PHONY: install-test
install-test: tools
	$(GO) test -race -count=1 ./deploy/... ./cmd/...
	$(GO) test -race -count=1 -timeout 10m ./e2e/ -run 'TestInstallScript|TestAgentServiceForeground|TestBackupStoreAndRestore'
