package rego

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/util"
)

// dataFile is the policy data file, at the root of a policy fs.FS.
const dataFile = "data.json"

// sources is a policy directory read into memory.
type sources struct {
	// modules maps file path -> parsed module, policy modules only.
	modules map[string]*ast.Module
	// tests maps file path -> parsed module, *_test.rego files only.
	tests map[string]*ast.Module
	// data is the decoded data.json (an empty object when absent).
	data map[string]any
}

func isTestFile(p string) bool {
	return strings.HasSuffix(p, "_test.rego")
}

// skipDir reports whether a directory of a policy fs.FS holds no policy
// sources: vectors and other test data live there.
func skipDir(name string) bool {
	return name == "testdata" || name == "vectors" || strings.HasPrefix(name, ".")
}

var parserOpts = ast.ParserOptions{RegoVersion: ast.RegoV1, ProcessAnnotation: true}

// loadSources reads every .rego file of fsys (skipping testdata/ and
// vectors/ directories) and the root data.json. Parse errors of all files
// are collected and returned as SourceErrors.
func loadSources(fsys fs.FS, withTests bool) (*sources, error) {
	if fsys == nil {
		return nil, errors.New("rego: nil policy fs")
	}
	src := &sources{
		modules: map[string]*ast.Module{},
		tests:   map[string]*ast.Module{},
		data:    map[string]any{},
	}
	var files []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if p != "." && skipDir(d.Name()) {
				return fs.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".rego") && (withTests || !isTestFile(p)) {
			files = append(files, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("rego: reading policy sources: %w", err)
	}
	sort.Strings(files)

	raw := make(map[string][]byte, len(files))
	for _, p := range files {
		bs, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, fmt.Errorf("rego: %w", err)
		}
		raw[p] = bs
	}
	if err := src.parse(raw); err != nil {
		return nil, err
	}

	bs, err := fs.ReadFile(fsys, dataFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("rego: %w", err)
	default:
		d, err := decodeDataObject(bs)
		if err != nil {
			return nil, &SourceError{File: dataFile, Message: err.Error()}
		}
		src.data = d
	}
	return src, nil
}

// parse parses Rego sources by path into modules and tests. Errors of all
// files are collected and returned as SourceErrors.
func (src *sources) parse(raw map[string][]byte) error {
	files := make([]string, 0, len(raw))
	for p := range raw {
		files = append(files, p)
	}
	sort.Strings(files)
	var errs SourceErrors
	for _, p := range files {
		m, err := ast.ParseModuleWithOpts(p, string(raw[p]), parserOpts)
		if err != nil {
			se := sourceErrors(err)
			if len(se) == 0 {
				se = SourceErrors{{File: p, Message: err.Error()}}
			}
			errs = append(errs, se...)
			continue
		}
		if m == nil {
			errs = append(errs, &SourceError{File: p, Row: 1, Col: 1, Message: "empty module"})
			continue
		}
		if isTestFile(p) {
			src.tests[p] = m
		} else {
			src.modules[p] = m
		}
	}
	if len(errs) > 0 {
		return errs
	}
	if len(src.modules) == 0 {
		return errors.New("rego: no policy modules (*.rego) found")
	}
	return nil
}

// decodeDataObject decodes policy data, which must be one JSON object.
func decodeDataObject(bs []byte) (map[string]any, error) {
	var v any
	if err := util.UnmarshalJSON(bs, &v); err != nil {
		return nil, fmt.Errorf("invalid JSON: %w", err)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("policy data must be a JSON object")
	}
	return obj, nil
}

// canonicalJSON re-encodes a decoded JSON value with sorted object keys and
// no insignificant whitespace (encoding/json sorts map keys).
func canonicalJSON(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

// cleanName makes an fs path or tar entry name relative and slash-clean;
// ok is false for names escaping the root ("..") or empty names.
func cleanName(name string) (string, bool) {
	name = strings.ReplaceAll(name, "\\", "/")
	for _, seg := range strings.Split(name, "/") {
		if seg == ".." {
			return "", false
		}
	}
	c := path.Clean("/" + name)
	c = strings.TrimPrefix(c, "/")
	if c == "" || c == "." {
		return "", false
	}
	return c, true
}
