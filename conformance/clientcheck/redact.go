package clientcheck

import (
	"fmt"
	"net/url"
)

// Redact replaces tokens, codes, PKCE values, client ids and session ids
// in recorded runs by stable labels (equal values, equal labels), so a
// recording can be kept as testdata: the checks compare only equality.
func Redact(runs []Run) []Run {
	labels := map[string]string{}
	label := func(kind, v string) string {
		if v == "" {
			return ""
		}
		if l, ok := labels[v]; ok {
			return l
		}
		l := fmt.Sprintf("%s%d", kind, len(labels)+1)
		labels[v] = l
		return l
	}
	values := func(v url.Values) url.Values {
		if v == nil {
			return nil
		}
		out := url.Values{}
		for k, vs := range v {
			for _, x := range vs {
				switch k {
				case "code", "code_verifier", "code_challenge", "state", "refresh_token", "client_id", "token", "subject_token":
					x = label(k+"-", x)
				}
				out.Add(k, x)
			}
		}
		return out
	}
	out := make([]Run, len(runs))
	for i, r := range runs {
		r.Events = append([]Event(nil), r.Events...)
		for j := range r.Events {
			e := &r.Events[j]
			e.Query, e.Form = values(e.Query), values(e.Form)
			e.Bearer, e.AccessToken = label("at-", e.Bearer), label("at-", e.AccessToken)
			e.RefreshToken = label("refresh_token-", e.RefreshToken)
			e.BasicClient = label("client_id-", e.BasicClient)
			e.Session = label("session-", e.Session)
		}
		out[i] = r
	}
	return out
}
