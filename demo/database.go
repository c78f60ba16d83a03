package demo

import (
	"context"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Column is one column of a table.
type Column struct {
	Name string `json:"name"`
	Type string `json:"type"`
}

// TableInfo describes a table of the schema.
type TableInfo struct {
	Name     string   `json:"name"`
	Columns  []Column `json:"columns"`
	RowCount int      `json:"row_count"`
}

type dbTable struct {
	name    string
	columns []Column
	rows    []map[string]any
}

func (t *dbTable) info() TableInfo {
	return TableInfo{Name: t.name, Columns: slices.Clone(t.columns), RowCount: len(t.rows)}
}

func (t *dbTable) column(name string) int {
	return slices.IndexFunc(t.columns, func(c Column) bool { return strings.EqualFold(c.Name, name) })
}

type database struct {
	mu     sync.Mutex
	tables map[string]*dbTable
}

type QueryArgs struct {
	SQL string `json:"sql" jsonschema:"a read-only query: SELECT * | col, ... FROM table [WHERE col = 'value'] [LIMIT n]; table information_schema.tables lists the schema"`
}

type QueryOutput struct {
	Table   string           `json:"table"`
	Columns []string         `json:"columns"`
	Rows    []map[string]any `json:"rows"`
	Count   int              `json:"count"`
}

type ExecuteDDLArgs struct {
	SQL string `json:"sql" jsonschema:"one DDL statement: CREATE TABLE, DROP TABLE or ALTER TABLE"`
}

type ExecuteDDLOutput struct {
	Statement string      `json:"statement" jsonschema:"CREATE TABLE, DROP TABLE or ALTER TABLE"`
	Table     string      `json:"table"`
	Change    string      `json:"change" jsonschema:"what changed, in words"`
	Tables    []TableInfo `json:"tables" jsonschema:"the schema after the change"`
}

func newDatabaseServer() *mcp.Server {
	db := &database{tables: map[string]*dbTable{}}
	for _, t := range seedDatabase() {
		db.tables[t.name] = t
	}
	s := newServer("database", "Demo database",
		"A production-like database with tables users, orders and audit_log. "+
			"query runs a tiny read-only SELECT subset; execute_ddl changes the schema.")
	mcp.AddTool(s, &mcp.Tool{
		Name: "query",
		Description: "Run a read-only query: SELECT * (or a column list) FROM <table> [WHERE col = 'value'] [LIMIT n]. " +
			"SELECT * FROM information_schema.tables lists the tables.",
		Annotations: readOnly("Query"),
	}, db.query)
	mcp.AddTool(s, &mcp.Tool{
		Name:        "execute_ddl",
		Description: "Change the schema with one statement: CREATE TABLE name (col type, ...), DROP TABLE name, or ALTER TABLE name ADD [COLUMN] col type | DROP [COLUMN] col | RENAME TO new.",
		Annotations: writes("Execute DDL", true, false),
	}, db.executeDDL)
	return s
}

var (
	ident      = `([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)?)`
	selectRe   = regexp.MustCompile(`(?is)^select\s+(\*|[A-Za-z_][A-Za-z0-9_]*(?:\s*,\s*[A-Za-z_][A-Za-z0-9_]*)*)\s+from\s+` + ident + `(?:\s+where\s+([A-Za-z_][A-Za-z0-9_]*)\s*=\s*('(?:[^']|'')*'|-?[0-9]+))?(?:\s+limit\s+([0-9]+))?$`)
	createRe   = regexp.MustCompile(`(?is)^create\s+table\s+(if\s+not\s+exists\s+)?` + ident + `\s*\((.*)\)$`)
	dropRe     = regexp.MustCompile(`(?is)^drop\s+table\s+(if\s+exists\s+)?` + ident + `$`)
	alterRe    = regexp.MustCompile(`(?is)^alter\s+table\s+` + ident + `\s+(.*)$`)
	addColRe   = regexp.MustCompile(`(?is)^add\s+(?:column\s+)?([A-Za-z_][A-Za-z0-9_]*)\s+(.+)$`)
	dropColRe  = regexp.MustCompile(`(?is)^drop\s+(?:column\s+)?([A-Za-z_][A-Za-z0-9_]*)$`)
	renameToRe = regexp.MustCompile(`(?is)^rename\s+to\s+` + ident + `$`)
	colDefRe   = regexp.MustCompile(`(?is)^([A-Za-z_][A-Za-z0-9_]*)\s+(.+)$`)

	tableConstraintRe = regexp.MustCompile(`(?i)^(primary\s+key|unique|constraint|foreign\s+key|check)\b`)
)

// trimSQL removes surrounding space and one trailing semicolon.
func trimSQL(s string) string {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(s, ";")
	return strings.TrimSpace(s)
}

// schema returns the tables in name order; db.mu must be held.
func (db *database) schema() []TableInfo {
	out := []TableInfo{}
	for _, n := range slices.Sorted(maps.Keys(db.tables)) {
		out = append(out, db.tables[n].info())
	}
	return out
}

func (db *database) query(_ context.Context, _ *mcp.CallToolRequest, in QueryArgs) (*mcp.CallToolResult, QueryOutput, error) {
	sql := trimSQL(in.SQL)
	if sql == "" {
		return nil, QueryOutput{}, fmt.Errorf("argument %q is required and must not be empty", "sql")
	}
	m := selectRe.FindStringSubmatch(sql)
	if m == nil {
		return nil, QueryOutput{}, fmt.Errorf("unsupported query: only SELECT * | col, ... FROM table [WHERE col = 'value'] [LIMIT n] is allowed (read-only)")
	}
	cols, table, whereCol, whereVal, limitStr := m[1], strings.ToLower(m[2]), m[3], m[4], m[5]
	if strings.HasPrefix(whereVal, "'") {
		whereVal = strings.ReplaceAll(whereVal[1:len(whereVal)-1], "''", "'")
	}
	limit := -1
	if limitStr != "" {
		n, err := strconv.Atoi(limitStr)
		if err != nil {
			return nil, QueryOutput{}, fmt.Errorf("bad LIMIT %q", limitStr)
		}
		limit = n
	}

	db.mu.Lock()
	defer db.mu.Unlock()
	var t *dbTable
	if table == "information_schema.tables" {
		t = &dbTable{name: table, columns: []Column{{"table_name", "text"}, {"columns", "text"}, {"row_count", "integer"}}}
		for _, ti := range db.schema() {
			var cs []string
			for _, c := range ti.Columns {
				cs = append(cs, c.Name+" "+c.Type)
			}
			t.rows = append(t.rows, map[string]any{"table_name": ti.Name, "columns": strings.Join(cs, ", "), "row_count": ti.RowCount})
		}
	} else if t = db.tables[table]; t == nil {
		return nil, QueryOutput{}, fmt.Errorf("table %q does not exist (tables: %s)", m[2], strings.Join(slices.Sorted(maps.Keys(db.tables)), ", "))
	}

	var selected []string
	if cols == "*" {
		for _, c := range t.columns {
			selected = append(selected, c.Name)
		}
	} else {
		for c := range strings.SplitSeq(cols, ",") {
			c = strings.TrimSpace(c)
			i := t.column(c)
			if i < 0 {
				return nil, QueryOutput{}, fmt.Errorf("column %q does not exist in %s", c, t.name)
			}
			selected = append(selected, t.columns[i].Name)
		}
	}
	if whereCol != "" {
		i := t.column(whereCol)
		if i < 0 {
			return nil, QueryOutput{}, fmt.Errorf("column %q does not exist in %s", whereCol, t.name)
		}
		whereCol = t.columns[i].Name
	}

	out := QueryOutput{Table: t.name, Columns: selected, Rows: []map[string]any{}}
	for _, row := range t.rows {
		if limit >= 0 && len(out.Rows) >= limit {
			break
		}
		if whereCol != "" && fmt.Sprint(row[whereCol]) != whereVal {
			continue
		}
		r := map[string]any{}
		for _, c := range selected {
			r[c] = row[c]
		}
		out.Rows = append(out.Rows, r)
	}
	out.Count = len(out.Rows)

	lines := []string{strings.Join(selected, " | ")}
	for _, r := range out.Rows {
		var vals []string
		for _, c := range selected {
			vals = append(vals, fmt.Sprint(nullable(r[c])))
		}
		lines = append(lines, strings.Join(vals, " | "))
	}
	lines = append(lines, fmt.Sprintf("(%d row(s) from %s)", out.Count, t.name))
	return textLines(lines), out, nil
}

func nullable(v any) any {
	if v == nil {
		return "NULL"
	}
	return v
}

func (db *database) executeDDL(_ context.Context, _ *mcp.CallToolRequest, in ExecuteDDLArgs) (*mcp.CallToolResult, ExecuteDDLOutput, error) {
	sql := trimSQL(in.SQL)
	if sql == "" {
		return nil, ExecuteDDLOutput{}, fmt.Errorf("argument %q is required and must not be empty", "sql")
	}
	if strings.Contains(sql, ";") {
		return nil, ExecuteDDLOutput{}, fmt.Errorf("one statement at a time, please")
	}
	db.mu.Lock()
	defer db.mu.Unlock()
	out, err := db.ddl(sql)
	if err != nil {
		return nil, ExecuteDDLOutput{}, err
	}
	out.Tables = db.schema()
	names := make([]string, 0, len(out.Tables))
	for _, t := range out.Tables {
		names = append(names, t.Name)
	}
	return textResult("%s: %s.\nTables now: %s", out.Statement, out.Change, strings.Join(names, ", ")), out, nil
}

// ddl applies one DDL statement; db.mu must be held.
func (db *database) ddl(sql string) (ExecuteDDLOutput, error) {
	if m := createRe.FindStringSubmatch(sql); m != nil {
		name := strings.ToLower(m[2])
		out := ExecuteDDLOutput{Statement: "CREATE TABLE", Table: name}
		if _, exists := db.tables[name]; exists {
			if m[1] != "" {
				out.Change = fmt.Sprintf("table %s already exists; nothing changed", name)
				return out, nil
			}
			return out, fmt.Errorf("table %q already exists", name)
		}
		t := &dbTable{name: name}
		for _, def := range splitTopLevel(m[3]) {
			def = strings.TrimSpace(def)
			if tableConstraintRe.MatchString(def) {
				continue // PRIMARY KEY (...), UNIQUE (...), ...: accepted, not modelled
			}
			cm := colDefRe.FindStringSubmatch(def)
			if cm == nil {
				return out, fmt.Errorf("cannot parse column definition %q: want name type", def)
			}
			if t.column(cm[1]) >= 0 {
				return out, fmt.Errorf("column %q is defined twice", cm[1])
			}
			t.columns = append(t.columns, Column{Name: strings.ToLower(cm[1]), Type: strings.ToLower(strings.TrimSpace(cm[2]))})
		}
		if len(t.columns) == 0 {
			return out, fmt.Errorf("table %q needs at least one column", name)
		}
		db.tables[name] = t
		out.Change = fmt.Sprintf("created table %s with %d column(s)", name, len(t.columns))
		return out, nil
	}
	if m := dropRe.FindStringSubmatch(sql); m != nil {
		name := strings.ToLower(m[2])
		out := ExecuteDDLOutput{Statement: "DROP TABLE", Table: name}
		t, exists := db.tables[name]
		if !exists {
			if m[1] != "" {
				out.Change = fmt.Sprintf("table %s does not exist; nothing changed", name)
				return out, nil
			}
			return out, fmt.Errorf("table %q does not exist", name)
		}
		delete(db.tables, name)
		out.Change = fmt.Sprintf("dropped table %s (%d row(s) deleted)", name, len(t.rows))
		return out, nil
	}
	if m := alterRe.FindStringSubmatch(sql); m != nil {
		name := strings.ToLower(m[1])
		out := ExecuteDDLOutput{Statement: "ALTER TABLE", Table: name}
		t, exists := db.tables[name]
		if !exists {
			return out, fmt.Errorf("table %q does not exist", name)
		}
		action := strings.TrimSpace(m[2])
		switch {
		case addColRe.MatchString(action):
			am := addColRe.FindStringSubmatch(action)
			col := strings.ToLower(am[1])
			if t.column(col) >= 0 {
				return out, fmt.Errorf("column %q already exists in %s", col, name)
			}
			t.columns = append(t.columns, Column{Name: col, Type: strings.ToLower(strings.TrimSpace(am[2]))})
			for _, r := range t.rows {
				r[col] = nil
			}
			out.Change = fmt.Sprintf("added column %s to %s", col, name)
		case dropColRe.MatchString(action):
			col := strings.ToLower(dropColRe.FindStringSubmatch(action)[1])
			i := t.column(col)
			if i < 0 {
				return out, fmt.Errorf("column %q does not exist in %s", col, name)
			}
			if len(t.columns) == 1 {
				return out, fmt.Errorf("cannot drop the only column of %s", name)
			}
			t.columns = slices.Delete(t.columns, i, i+1)
			for _, r := range t.rows {
				delete(r, col)
			}
			out.Change = fmt.Sprintf("dropped column %s from %s", col, name)
		case renameToRe.MatchString(action):
			to := strings.ToLower(renameToRe.FindStringSubmatch(action)[1])
			if _, taken := db.tables[to]; taken {
				return out, fmt.Errorf("table %q already exists", to)
			}
			delete(db.tables, name)
			t.name = to
			db.tables[to] = t
			out.Change = fmt.Sprintf("renamed table %s to %s", name, to)
		default:
			return out, fmt.Errorf("unsupported ALTER TABLE action %q: use ADD [COLUMN] col type, DROP [COLUMN] col, or RENAME TO name", action)
		}
		return out, nil
	}
	return ExecuteDDLOutput{}, fmt.Errorf("only CREATE TABLE, DROP TABLE and ALTER TABLE statements are accepted")
}

// splitTopLevel splits a column list on the commas outside parentheses, so
// that "amount decimal(10,2), id int" is two definitions.
func splitTopLevel(s string) []string {
	var parts []string
	depth, start := 0, 0
	for i, r := range s {
		switch r {
		case '(':
			depth++
		case ')':
			depth--
		case ',':
			if depth == 0 {
				parts = append(parts, s[start:i])
				start = i + 1
			}
		}
	}
	return append(parts, s[start:])
}

func seedDatabase() []*dbTable {
	users := &dbTable{name: "users", columns: []Column{{"id", "integer"}, {"username", "text"}, {"email", "text"}, {"role", "text"}, {"team", "text"}, {"created_at", "timestamp"}}}
	for _, u := range []struct {
		id                                int
		username, email, role, team, time string
	}{
		{1, "alice", "alice@example.com", "engineering", "platform", "2023-02-01T09:00:00Z"},
		{2, "bob", "bob@example.com", "analytics", "data", "2023-05-15T09:00:00Z"},
		{3, "carol", "carol@example.com", "contractor", "platform", "2025-08-01T09:00:00Z"},
		{4, "dave", "dave@example.com", "engineering", "web", "2024-01-10T09:00:00Z"},
		{5, "erin", "erin@example.com", "security", "security", "2022-11-20T09:00:00Z"},
	} {
		users.rows = append(users.rows, map[string]any{"id": u.id, "username": u.username, "email": u.email, "role": u.role, "team": u.team, "created_at": u.time})
	}
	orders := &dbTable{name: "orders", columns: []Column{{"id", "integer"}, {"user_id", "integer"}, {"item", "text"}, {"amount_cents", "integer"}, {"status", "text"}, {"created_at", "timestamp"}}}
	for _, o := range []struct {
		id, user        int
		item            string
		amount          int
		status, created string
	}{
		{1001, 1, "Team plan (annual)", 480000, "paid", "2025-07-01T10:00:00Z"},
		{1002, 2, "Analytics add-on", 99000, "paid", "2025-07-03T14:12:00Z"},
		{1003, 4, "Extra seats x5", 60000, "pending", "2025-09-09T08:30:00Z"},
		{1004, 1, "Support upgrade", 120000, "refunded", "2025-08-15T16:45:00Z"},
		{1005, 3, "Contractor seat", 12000, "paid", "2025-08-01T09:05:00Z"},
	} {
		orders.rows = append(orders.rows, map[string]any{"id": o.id, "user_id": o.user, "item": o.item, "amount_cents": o.amount, "status": o.status, "created_at": o.created})
	}
	audit := &dbTable{name: "audit_log", columns: []Column{{"id", "integer"}, {"ts", "timestamp"}, {"actor", "text"}, {"action", "text"}, {"resource", "text"}}}
	for _, a := range []struct {
		id                          int
		ts, actor, action, resource string
	}{
		{1, "2025-09-08T14:20:00Z", "alice", "login", "console"},
		{2, "2025-09-09T17:00:00Z", "alice", "deploy", "jenkins/deploy-prod#41"},
		{3, "2025-09-10T10:00:00Z", "ci-bot", "create_merge_request", "gitlab/platform/api!7"},
		{4, "2025-09-10T11:00:00Z", "carol", "request_access", "drive:/team/roadmap.md"},
		{5, "2025-09-10T11:30:00Z", "security-scanner", "read", "drive:/public/handbook.md"},
	} {
		audit.rows = append(audit.rows, map[string]any{"id": a.id, "ts": a.ts, "actor": a.actor, "action": a.action, "resource": a.resource})
	}
	return []*dbTable{users, orders, audit}
}
