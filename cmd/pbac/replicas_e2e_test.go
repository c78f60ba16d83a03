package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/demo"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
	"github.com/pbac-gateway/pbac/rego"
)

// gatewayReplica is one `pbac up` of the replica set.
type gatewayReplica struct {
	name  string
	proc  *proc
	agent *demo.AgentClient
	admin replicaAdmin
}

// TestThreeReplicas is the production topology on 127.0.0.1: PostgreSQL,
// one authorization server (`pbac asrv`) and three gateway replicas (`pbac
// up`) that read tokens on the AS's shared store and share one policy head
// there. Clients spread their calls over the replicas. It checks that
//   - the seed trust-tier matrix holds on every replica;
//   - a single-use token succeeds exactly once across the three;
//   - a revocation at the AS, an agent revoked on one replica's admin API,
//     and a policy data change made on one replica are seen by every
//     replica on its next call;
//   - a policy version pushed to one replica runs on all three when the
//     push returns (well within the sync interval);
//   - killing one replica mid-load loses no token and fails no call that
//     the client retries on another replica.
func TestThreeReplicas(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	const password = "pw-MUST-NOT-LEAK-3r1c"
	dsn := pgE2EDSN(t, password)
	ctx := t.Context()
	const public = "https://gateway.pbac.test" // the load balancer's name
	resource := public + "/mcp"

	asDir := t.TempDir()
	// alice signs in from a users file, in the engineering group (the demo
	// users exist in the demo tenant only); the replicas decide her tokens
	// with the same file.
	users := filepath.Join(t.TempDir(), "users.yaml")
	const alicePassword = "alice-of-the-users-file"
	// bob, in release, approves the CI bot's deploys.
	writeUsers(t, users, alicePassword, map[string][]string{"alice": {"engineering"}, "bob": {"release"}})
	asConf := filepath.Join(t.TempDir(), "asrv.yaml")
	if err := os.WriteFile(asConf, []byte("identity: {users_file: "+users+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	as := startAsrv(t, asDir, freeAddr(t), "--config", asConf, "--store", dsn, "--resource", resource, "--policy-sync-interval", "500ms")
	secretFile := filepath.Join(t.TempDir(), "token-secret")
	secret, err := os.ReadFile(filepath.Join(asDir, asrv.TokenSecretFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(secretFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}

	var replicas []*gatewayReplica
	// One key signs the requestState of held calls on every replica.
	stateKey := filepath.Join(t.TempDir(), "approval-state.key")
	for _, name := range []string{"a", "b", "c"} {
		dir := t.TempDir()
		cfg := filepath.Join(dir, "pbac.yaml")
		yaml := fmt.Sprintf("public_url: %s\nstore: %q\nauthorization_server:\n  issuer: %s\n  token_secret_file: %s\nidentity: {users_file: %s}\napprovals_state_key_file: %s\n",
			public, dsn, as.base, secretFile, users, stateKey)
		if err := os.WriteFile(cfg, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		addr := freeAddr(t)
		cmd, _, adminBase := startUpArgs(t, nil, "--config", cfg, "--data-dir", dir, "--listen", addr, "--policy-sync-interval", "500ms")
		tok, err := os.ReadFile(filepath.Join(dir, adminTokenFile))
		if err != nil {
			t.Fatal(err)
		}
		replicas = append(replicas, &gatewayReplica{
			name:  name,
			proc:  &proc{cmd: cmd, base: "http://" + addr},
			agent: &demo.AgentClient{BaseURL: "http://" + addr},
			admin: replicaAdmin{base: adminBase, token: strings.TrimSpace(string(tok))},
		})
	}
	// Every replica runs the same version and sees the other two (and the
	// AS) as live members.
	var version string
	for _, r := range replicas {
		v, st := r.admin.status(t)
		if version == "" {
			version = v
		}
		sync, _ := st["policy_sync"].(map[string]any)
		members, _ := sync["replicas"].([]any)
		if v != version || len(members) != 4 {
			t.Fatalf("replica %s: version %s (a's %s), %d members (want 4: three gateways and the AS): %v", r.name, short(v), short(version), len(members), st["policy_sync"])
		}
	}

	key, err := asrv.LoadOrCreateIssuerKey(asDir)
	if err != nil {
		t.Fatal(err)
	}
	register := func(provider string, machine, singleUse bool) map[string]any {
		jws, err := key.Sign(asrv.StatementClaims{AgentProvider: provider, AgentModel: "e2e", SingleUseAccessTokens: singleUse,
			Audience: []string{as.base}, TTL: time.Hour}, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		meta := map[string]any{"client_name": provider, "software_statement": jws}
		if machine {
			meta["grant_types"], meta["token_endpoint_auth_method"] = []string{"client_credentials"}, "client_secret_basic"
		} else {
			meta["redirect_uris"], meta["token_endpoint_auth_method"] = []string{"http://127.0.0.1:47001/cb"}, "none"
		}
		reg, err := oauthtest.Register(ctx, as.base, meta)
		if err != nil {
			t.Fatal(err)
		}
		return reg
	}
	all := []string{"drive:read", "drive:write", "jira:read", "jira:write", "slack:read", "slack:write", "database:read", "database:ddl"}
	human := func(provider string) string {
		reg := register(provider, false, false)
		tok, err := oauthtest.CodeFlow(ctx, as.base, reg["client_id"].(string), "http://127.0.0.1:47001/cb", "alice", alicePassword, resource, all...)
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken
	}
	ciReg := register("ci-bot", true, false)
	machineToken := func(reg map[string]any, scopes ...string) string {
		tok, err := oauthtest.ClientCredentials(ctx, as.base, reg["client_id"].(string), reg["client_secret"].(string), resource, scopes...)
		if err != nil {
			t.Fatal(err)
		}
		return tok.AccessToken
	}
	call := func(r *gatewayReplica, token, tool string, args map[string]any) demo.CallResult {
		t.Helper()
		res, err := r.agent.CallTool(ctx, token, tool, args)
		if err != nil {
			t.Fatalf("replica %s: %s: %v", r.name, tool, err)
		}
		return res
	}
	// allowed: the call reached the backend. A policy denial is a 200
	// too by default (denials: tool_error), a tool result with Denied.
	allowed := func(res demo.CallResult) bool {
		return res.Status == http.StatusOK && !res.Denied && res.Result != nil
	}

	// 1. The seed matrix, on every replica.
	calls := []struct {
		tool string
		args map[string]any
		mark string
	}{
		{"drive.read_file", map[string]any{"path": "/public/handbook.md"}, "r"},
		{"drive.write_file", map[string]any{"path": "/team/notes.txt", "content": "e2e"}, "w"},
		{"jira.get_issue", map[string]any{"key": "SEC-12"}, "r"},
		{"jira.add_comment", map[string]any{"key": "SEC-12", "body": "e2e"}, "w"},
		{"slack.list_channels", map[string]any{}, "r"},
		{"slack.post_message", map[string]any{"channel": "general", "text": "e2e"}, "w"},
		{"database.execute_ddl", map[string]any{"sql": "CREATE TABLE e2e (id int)"}, "x"},
	}
	row := func(r *gatewayReplica, token string) string {
		var b strings.Builder
		for i, c := range calls {
			mark := "-"
			if res := call(r, token, c.tool, c.args); allowed(res) && !res.Result.IsError {
				mark = c.mark
			}
			b.WriteString(mark)
			if i%2 == 1 {
				b.WriteString(" ")
			}
		}
		return b.String()
	}
	ciToken := machineToken(ciReg, "drive:read", "jira:read", "jira:write")
	aliceToken := human("claude-code")
	matrix := []struct{ name, token, want string }{
		{"alice's claude code", aliceToken, "rw rw rw -"},
		{"ci bot", ciToken, "r- rw -- -"},
		{"security scanner", machineToken(register("security-scanner", true, false), "drive:read", "jira:read"), "r- r- -- -"},
		{"autonomous planner", human("claude-code-trusted"), "rw rw rw -"},
	}
	for _, r := range replicas {
		for _, a := range matrix {
			if got := row(r, a.token); got != a.want {
				t.Errorf("replica %s, %s: %q, want %q", r.name, a.name, got, a.want)
			}
		}
	}

	// The CI bot's deploy is held on a, approved on b's admin API by bob
	// (a person of the users file; the AS runs apart), and the retry with
	// a's requestState deploys on c, once.
	deployer := machineToken(ciReg, "jenkins:read", "jenkins:deploy")
	deployArgs := map[string]any{"job": "deploy-prod", "environment": "production"}
	held := call(replicas[0], deployer, "jenkins.trigger_deploy", deployArgs).Held
	if held == nil {
		t.Fatal("the CI bot's deploy was not held on replica a")
	}
	if status, body := replicas[1].admin.do(t, http.MethodPost, "/admin/approvals/"+held.ApprovalID+"/approve", []byte(`{"approver":"bob"}`)); status != http.StatusOK {
		t.Fatalf("bob approving on replica b: %d %s", status, body)
	}
	retry := func(r *gatewayReplica) demo.CallResult {
		res, err := r.agent.RetryHeld(ctx, deployer, "jenkins.trigger_deploy", deployArgs, held)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	if res := retry(replicas[2]); !allowed(res) {
		t.Fatalf("the approved retry on replica c: %+v", res)
	}
	if res := retry(replicas[0]); allowed(res) || !strings.Contains(res.Error, "already used") {
		t.Fatalf("the replay on replica a: %+v, want refused as used", res)
	}

	// 2. A single-use token succeeds exactly once across the three.
	scanner := register("security-scanner", true, true)
	for round := range 5 {
		tok := machineToken(scanner, "jira:read")
		var (
			wg       sync.WaitGroup
			ok, unau atomic.Int32
		)
		start := make(chan struct{})
		for i := range 12 {
			r := replicas[i%3]
			wg.Go(func() {
				<-start
				res, err := r.agent.CallTool(ctx, tok, "jira.search_issues", map[string]any{"query": "SEC"})
				switch {
				case err != nil:
				case allowed(res):
					ok.Add(1)
				case res.Status == http.StatusUnauthorized:
					unau.Add(1)
				}
			})
		}
		close(start)
		wg.Wait()
		if ok.Load() != 1 || unau.Load() != 11 {
			t.Errorf("round %d: a single-use token got %d successes and %d 401s over 12 calls on three replicas, want 1 and 11", round, ok.Load(), unau.Load())
		}
	}

	// 3. A revocation at the AS holds on every replica's next call.
	revoked := machineToken(ciReg, "jira:read")
	for _, r := range replicas {
		if res := call(r, revoked, "jira.search_issues", map[string]any{"query": "SEC"}); !allowed(res) {
			t.Fatalf("replica %s: fresh token: %d %s", r.name, res.Status, res.Error)
		}
	}
	as.postForm(t, asrv.PathRevoke, ciReg["client_id"].(string), ciReg["client_secret"].(string), url.Values{"token": {revoked}})
	for _, r := range replicas {
		if res := call(r, revoked, "jira.search_issues", map[string]any{"query": "SEC"}); res.Status != http.StatusUnauthorized {
			t.Errorf("replica %s: a token revoked at the AS answered %d on the next call, want 401", r.name, res.Status)
		}
	}

	// An agent revoked on one replica's admin API (its registration and
	// every token deleted in the shared store) is refused by all three.
	gone := register("ci-bot", true, false)
	goneToken := machineToken(gone, "jira:read")
	if code, body := replicas[1].admin.do(t, http.MethodDelete, "/admin/clients/"+gone["client_id"].(string), nil); code != http.StatusNoContent {
		t.Fatalf("revoke an agent on b: %d %s", code, body)
	}
	for _, r := range replicas {
		if res := call(r, goneToken, "jira.search_issues", map[string]any{"query": "SEC"}); res.Status != http.StatusUnauthorized {
			t.Errorf("replica %s: a token of an agent revoked on b answered %d, want 401", r.name, res.Status)
		}
	}

	// 4. A data change on replica b (the ci_agent tier loses its Jira write
	// grant) holds on every replica's next call with the same token, and so
	// does undoing it on replica c.
	shipped, err := rego.BuildShipped(ctx)
	if err != nil {
		t.Fatal(err)
	}
	demoted := withoutGrant(t, shipped.Data, "ci_agent", "jira", "write")
	comment := map[string]any{"key": "SEC-12", "body": "replicas"}
	for _, r := range replicas {
		if res := call(r, ciToken, "jira.add_comment", comment); !allowed(res) {
			t.Fatalf("replica %s: ci bot's jira write before the change: %d %s", r.name, res.Status, res.Error)
		}
	}
	began := time.Now()
	code, body := replicas[1].admin.do(t, http.MethodPut, "/admin/policy/data", demoted)
	dataTook := time.Since(began)
	if code != http.StatusOK {
		t.Fatalf("data change on b: %d %s", code, body)
	}
	assertConfirmed(t, body, 4)
	for _, r := range replicas {
		res := call(r, ciToken, "jira.add_comment", comment)
		if res.Status != http.StatusOK || !res.Denied || res.Result != nil || !strings.Contains(strings.Join(res.Reasons, " "), "jira:write") {
			t.Errorf("replica %s: the ci bot's next jira write after the data change on b: %d denied=%v %v, want a denial for jira:write (a tool result)", r.name, res.Status, res.Denied, res.Reasons)
		}
	}
	code, body = replicas[2].admin.do(t, http.MethodPut, "/admin/policy/data", shipped.Data)
	if code != http.StatusOK {
		t.Fatalf("undo on c: %d %s", code, body)
	}
	for _, r := range replicas {
		if res := call(r, ciToken, "jira.add_comment", comment); !allowed(res) {
			t.Errorf("replica %s: after the undo on c: %d %v, want 200", r.name, res.Status, res.Reasons)
		}
	}

	// 5. A version pushed to replica a runs on all three when the push
	// returns.
	pushed := &rego.Bundle{Wasm: shipped.Wasm, Data: moveProvider(t, shipped.Data, "ci-bot", "developer"), Modules: shipped.Modules}
	var tgz bytes.Buffer
	if err := pushed.WriteTarGz(&tgz); err != nil {
		t.Fatal(err)
	}
	began = time.Now()
	code, body = replicas[0].admin.do(t, http.MethodPost, "/admin/policy/bundles", tgz.Bytes())
	pushTook := time.Since(began)
	if code != http.StatusOK {
		t.Fatalf("push to a: %d %s", code, body)
	}
	assertConfirmed(t, body, 4)
	var pushedInfo struct {
		Version string `json:"version"`
	}
	_ = json.Unmarshal(body, &pushedInfo)
	for _, r := range replicas {
		if v, _ := r.admin.status(t); v != pushedInfo.Version {
			t.Errorf("replica %s runs %s right after the push to a returned, want %s", r.name, short(v), short(pushedInfo.Version))
		}
	}
	t.Logf("data change on b confirmed by every replica in %v; version pushed to a live on all in %v (sync interval 500ms)", dataTook.Round(time.Millisecond), pushTook.Round(time.Millisecond))

	// 6. Kill replica c mid-load: clients retry a failed call on the next
	// replica; no call fails and no token is lost.
	loadToken := machineToken(ciReg, "jira:read")
	var (
		wg                    sync.WaitGroup
		done, failed, retried atomic.Int64
		onC, afterKill        atomic.Int64
		killed                atomic.Bool
		latMu                 sync.Mutex
		latencies             []time.Duration
		firstErr              atomic.Value
		loadCtx, stopLoad     = context.WithTimeout(ctx, 4*time.Second)
	)
	defer stopLoad()
	client := &http.Client{Timeout: 5 * time.Second}
	for w := range 6 {
		wg.Go(func() {
			agents := make([]*demo.AgentClient, len(replicas))
			for i, r := range replicas {
				agents[i] = &demo.AgentClient{BaseURL: r.agent.BaseURL, HTTP: client}
			}
			for n := w; loadCtx.Err() == nil; n++ {
				began := time.Now()
				var lastErr error
				ok := false
				for attempt := range 3 {
					i := (n + attempt) % 3
					res, err := agents[i].CallTool(ctx, loadToken, "jira.search_issues", map[string]any{"query": "SEC"})
					if err != nil {
						lastErr = err
						retried.Add(1)
						continue
					}
					if !allowed(res) {
						lastErr = fmt.Errorf("replica %s answered %d %s", replicas[i].name, res.Status, res.Error)
						break
					}
					if i == 2 {
						onC.Add(1)
					}
					if killed.Load() {
						afterKill.Add(1)
					}
					ok = true
					break
				}
				if !ok {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, lastErr)
				}
				done.Add(1)
				latMu.Lock()
				latencies = append(latencies, time.Since(began))
				latMu.Unlock()
				time.Sleep(2 * time.Millisecond)
			}
		})
	}
	time.Sleep(1500 * time.Millisecond)
	if err := replicas[2].proc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed.Store(true)
	wg.Wait()
	if failed.Load() != 0 {
		t.Errorf("%d of %d calls failed after retrying on the other replicas; first: %v", failed.Load(), done.Load(), firstErr.Load())
	}
	if afterKill.Load() == 0 || onC.Load() == 0 {
		t.Errorf("the load did not span the kill: %d calls on c, %d after the kill", onC.Load(), afterKill.Load())
	}
	slices.Sort(latencies)
	pct := func(p float64) time.Duration { return latencies[int(p*float64(len(latencies)-1))] }
	t.Logf("load across the kill of c: %d calls, %d failed, %d retried on another replica, %d answered by c before it died, %d after; latency p50 %v p99 %v max %v",
		done.Load(), failed.Load(), retried.Load(), onC.Load(), afterKill.Load(), pct(0.5).Round(time.Microsecond), pct(0.99).Round(time.Microsecond), latencies[len(latencies)-1].Round(time.Microsecond))

	// No token is lost: the tokens issued before the kill still work on
	// the survivors, and the AS still issues and revokes.
	for _, r := range replicas[:2] {
		if res := call(r, aliceToken, "jira.get_issue", map[string]any{"key": "SEC-12"}); !allowed(res) {
			t.Errorf("replica %s after the kill: alice's token: %d %s", r.name, res.Status, res.Error)
		}
		if res := call(r, ciToken, "jira.search_issues", map[string]any{"query": "SEC"}); !allowed(res) {
			t.Errorf("replica %s after the kill: the ci bot's token: %d %s", r.name, res.Status, res.Error)
		}
	}
	if _, err := replicas[2].agent.CallTool(ctx, ciToken, "jira.search_issues", nil); err == nil || !isConnRefused(err) {
		t.Errorf("replica c still answers after SIGKILL: %v", err)
	}
}

// moveProvider returns data with provider moved to tier.
func moveProvider(t *testing.T, data []byte, provider, tier string) []byte {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	tiers := d["agents"].(map[string]any)["trust_tiers"].(map[string]any)
	for name, list := range tiers {
		tiers[name] = slices.DeleteFunc(list.([]any), func(p any) bool { return p == provider })
	}
	tiers[tier] = append(tiers[tier].([]any), provider)
	out, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// withoutGrant returns data with tier's grant of access to resource
// withdrawn.
func withoutGrant(t *testing.T, data []byte, tier, resource, access string) []byte {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatal(err)
	}
	grants := d["tiers"].(map[string]any)[tier].(map[string]any)["grants"].(map[string]any)
	grants[resource] = slices.DeleteFunc(grants[resource].([]any), func(a any) bool { return a == access })
	out, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// assertConfirmed checks an admin answer says every one of n live replicas
// confirmed the change.
func assertConfirmed(t *testing.T, body []byte, n int) {
	t.Helper()
	var out struct {
		Replicas struct {
			Complete  bool     `json:"complete"`
			Confirmed []string `json:"confirmed"`
		} `json:"replicas"`
	}
	if err := json.Unmarshal(body, &out); err != nil || !out.Replicas.Complete || len(out.Replicas.Confirmed) != n {
		t.Errorf("change not confirmed by all %d replicas: %s", n, body)
	}
}

func isConnRefused(err error) bool {
	var ue *url.Error
	return errors.As(err, &ue) && strings.Contains(err.Error(), "connection refused")
}

func short(v string) string {
	if len(v) > 12 {
		return v[:12]
	}
	return v
}
