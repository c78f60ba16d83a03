package rego

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/bundle"
	"github.com/open-policy-agent/opa/v1/compile"

	"github.com/pbac-gateway/pbac/contract"
)

// Bundle is a compiled policy bundle.
type Bundle struct {
	// Wasm is the OPA-ABI Wasm module holding every entrypoint.
	Wasm []byte
	// Data is the policy data, one JSON object.
	Data []byte
	// Revision is the lower-case hex sha256 of Wasm followed by Data.
	Revision string
	// Vectors is a JSON array of decision vectors, or nil.
	Vectors []byte
	// Schema is the JSON Schema of Data (policy/data.schema.json), or nil:
	// every data change of the bundle is checked against it (CheckData).
	// It is not part of Revision.
	Schema []byte
	// Modules are the Rego sources the Wasm was compiled from, by path
	// (test files excluded), or nil when the bundle does not carry them.
	// They are not part of Revision: OPA's own evaluator runs them to check
	// the Wasm against (pbac conformance policy).
	Modules map[string][]byte
	// Raw is the tar.gz the bundle was read from (ReadTarGz), byte for
	// byte, or nil for a bundle built in process. It is what signatures are
	// checked against (ReadVerifiedTarGz) and what the bundle server hands
	// on to other replicas, so a signature travels unchanged.
	Raw []byte
	// SignedBy is the key id that verified the bundle's signature
	// (ReadVerifiedTarGz), or "".
	SignedBy string
	// ContractVersion is the policy contract version the bundle declares
	// (its manifest's metadata.contract_version): Build sets
	// contract.Version; 0 is a bundle that declares none, version 1 (see
	// contract.BundleVersion). It is not part of Revision.
	ContractVersion int
	// entrypoints are what Build compiled into the module (nil: the
	// contract's), as the manifest lists them.
	entrypoints []string
}

// Bundle file names inside the tar.gz (OPA bundle layout).
const (
	tarWasm     = "/policy.wasm"
	tarData     = "/data.json"
	tarManifest = "/.manifest"
	tarVectors  = "/pbac/vectors.json"
	tarSchema   = "/pbac/" + dataSchemaFile
)

// Size limits for ReadTarGz.
const (
	maxBundleBytes = 64 << 20 // total uncompressed bytes
	maxBundleFiles = 4096
)

// revision computes Bundle.Revision.
func revision(wasm, data []byte) string {
	h := sha256.New()
	h.Write(wasm)
	h.Write(data)
	return hex.EncodeToString(h.Sum(nil))
}

// BuildOption changes what Build compiles.
type BuildOption func(*buildConfig)

type buildConfig struct {
	version     int
	entrypoints []string
}

// ForContract builds a bundle that declares contract version v and
// exports exactly eps (which the sources must define), instead of this
// binary's contract.Version and every entrypoint of it: a bundle for a
// fleet still on an older contract, or one of a newer contract in tests.
func ForContract(v int, eps ...contract.Entrypoint) BuildOption {
	return func(c *buildConfig) {
		c.version = v
		c.entrypoints = make([]string, len(eps))
		for i, ep := range eps {
			c.entrypoints[i] = string(ep)
		}
	}
}

// Build compiles all non-test .rego files of fsys plus its root data.json
// into one Wasm module exporting every entrypoint of the contract
// (contract.Entrypoints), and declares contract.Version, unless an option
// says otherwise. The build is offline and deterministic. Parse and compile
// errors are returned as SourceErrors ("file:row:col: message").
// Directories named testdata or vectors are ignored. Build never attaches
// vectors (see BuildShipped).
func Build(ctx context.Context, fsys fs.FS, opts ...BuildOption) (*Bundle, error) {
	cfg := buildConfig{version: contract.Version, entrypoints: entrypoints}
	for _, o := range opts {
		o(&cfg)
	}
	src, err := loadSources(fsys, false)
	if err != nil {
		return nil, err
	}
	files := make([]string, 0, len(src.modules))
	for p := range src.modules {
		files = append(files, p)
	}
	sort.Strings(files)

	b := &bundle.Bundle{Data: src.data}
	b.SetRegoVersion(ast.RegoV1)
	b.Manifest.Init()
	raw := make(map[string][]byte, len(files))
	for _, p := range files {
		bs, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil, err
		}
		raw[p] = bs
		b.Modules = append(b.Modules, bundle.ModuleFile{
			URL:    p,
			Path:   p,
			Raw:    bs,
			Parsed: src.modules[p],
		})
	}

	c := compile.New().
		WithTarget(compile.TargetWasm).
		WithRegoVersion(ast.RegoV1).
		WithEntrypoints(cfg.entrypoints...).
		WithBundle(b)
	if err := c.Build(ctx); err != nil {
		return nil, asSourceError(err)
	}
	out := c.Bundle()
	if out == nil || len(out.WasmModules) != 1 {
		return nil, errors.New("rego: compiler produced no Wasm module")
	}
	data, err := canonicalJSON(src.data)
	if err != nil {
		return nil, fmt.Errorf("rego: encoding data: %w", err)
	}
	schema, err := fs.ReadFile(fsys, dataSchemaFile)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		schema = nil
	case err != nil:
		return nil, fmt.Errorf("rego: read %s: %w", dataSchemaFile, err)
	}
	if schema != nil {
		if err := CheckDataSchema(schema); err != nil {
			return nil, fmt.Errorf("rego: %s: %w", dataSchemaFile, err)
		}
		if err := CheckData(schema, data); err != nil {
			return nil, fmt.Errorf("rego: %s against %s: %w", dataFile, dataSchemaFile, err)
		}
	}
	wasm := bytes.Clone(out.WasmModules[0].Raw)
	bdl := &Bundle{Wasm: wasm, Data: data, Revision: revision(wasm, data), Modules: raw, ContractVersion: cfg.version, Schema: schema}
	if len(opts) > 0 {
		bdl.entrypoints = cfg.entrypoints
	}
	return bdl, nil
}

// BuildShipped builds the shipped policy (Sources()) and attaches the
// shipped decision vectors (testdata/vectors/*.json) as Bundle.Vectors.
func BuildShipped(ctx context.Context) (*Bundle, error) {
	b, err := Build(ctx, Sources())
	if err != nil {
		return nil, err
	}
	v, err := ShippedVectors()
	if err != nil {
		return nil, err
	}
	b.Vectors = v
	return b, nil
}

// manifest is the JSON .manifest written by WriteTarGz; field order is fixed.
// Metadata carries the contract version (manifestMetadata).
type manifest struct {
	Revision    string          `json:"revision"`
	Roots       []string        `json:"roots"`
	Wasm        []manifestWasm  `json:"wasm"`
	RegoVersion int             `json:"rego_version"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
}

type manifestWasm struct {
	Entrypoint string `json:"entrypoint"`
	Module     string `json:"module"`
}

// manifestMetadata is the manifest's metadata as PBAC writes it: OPA keeps
// metadata free for the bundle's author, so the contract version travels
// there and OPA itself reads the bundle unchanged.
type manifestMetadata struct {
	ContractVersion int `json:"contract_version,omitempty"`
}

// readManifest reads the contract version a bundle's .manifest declares
// (0: none).
func readManifest(raw []byte) (int, error) {
	var m struct {
		Metadata json.RawMessage `json:"metadata"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return 0, fmt.Errorf("rego: bundle .manifest: %w", err)
	}
	if len(m.Metadata) == 0 || string(m.Metadata) == "null" {
		return 0, nil
	}
	var md map[string]json.RawMessage
	if err := json.Unmarshal(m.Metadata, &md); err != nil {
		// Metadata of another shape is the author's own business.
		return 0, nil
	}
	raw, ok := md["contract_version"]
	if !ok {
		return 0, nil
	}
	v, err := strconv.Atoi(string(raw))
	if err != nil || v < 1 {
		return 0, fmt.Errorf("rego: bundle .manifest: contract_version %.20s is not a positive integer", raw)
	}
	return v, nil
}

// WriteTarGz writes b as an OPA bundle: /policy.wasm, /data.json,
// /.manifest (revision, roots, wasm entrypoints, and the contract version
// as metadata.contract_version), the Rego sources of
// b.Modules at their paths (as `opa build -t wasm` keeps them) and, when
// b.Vectors is not nil, /pbac/vectors.json, and when b.Schema is not nil,
// /pbac/data.schema.json. The output is byte-for-byte deterministic:
// sorted entries, zero mtimes and owners, and a fixed gzip header.
func (b *Bundle) WriteTarGz(w io.Writer) error {
	files, err := b.tarFiles()
	if err != nil {
		return err
	}
	return writeTarGz(w, files)
}

// tarFiles lays b out as the files of its tar.gz, by absolute name.
func (b *Bundle) tarFiles() (map[string][]byte, error) {
	if b == nil {
		return nil, errors.New("rego: nil bundle")
	}
	m := manifest{Revision: b.Revision, Roots: []string{""}, RegoVersion: 1}
	eps := b.entrypoints
	if eps == nil {
		eps = entrypoints
	}
	for _, e := range eps {
		m.Wasm = append(m.Wasm, manifestWasm{Entrypoint: e, Module: tarWasm})
	}
	if b.ContractVersion != 0 {
		md, err := json.Marshal(manifestMetadata{ContractVersion: b.ContractVersion})
		if err != nil {
			return nil, err
		}
		m.Metadata = md
	}
	mbs, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	data := b.Data
	if data == nil {
		data = []byte("{}")
	}
	files := map[string][]byte{
		tarWasm:     b.Wasm,
		tarData:     data,
		tarManifest: mbs,
	}
	if b.Vectors != nil {
		files[tarVectors] = b.Vectors
	}
	if b.Schema != nil {
		files[tarSchema] = b.Schema
	}
	for p, src := range b.Modules {
		name, ok := cleanName(p)
		if !ok || !strings.HasSuffix(name, ".rego") {
			return nil, fmt.Errorf("rego: module path %q is not a relative .rego path", p)
		}
		files["/"+name] = src
	}
	return files, nil
}

// writeTarGz writes files deterministically: sorted entries, zero mtimes
// and owners, and a fixed gzip header.
func writeTarGz(w io.Writer, files map[string][]byte) error {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)

	gz, err := gzip.NewWriterLevel(w, gzip.BestCompression)
	if err != nil {
		return err
	}
	// Zero header fields: no name, no mtime (Go writes OS=unknown).
	gz.Header = gzip.Header{}
	tw := tar.NewWriter(gz)
	epoch := time.Unix(0, 0).UTC()
	for _, n := range names {
		body := files[n]
		hdr := &tar.Header{
			Typeflag: tar.TypeReg,
			Name:     n,
			Mode:     0o644,
			Size:     int64(len(body)),
			ModTime:  epoch,
			Format:   tar.FormatUSTAR,
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if _, err := tw.Write(body); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// TarGz returns the bundle as a tar.gz: the bytes it was read from when
// there are any (Raw, signatures and all), otherwise WriteTarGz's output.
func (b *Bundle) TarGz() ([]byte, error) {
	if b != nil && b.Raw != nil {
		return b.Raw, nil
	}
	var buf bytes.Buffer
	if err := b.WriteTarGz(&buf); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ReadTarGz reads an OPA bundle tar.gz as written by WriteTarGz or by
// `opa build -t wasm`. It needs exactly one .wasm module; data.json files
// (root or nested, OPA-style) make up Data ({} when absent); .rego sources
// other than *_test.rego become Modules; the .manifest's
// metadata.contract_version becomes ContractVersion (a manifest that is not
// JSON, or a contract_version that is not a positive integer, is refused);
// /pbac/data.schema.json becomes Schema (refused when it does not compile);
// signatures and other files are ignored (ReadVerifiedTarGz checks them).
// Entry names that escape the root ("..") are rejected, as are bundles over
// 64 MiB or with more than 4096 entries. Revision is recomputed from Wasm
// and Data; Raw keeps the bytes read.
func ReadTarGz(r io.Reader) (*Bundle, error) {
	b, _, err := readTarGz(r)
	return b, err
}

// tarContents is every regular file of a bundle tar.gz by name (no leading
// slash), and the signatures file apart.
type tarContents struct {
	files      map[string][]byte
	signatures []byte
}

func readTarGz(r io.Reader) (*Bundle, *tarContents, error) {
	raw, err := io.ReadAll(io.LimitReader(r, maxBundleBytes+1))
	if err != nil {
		return nil, nil, fmt.Errorf("rego: reading bundle: %w", err)
	}
	if len(raw) > maxBundleBytes {
		return nil, nil, fmt.Errorf("rego: bundle exceeds %d bytes", maxBundleBytes)
	}
	gz, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		return nil, nil, fmt.Errorf("rego: bundle is not gzip: %w", err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)

	var (
		total      int64
		count      int
		wasmName   string
		out        = &Bundle{Raw: raw}
		dataFiles  = map[string][]byte{}
		sawVectors bool
		contents   = &tarContents{files: map[string][]byte{}}
	)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("rego: reading bundle: %w", err)
		}
		count++
		if count > maxBundleFiles {
			return nil, nil, fmt.Errorf("rego: bundle has more than %d entries", maxBundleFiles)
		}
		name, ok := cleanName(hdr.Name)
		if !ok {
			if strings.Trim(hdr.Name, "/.") == "" && hdr.Typeflag == tar.TypeDir {
				continue
			}
			return nil, nil, fmt.Errorf("rego: bundle entry %q escapes the bundle root", hdr.Name)
		}
		switch hdr.Typeflag {
		case tar.TypeReg:
		case tar.TypeDir, tar.TypeXGlobalHeader:
			continue
		default:
			return nil, nil, fmt.Errorf("rego: bundle entry %q is not a regular file", hdr.Name)
		}
		if hdr.Size < 0 || total+hdr.Size > maxBundleBytes {
			return nil, nil, fmt.Errorf("rego: bundle exceeds %d bytes", maxBundleBytes)
		}
		body, err := io.ReadAll(io.LimitReader(tr, hdr.Size+1))
		if err != nil {
			return nil, nil, fmt.Errorf("rego: reading %s: %w", name, err)
		}
		if int64(len(body)) != hdr.Size {
			return nil, nil, fmt.Errorf("rego: bundle entry %s has a wrong size", name)
		}
		total += hdr.Size

		base := name[strings.LastIndex(name, "/")+1:]
		if base == signaturesFile {
			if contents.signatures != nil {
				return nil, nil, errors.New("rego: bundle has several signatures files")
			}
			contents.signatures = body
			continue
		}
		if _, dup := contents.files[name]; dup {
			return nil, nil, fmt.Errorf("rego: bundle entry %s appears twice", name)
		}
		contents.files[name] = body
		switch {
		case strings.HasSuffix(name, ".wasm"):
			if wasmName != "" {
				return nil, nil, fmt.Errorf("rego: bundle has several Wasm modules (%s, %s)", wasmName, name)
			}
			wasmName = name
			out.Wasm = body
		case base == "data.json":
			dataFiles[name] = body
		case name == strings.TrimPrefix(tarManifest, "/"):
			if out.ContractVersion, err = readManifest(body); err != nil {
				return nil, nil, err
			}
		case name == strings.TrimPrefix(tarVectors, "/"):
			sawVectors = true
			out.Vectors = body
		case name == strings.TrimPrefix(tarSchema, "/"):
			out.Schema = body
		case strings.HasSuffix(name, ".rego") && !isTestFile(name):
			if out.Modules == nil {
				out.Modules = map[string][]byte{}
			}
			out.Modules[name] = body
		}
	}
	if wasmName == "" {
		return nil, nil, errors.New("rego: bundle has no Wasm module")
	}
	if sawVectors && !json.Valid(out.Vectors) {
		return nil, nil, errors.New("rego: bundle vectors are not valid JSON")
	}
	if out.Schema != nil {
		if err := CheckDataSchema(out.Schema); err != nil {
			return nil, nil, fmt.Errorf("rego: bundle %s: %w", tarSchema, err)
		}
	}
	data, err := mergeDataFiles(dataFiles)
	if err != nil {
		return nil, nil, err
	}
	out.Data = data
	out.Revision = revision(out.Wasm, out.Data)
	return out, contents, nil
}

// mergeDataFiles builds the bundle's data document. A lone root data.json is
// kept byte for byte (so WriteTarGz/ReadTarGz round-trips); otherwise every
// data.json is mounted at its directory path and the result re-encoded.
func mergeDataFiles(files map[string][]byte) ([]byte, error) {
	if len(files) == 0 {
		return []byte("{}"), nil
	}
	if root, ok := files["data.json"]; ok && len(files) == 1 {
		if _, err := decodeDataObject(root); err != nil {
			return nil, fmt.Errorf("rego: bundle data.json: %w", err)
		}
		return root, nil
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	doc := map[string]any{}
	for _, n := range names {
		obj, err := decodeDataObject(files[n])
		if err != nil {
			return nil, fmt.Errorf("rego: bundle %s: %w", n, err)
		}
		dir := strings.TrimSuffix(strings.TrimSuffix(n, "data.json"), "/")
		node := doc
		if dir != "" {
			for _, key := range strings.Split(dir, "/") {
				child, ok := node[key].(map[string]any)
				if !ok {
					if _, exists := node[key]; exists {
						return nil, fmt.Errorf("rego: bundle %s conflicts with other data", n)
					}
					child = map[string]any{}
					node[key] = child
				}
				node = child
			}
		}
		for k, v := range obj {
			if _, exists := node[k]; exists {
				return nil, fmt.Errorf("rego: bundle %s: key %q defined twice", n, k)
			}
			node[k] = v
		}
	}
	return canonicalJSON(doc)
}
