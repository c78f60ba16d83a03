package realclients

import (
	"fmt"
	"strings"
)

// Markdown is the client × step table, one row per client, and the
// configuration that worked for each.
func Markdown(rows []Row) string {
	var b strings.Builder
	b.WriteString("| client | version | discovery | registration | sign-in | token | tools/list | allowed call | denied call | the gateway answered | what the model (Inspector: the person) saw for the denied call | audit trail | refresh (after the access token expired) | step-up (403 insufficient_scope) | new session after 404 |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Client, r.Version,
			cell(r.Discovery), cell(r.Registration), cell(r.SignIn), cell(r.Token), cell(r.ToolsList),
			cell(r.Allowed), cell(r.Denied), cell(r.DeniedHTTP), "`"+strings.ReplaceAll(cell(r.ModelSawDenied), "`", "'")+"`", cell(r.Audit), cell(r.Refresh), cell(r.StepUp), cell(r.NewSession))
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "\n%s %s:\n\n```\n%s\n```\n", r.Client, r.Version, r.Snippet)
	}
	return b.String()
}

// DocURL and DocClientID stand, in a row's snippet, for the run's
// gateway and client id: pbac up's default address and the agent's id as
// the dashboard shows it (connect.Target).
const (
	DocURL      = "http://127.0.0.1:8080"
	DocClientID = "CLIENT_ID"
)

// DocSnippet is a snippet that worked against t as a user pastes it: t's
// address and client id replaced by DocURL and DocClientID.
func DocSnippet(snippet string, t Target) string {
	pairs := []string{t.Base, DocURL}
	if t.ClientID != "" {
		pairs = append(pairs, t.ClientID, DocClientID)
	}
	if t.Base == "" {
		pairs = pairs[2:]
	}
	if len(pairs) == 0 {
		return snippet
	}
	return strings.NewReplacer(pairs...).Replace(snippet)
}

// Cell is s fit for a Markdown table cell: ✅ for a pass, ❌ before a
// failure, one line, pipes escaped.
func Cell(s string) string {
	switch {
	case s == "", strings.HasPrefix(s, "pass"), strings.HasPrefix(s, "—"):
		return cell(s)
	}
	return "❌ " + cell(s)
}

// cell is s fit for a table cell: ✅ for a pass, one line, pipes escaped.
func cell(s string) string {
	if rest, ok := strings.CutPrefix(s, "pass"); ok {
		s = "✅" + rest
	}
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, "|", `\|`)
}
