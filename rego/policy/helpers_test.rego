# Shared fixtures for the policy unit tests.
package pbac_test

now := 1700000100

all_scopes := [
	"database:ddl", "database:read",
	"drive:read", "drive:write",
	"gitlab:approve", "gitlab:merge", "gitlab:read", "gitlab:write",
	"jenkins:build", "jenkins:deploy", "jenkins:read",
	"jira:read", "jira:write",
	"slack:read", "slack:write",
]

alice := {"sub": "alice", "roles": ["engineering"]}

bob := {"sub": "bob", "roles": ["analytics"]}

carol := {"sub": "carol", "roles": ["contractor"]}

client_id(provider) := concat("", [provider, "-client"])

agent(provider) := {
	"client_id": client_id(provider),
	"agent_provider": provider,
	"agent_model": "test-model",
	"verified": true,
	"single_use_access_tokens": false,
}

# A valid five-minute machine token carrying every scope.
machine_token(provider) := {
	"client_id": client_id(provider),
	"scp": all_scopes,
	"aud": ["https://gw.example/mcp"],
	"iat": 1700000000,
	"exp": 1700000300,
}

human_token(provider, subj) := object.union(machine_token(provider), {"sub": subj.sub})

# Typical arguments for each tool, none touching protected data.
args_for(tool) := a if {
	a := {
		"drive.read_file": {"path": "/docs/readme.md"},
		"drive.write_file": {"path": "/docs/notes.md", "content": "x"},
		"drive.share_file": {"path": "/docs/notes.md", "with": "bob"},
		"jira.create_issue": {"project": "ENG", "summary": "s"},
		"slack.post_message": {"channel": "#eng", "text": "hi"},
		"jenkins.trigger_build": {"job": "pbac-ci"},
		"jenkins.trigger_deploy": {"job": "pbac-deploy"},
		"jenkins.get_build_log": {"job": "pbac-ci"},
		"database.query": {"sql": "select 1"},
		"database.execute_ddl": {"sql": "drop table t"},
	}[tool]
} else := {}

machine_call(provider, tool, args) := {
	"client": agent(provider),
	"token": machine_token(provider),
	"request": {"backend": split(tool, ".")[0], "method": "tools/call", "tool": tool, "arguments": args},
	"now": now,
}

human_call(provider, subj, tool, args) := object.union(machine_call(provider, tool, args), {
	"subject": subj,
	"token": human_token(provider, subj),
})

tool_call(inp) := d if {
	d := data.pbac.tool_call with input as inp
}

allowed(inp) if tool_call(inp).allow == true

denied(inp) if tool_call(inp).allow == false

has_reason(d, substr) if {
	some r in d.reasons
	contains(r, substr)
}
