package gateway_test

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/gateway"
	"github.com/pbac-gateway/pbac/identity/usersfile"
)

// filePassword is the password of the people of usersFile.
const filePassword = "correct horse battery staple"

// usersFile writes a users file of people (name -> groups), none with a
// role of its own, and opens it as the AS's password source.
func usersFile(t *testing.T, people map[string][]string) asrv.UserSource {
	t.Helper()
	path := filepath.Join(t.TempDir(), "users.yaml")
	cheap := usersfile.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}
	for name, groups := range people {
		e, err := usersfile.NewEntry(name, groups, []byte(filePassword), cheap)
		if err != nil {
			t.Fatal(err)
		}
		if err := usersfile.Append(path, e); err != nil {
			t.Fatal(err)
		}
	}
	f, err := usersfile.Open(path, usersfile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return asrv.PasswordUsers(f)
}

// setGroupRoles replaces data.identity.group_roles of the shipped policy
// data and activates it.
func (s *stack) setGroupRoles(groupRoles map[string][]string) {
	s.t.Helper()
	b, _ := shipped()
	var data map[string]any
	if err := json.Unmarshal(b.Data, &data); err != nil {
		s.t.Fatal(err)
	}
	data["identity"].(map[string]any)["group_roles"] = groupRoles
	changed, _ := json.Marshal(data)
	if _, err := s.registry.SetData(context.Background(), changed, "test"); err != nil {
		s.t.Fatal(err)
	}
}

// TestPersonGroupsReachToolCall: a person with no role of their own gets
// one from their group (data.identity.group_roles) when the gateway asks
// pbac/tool_call, and moving the group to another role in the policy data
// decides the very next call of the same token by the new role.
func TestPersonGroupsReachToolCall(t *testing.T) {
	s := newStackWith(t, stackOptions{users: usersFile(t, map[string][]string{"dana": {"eng-team"}})})
	s.setGroupRoles(map[string][]string{"eng-team": {"engineering"}})
	token := s.personAgent("claude-code", "dana", filePassword, "jira:read", "jira:write", "drive:read")

	steps := []struct {
		name       string
		groupRoles map[string][]string // applied before the calls (nil: as is)
		tool       string
		backend    string
		args       map[string]any
		allow      bool
		reason     string // in the audit record of a denial
	}{
		{name: "engineering through eng-team writes Jira", backend: "jira", tool: "create_issue",
			args: map[string]any{"project": "SEC", "summary": "s", "description": "d"}, allow: true},
		{name: "engineering through eng-team reads Drive anywhere", backend: "drive", tool: "read_file",
			args: map[string]any{"path": "/team/plan.md"}, allow: true},
		{name: "eng-team moved to contractor: Drive only under /public", groupRoles: map[string][]string{"eng-team": {"contractor"}},
			backend: "drive", tool: "read_file", args: map[string]any{"path": "/team/plan.md"},
			reason: "roles contractor allow drive only with path under /public"},
		{name: "contractor through eng-team reads /public", backend: "drive", tool: "read_file",
			args: map[string]any{"path": "/public/handbook.md"}, allow: true},
		{name: "contractor through eng-team still writes Jira", backend: "jira", tool: "create_issue",
			args: map[string]any{"project": "SEC", "summary": "s", "description": "d"}, allow: true},
		{name: "eng-team back to engineering: Drive anywhere again", groupRoles: map[string][]string{"eng-team": {"engineering"}},
			backend: "drive", tool: "read_file", args: map[string]any{"path": "/team/plan.md"}, allow: true},
	}
	for _, st := range steps {
		if st.groupRoles != nil {
			s.setGroupRoles(st.groupRoles)
		}
		ok, why := s.call(token, st.backend, st.tool, st.args)
		if ok != st.allow {
			t.Fatalf("%s: allowed %v (%s), want %v", st.name, ok, why, st.allow)
		}
		if st.allow {
			continue
		}
		recs, err := s.waitAudit(audit.Filter{Decision: "deny", Subject: "dana", Limit: 10})
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if !strings.Contains(strings.Join(recs[0].Reasons, "; "), st.reason) {
			t.Fatalf("%s: denied for %q, want %q", st.name, recs[0].Reasons, st.reason)
		}
	}
}

// TestRemoteIntrospectorCarriesGroups: the RFC 7662 client maps the AS's
// pbac_groups, so a gateway with a remote AS sends policy the same
// subject.groups as one with the AS in process.
func TestRemoteIntrospectorCarriesGroups(t *testing.T) {
	s := newStackWith(t, stackOptions{users: usersFile(t, map[string][]string{"dana": {"eng-team", "on-call"}})})
	s.setGroupRoles(map[string][]string{"eng-team": {"engineering"}})
	token := s.personAgent("claude-code", "dana", filePassword, "jira:read")
	remote := &gateway.RemoteIntrospector{Endpoint: s.base + "/oauth2/introspect", ClientID: testIntrospectorID, ClientSecret: testIntrospectorSecret}
	got, err := remote.Introspect(context.Background(), token, "")
	if err != nil {
		t.Fatal(err)
	}
	if !got.Active || got.Subject != "dana" || !slices.Equal(got.Groups, []string{"eng-team", "on-call"}) || len(got.Roles) != 0 {
		t.Fatalf("remote introspection %+v", got)
	}
}
