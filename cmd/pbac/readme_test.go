package main

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/config"
)

// The README's configuration table lies between these markers.
const (
	readmeKeysBegin = "<!-- config-keys: generated from config.Keys(); PBAC_UPDATE_README=1 go test -run TestREADMEConfigTable ./cmd/pbac/ rewrites it -->"
	readmeKeysEnd   = "<!-- /config-keys -->"
)

// readmeConfigTable renders the configuration table (config.Keys) as the
// README shows it: key, environment variable, flag (pbac up's, or pbac
// asrv's where pbac up has none), default and what it does.
func readmeConfigTable() string {
	up := newUpCommand().Flags()
	cell := func(v string) string {
		if v == "" {
			return "—"
		}
		return "`" + v + "`"
	}
	var b strings.Builder
	b.WriteString("| key | environment | flag | default | |\n|---|---|---|---|---|\n")
	for _, k := range config.Keys() {
		flag := "—"
		if k.Flag != "" {
			flag = "`--" + k.Flag + "`"
			if up.Lookup(k.Flag) == nil {
				flag += " (pbac asrv)"
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s |\n", cell(k.Name), cell(k.Env), flag, cell(k.Default),
			strings.ReplaceAll(k.Doc, "|", `\|`))
	}
	return b.String()
}

// TestREADMEConfigTable: the README's configuration table is the one
// config.Keys() renders, so a key added to the table is documented (with
// PBAC_UPDATE_README=1 the test writes it).
func TestREADMEConfigTable(t *testing.T) {
	const path = "../../README.md"
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	readme := string(raw)
	begin, end := strings.Index(readme, readmeKeysBegin), strings.Index(readme, readmeKeysEnd)
	if begin < 0 || end < begin {
		t.Fatalf("README.md lacks the markers of the configuration table:\n%s\n%s", readmeKeysBegin, readmeKeysEnd)
	}
	have := readme[begin+len(readmeKeysBegin) : end]
	want := "\n" + readmeConfigTable()
	if have == want {
		return
	}
	if os.Getenv("PBAC_UPDATE_README") == "1" {
		if err := os.WriteFile(path, []byte(readme[:begin+len(readmeKeysBegin)]+want+readme[end:]), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Errorf("README.md's configuration table is not config.Keys()'s; PBAC_UPDATE_README=1 go test -run TestREADMEConfigTable ./cmd/pbac/ rewrites it. Want:\n%s", want)
}
