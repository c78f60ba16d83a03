package asrv

import (
	"encoding/json"
	"net/http"

	"github.com/ory/fosite"
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// writeOAuthError renders an RFC 6749 error from a fosite error, with the
// hint (safe for clients) as the description and never the debug detail.
func writeOAuthError(w http.ResponseWriter, err error) {
	e := fosite.ErrorToRFC6749Error(err)
	body := map[string]string{"error": e.ErrorField}
	if d := e.GetDescription(); d != "" {
		body["error_description"] = d
	}
	writeJSON(w, e.CodeField, body)
}

// fosite returns the provider as *fosite.Fosite for client authentication.
func (s *Server) fosite() *fosite.Fosite {
	return s.provider.(*fosite.Fosite)
}

// errInvalidTarget is RFC 8707's invalid_target error.
var errInvalidTarget = &fosite.RFC6749Error{
	ErrorField:       "invalid_target",
	DescriptionField: "The requested resource is invalid, unknown or not allowed.",
	CodeField:        http.StatusBadRequest,
}
