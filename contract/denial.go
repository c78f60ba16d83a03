package contract

import "encoding/json"

// DenialMetaKey names, in the _meta of a tools/call result, the details of
// a call the gateway answered as a policy denial (denials: tool_error):
// the result has isError true and its text says why, for the model; this
// says it for programs — the reasons, the request id that finds the audit
// record, the policy version, and the scope a step-up would need.
const DenialMetaKey = "pbac-gateway/denial"

// Denial is the value under DenialMetaKey.
type Denial struct {
	Reasons       []string `json:"reasons"`
	RequestID     string   `json:"request_id"`
	PolicyVersion string   `json:"policy_version,omitempty"`
	RequiredScope string   `json:"required_scope,omitempty"`
}

// DenialOf tells whether a tools/call result (the JSON-RPC result object)
// is the gateway's answer to a call policy denied, and with what details.
// A tool's own error result is not one: it carries no DenialMetaKey.
func DenialOf(result json.RawMessage) (Denial, bool) {
	var raw struct {
		IsError bool                       `json:"isError"`
		Meta    map[string]json.RawMessage `json:"_meta"`
	}
	if json.Unmarshal(result, &raw) != nil || !raw.IsError {
		return Denial{}, false
	}
	v, ok := raw.Meta[DenialMetaKey]
	if !ok {
		return Denial{}, false
	}
	var d Denial
	if json.Unmarshal(v, &d) != nil {
		return Denial{}, false
	}
	return d, true
}
