// Package deps holds the dependency tests of the project (in the style of
// tailscale's deps tests): a change that makes a package link what it must
// not fails here, not in review.
package deps

import (
	"bufio"
	"bytes"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/pbac-gateway/pbac"

// rule says what a package of the module must not link (transitively, its
// non-test imports).
type rule struct {
	pkg string
	// why the rule holds, for the failure message.
	why string
	// banned are import path prefixes the package must not depend on.
	banned []string
	// stdOnly: the package depends on the standard library alone, and on
	// the modules of also (import path prefixes).
	stdOnly bool
	also    []string
	// pending, when set, says what the rule waits for; the rule is
	// checked and reported but does not fail until it is removed.
	pending string
}

var (
	storeDrivers = []string{"github.com/dgraph-io/badger", "github.com/jackc/pgx"}
	opa          = "github.com/open-policy-agent/"
	zitadel      = "github.com/zitadel/"
)

var rules = []rule{
	{pkg: "gateway", why: "the enforcement point links no token store, no OAuth server and no policy compiler: it asks through contract",
		banned: append(slices.Clone(storeDrivers), "github.com/ory/fosite", module+"/asrv", module+"/plugins", module+"/rego", opa)},
	{pkg: "stdio", why: "the stdio bridge is a process supervisor and an HTTP transport",
		banned: append(slices.Clone(storeDrivers), "github.com/ory/fosite", module+"/asrv", opa)},
	{pkg: "jsonrpc", why: "the one JSON-RPC parser is shared by the gateway and the stdio bridge",
		banned: append(slices.Clone(storeDrivers), "github.com/ory/fosite", module+"/asrv", opa)},
	{pkg: "wasm", why: "the Wasm runtime is a library of its own: it imports no package of the project",
		banned: []string{module + "/"}},
	{pkg: "contract", why: "the policy contract is imported everywhere, so it is light: the standard library only",
		stdOnly: true},
	{pkg: "asrv", why: "the authorization server asks policy through contract, without OPA's compiler",
		banned: []string{opa}},
	{pkg: "asrv", why: "importing the authorization server links neither token store (each lives in asrv/store/*)",
		banned: storeDrivers},
	{pkg: "asrv/store", why: "what both token stores share links neither driver",
		banned: append(slices.Clone(storeDrivers), module+"/asrv/store/badger", module+"/asrv/store/postgres")},
	{pkg: "asrv/storetest", why: "the store contract suite links neither driver: each backend runs it from its own tests",
		banned: append(slices.Clone(storeDrivers), module+"/asrv/store/badger", module+"/asrv/store/postgres")},
	{pkg: "asrv/store/badger", why: "the Badger store links only its own driver",
		banned: []string{"github.com/jackc/pgx", module + "/asrv/store/postgres"}},
	{pkg: "asrv/store/postgres", why: "the PostgreSQL store links only its own driver",
		banned: []string{"github.com/dgraph-io/badger", module + "/asrv/store/badger"}},
	{pkg: "asrv/cimd", why: "the client metadata document resolver parses hostile input with the standard library, JOSE and strict JSON only: no OAuth server, store or policy",
		stdOnly: true, also: []string{"github.com/go-jose/go-jose/v4", "github.com/go-json-experiment/json"}},
	{pkg: "connect", why: "the client presets are a table the dashboard, pbac up and the demo share: the standard library only",
		stdOnly: true},
	{pkg: "identity", why: "what the authorization server knows of identity sources is interfaces and config: the standard library only",
		stdOnly: true},
	{pkg: "asrv", why: "the authorization server takes people through identity's interfaces: neither the OpenID client nor the users file is linked unless the binary wires them",
		banned: []string{module + "/identity/idp", module + "/identity/usersfile", "github.com/coreos/go-oidc"}},
	{pkg: "identity/idp", why: "the OpenID provider the tests run (zitadel) is test-only",
		banned: []string{zitadel, storeDrivers[0], storeDrivers[1], opa}},
	{pkg: "identity/usersfile", why: "the users file is a file: no token store, no policy compiler, no test provider",
		banned: []string{zitadel, storeDrivers[0], storeDrivers[1], opa, module + "/asrv"}},
	{pkg: "cmd/pbac", why: "the OpenID provider the tests run (zitadel) is never in the binary",
		banned: []string{zitadel}},
	{pkg: "config", why: "configuration loading resolves to plain values: it links none of the parts it configures",
		banned: []string{module + "/gateway", module + "/asrv", module + "/stdio", module + "/plugins", opa, "github.com/gofiber/"}},
}

// deps lists each package's dependencies (go list's Deps: the transitive
// non-test imports).
func deps(t *testing.T, pkgs []string) map[string][]string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command is needed to list dependencies: %v", err)
	}
	args := []string{"list", "-f", `{{.ImportPath}}{{range .Deps}} {{.}}{{end}}`}
	for _, p := range pkgs {
		args = append(args, module+"/"+p)
	}
	cmd := exec.Command(goBin, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, stderr.String())
	}
	m := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) > 0 {
			m[strings.TrimPrefix(f[0], module+"/")] = f[1:]
		}
	}
	return m
}

// hasPrefix reports whether path is one of prefixes or below one.
func hasPrefix(path string, prefixes []string) bool {
	for _, p := range prefixes {
		if path == p || strings.HasPrefix(path, p+"/") {
			return true
		}
	}
	return false
}

// standard reports whether an import path is of the standard library (its
// first element has no dot).
func standard(path string) bool {
	first, _, _ := strings.Cut(path, "/")
	return !strings.Contains(first, ".")
}

// TestDependencies: each rule's package links nothing it bans.
func TestDependencies(t *testing.T) {
	var pkgs []string
	for _, r := range rules {
		if !slices.Contains(pkgs, r.pkg) {
			pkgs = append(pkgs, r.pkg)
		}
	}
	all := deps(t, pkgs)
	for _, r := range rules {
		name := r.pkg
		if r.pending != "" {
			name += " (pending)"
		}
		t.Run(name, func(t *testing.T) {
			ds, ok := all[r.pkg]
			if !ok {
				t.Fatalf("go list did not list %s", r.pkg)
			}
			var bad []string
			for _, d := range ds {
				if r.stdOnly && !standard(d) && !hasPrefix(d, r.also) {
					bad = append(bad, d)
					continue
				}
				if strings.HasPrefix(d, module+"/"+r.pkg+"/") {
					continue // the package's own subpackages
				}
				for _, b := range r.banned {
					if strings.HasPrefix(d, b) {
						bad = append(bad, d)
						break
					}
				}
			}
			if len(bad) == 0 {
				return
			}
			if r.pending != "" {
				t.Logf("not yet (%s): %s links %s", r.pending, r.pkg, strings.Join(bad, ", "))
				return
			}
			t.Errorf("%s links %s\n(%s)", r.pkg, strings.Join(bad, ", "), r.why)
		})
	}
}
