package policytest

import (
	"encoding/json"
	"io/fs"
	"testing"

	"github.com/pbac-gateway/pbac/rego"
)

// BadData is a policy data document every path that changes data must
// refuse, and a JSON pointer its refusal must list.
type BadData struct {
	Name string
	Data []byte
	// Path is where the problem is (a JSON pointer into Data, "" for the
	// document itself).
	Path string
}

// obj and arr are the shapes a mutation walks the decoded data through.
type (
	obj = map[string]any
	arr = []any
)

// badDataMutations are the rows of BadDataDocuments: each changes the
// shipped data in one way the data schema or its cross-references refuse.
var badDataMutations = []struct {
	name, path string
	mutate     func(d obj) any
}{
	{"agents alone (every call denied)", "", func(obj) any { return obj{"agents": obj{}} }},
	{"catalogue access misspelt", "/catalogue/drive.write_file/access", func(d obj) any {
		d["catalogue"].(obj)["drive.write_file"].(obj)["access"] = "wirte"
		return d
	}},
	{"grant on an unknown resource and access", "/tiers/developer/grants/files/0", func(d obj) any {
		d["tiers"].(obj)["developer"].(obj)["grants"].(obj)["files"] = arr{"reed"}
		return d
	}},
	{"grant of an access no tool uses", "/tiers/read_only/grants/drive/1", func(d obj) any {
		d["tiers"].(obj)["read_only"].(obj)["grants"].(obj)["drive"] = arr{"read", "wirte"}
		return d
	}},
	{"trust tier that is not a tier", "/agents/trust_tiers/devloper", func(d obj) any {
		d["agents"].(obj)["trust_tiers"].(obj)["devloper"] = arr{"someone"}
		return d
	}},
	{"default tier that is not a tier", "/agents/default_tier", func(d obj) any {
		d["agents"].(obj)["default_tier"] = "nobody"
		return d
	}},
	{"rank as a string", "/tiers/developer/rank", func(d obj) any {
		d["tiers"].(obj)["developer"].(obj)["rank"] = "3"
		return d
	}},
	{"negative token TTL", "/tiers/developer/token_ttl_seconds", func(d obj) any {
		d["tiers"].(obj)["developer"].(obj)["token_ttl_seconds"] = -1
		return d
	}},
	{"misspelt tier setting", "/tiers/developer", func(d obj) any {
		d["tiers"].(obj)["developer"].(obj)["may_registr"] = false
		return d
	}},
	{"separation of duties of an unknown access", "/tiers/ci_agent/separation_of_duties/0", func(d obj) any {
		d["tiers"].(obj)["ci_agent"].(obj)["separation_of_duties"] = arr{"aprove"}
		return d
	}},
	{"role grant of an unknown access", "/roles/analytics/grants/slack/1", func(d obj) any {
		d["roles"].(obj)["analytics"].(obj)["grants"].(obj)["slack"] = arr{"read", "wrte"}
		return d
	}},
	{"group giving an unknown role", "/identity/group_roles/engineering/0", func(d obj) any {
		d["identity"].(obj)["group_roles"].(obj)["engineering"] = arr{"enginering"}
		return d
	}},
	{"method needing an unknown access", "/methods/prompts~1list", func(d obj) any {
		d["methods"].(obj)["prompts/list"] = "reed"
		return d
	}},
	{"argument of an unknown kind", "/catalogue/drive.read_file/arguments/path", func(d obj) any {
		d["catalogue"].(obj)["drive.read_file"].(obj)["arguments"] = obj{"path": "file"}
		return d
	}},
	{"reach through an undeclared argument", "/catalogue/drive.list_files/reach/arg", func(d obj) any {
		d["catalogue"].(obj)["drive.list_files"].(obj)["reach"] = obj{"arg": "dir", "default": "/"}
		return d
	}},
	{"protected rule on an unknown resource", "/protected_arguments/0/resources/0", func(d obj) any {
		d["protected_arguments"].(arr)[0].(obj)["resources"] = arr{"drvie"}
		return d
	}},
	{"protected rule id twice", "/protected_arguments/1/id", func(d obj) any {
		d["protected_arguments"].(arr)[1].(obj)["id"] = "prod-secrets"
		return d
	}},
	{"approval rule on an unknown resource", "/approval_rules/0/resources/0", func(d obj) any {
		d["approval_rules"].(arr)[0].(obj)["resources"] = arr{"jenkin"}
		return d
	}},
	{"approval rule for an access no tool uses", "/approval_rules/0/access/0", func(d obj) any {
		d["approval_rules"].(arr)[0].(obj)["access"] = arr{"deplyo"}
		return d
	}},
	{"approval rule for an unknown tier", "/approval_rules/0/tiers/0", func(d obj) any {
		d["approval_rules"].(arr)[0].(obj)["tiers"] = arr{"ci-agent"}
		return d
	}},
	{"approval rule id twice", "/approval_rules/1/id", func(d obj) any {
		d["approval_rules"].(arr)[1].(obj)["id"] = d["approval_rules"].(arr)[0].(obj)["id"]
		return d
	}},
	{"approval rule the requester confirms and may not approve", "/approval_rules/0/requester", func(d obj) any {
		r := d["approval_rules"].(arr)[0].(obj)
		r["requester"], r["exclude_requester"] = true, true
		return d
	}},
	{"approval rule without approvers", "/approval_rules/0", func(d obj) any {
		delete(d["approval_rules"].(arr)[0].(obj), "approver_groups")
		return d
	}},
	{"approval valid for no time", "/approval_rules/1/ttl_seconds", func(d obj) any {
		d["approval_rules"].(arr)[1].(obj)["ttl_seconds"] = 0
		return d
	}},
	{"chain depth as a string", "/delegation/max_chain_depth", func(d obj) any {
		d["delegation"].(obj)["max_chain_depth"] = "3"
		return d
	}},
	{"client metadata document of an unlisted provider", "/agents/cimd_providers/https:~1~1claude.ai~1oauth~1claude-code-client-metadata", func(d obj) any {
		d["agents"].(obj)["cimd_providers"].(obj)["https://claude.ai/oauth/claude-code-client-metadata"] = "claude-cod"
		return d
	}},
	{"client metadata document over plain http", "/agents/cimd_providers", func(d obj) any {
		d["agents"].(obj)["cimd_providers"].(obj)["http://example.com/agent.json"] = "claude-code"
		return d
	}},
	{"argument constraint on a resource the role does not grant", "/roles/contractor/arg_constraints/slack", func(d obj) any {
		d["roles"].(obj)["contractor"].(obj)["arg_constraints"].(obj)["slack"] = obj{"arg": "channel", "path_prefixes": arr{"/public"}}
		return d
	}},
	{"maximum token TTL below the TTL", "/tiers/developer/max_token_ttl_seconds", func(d obj) any {
		d["tiers"].(obj)["developer"].(obj)["max_token_ttl_seconds"] = 60
		return d
	}},
	{"catalogue tool without an access", "/catalogue/jira.get_issue", func(d obj) any {
		delete(d["catalogue"].(obj)["jira.get_issue"].(obj), "access")
		return d
	}},
	{"tier method that is no method", "/tiers/read_only/methods/0", func(d obj) any {
		d["tiers"].(obj)["read_only"].(obj)["methods"] = arr{"tools/lst"}
		return d
	}},
	{"provider twice in a tier", "/agents/trust_tiers/developer", func(d obj) any {
		d["agents"].(obj)["trust_tiers"].(obj)["developer"] = arr{"claude-code", "claude-code"}
		return d
	}},
	{"no tiers", "/tiers", func(d obj) any {
		d["tiers"] = obj{}
		return d
	}},
	{"role without grants", "/roles/analytics", func(d obj) any {
		delete(d["roles"].(obj)["analytics"].(obj), "grants")
		return d
	}},
	{"catalogue as an array", "/catalogue", func(d obj) any {
		d["catalogue"] = arr{}
		return d
	}},
}

// BadDataDocuments returns the shipped data changed in each of the ways
// the data schema or its cross-references refuse (at least 20), for tests
// that every path that changes data refuses them alike.
func BadDataDocuments(t testing.TB) []BadData {
	t.Helper()
	shipped, err := fs.ReadFile(rego.Sources(), "data.json")
	if err != nil {
		t.Fatal(err)
	}
	out := make([]BadData, 0, len(badDataMutations))
	for _, m := range badDataMutations {
		var d obj
		if err := json.Unmarshal(shipped, &d); err != nil {
			t.Fatal(err)
		}
		raw, err := json.Marshal(m.mutate(d))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, BadData{Name: m.name, Data: raw, Path: m.path})
	}
	return out
}
