package realclients

import (
	"fmt"
	"strings"
)

// Markdown is the client × step table, one row per client, and the
// configuration that worked for each.
func Markdown(rows []Row) string {
	var b strings.Builder
	b.WriteString("| client | version | discovery | registration | sign-in | token | tools/list | allowed call | denied call | the gateway answered | what the model (Inspector: the person) saw for the denied call | audit trail |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Client, r.Version,
			cell(r.Discovery), cell(r.Registration), cell(r.SignIn), cell(r.Token), cell(r.ToolsList),
			cell(r.Allowed), cell(r.Denied), cell(r.DeniedHTTP), "`"+strings.ReplaceAll(cell(r.ModelSawDenied), "`", "'")+"`", cell(r.Audit))
	}
	for _, r := range rows {
		fmt.Fprintf(&b, "\n%s %s:\n\n```\n%s\n```\n", r.Client, r.Version, r.Snippet)
	}
	return b.String()
}

// cell is s fit for a table cell: ✅ for a pass, one line, pipes escaped.
func cell(s string) string {
	if rest, ok := strings.CutPrefix(s, "pass"); ok {
		s = "✅" + rest
	}
	s = strings.Join(strings.Fields(s), " ")
	return strings.ReplaceAll(s, "|", `\|`)
}
