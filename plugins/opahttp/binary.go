package opahttp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"
)

// Module is the Go module the OPA command line is built from.
const Module = "github.com/open-policy-agent/opa"

// BinaryOptions configures Binary.
type BinaryOptions struct {
	// CacheDir holds built binaries as opa-<version>; default
	// os.UserCacheDir()/pbac.
	CacheDir string
	// Version is the OPA module version to build; default the version this
	// program was built with (or, failing that, the one the enclosing
	// module requires).
	Version string
	// Go is the go command (default "go" on PATH).
	Go string
	// OnBuild, when set, is called before a build starts (which takes a
	// minute or two), with the version and the path it will be cached at.
	OnBuild func(version, path string)
	Logger  *slog.Logger
}

// Binary returns the path of an OPA command line of the same version as
// the OPA module this program uses, building it once with the go command
// and caching it. Inside this repository the build uses the module's own
// go.mod and go.sum (the OPA command is a tool dependency, so nothing is
// resolved afresh); elsewhere it builds in a temporary module, which needs
// the module proxy. It can take a minute or two the first time.
func Binary(ctx context.Context, opts BinaryOptions) (string, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Go == "" {
		opts.Go = "go"
	}
	// Without a go command only an already cached binary can do.
	goCmd, lookErr := exec.LookPath(opts.Go)
	root := moduleRoot()
	version := opts.Version
	if version == "" {
		version = builtWithVersion()
	}
	if version == "" && root != "" && lookErr == nil {
		version = requiredVersion(ctx, goCmd, root)
	}
	if version == "" {
		return "", errors.New("opahttp: cannot tell which OPA version to build: this program was not built with the OPA module")
	}
	cache := opts.CacheDir
	if cache == "" {
		base, err := os.UserCacheDir()
		if err != nil {
			return "", fmt.Errorf("opahttp: no cache directory: %w", err)
		}
		cache = filepath.Join(base, "pbac")
	}
	out := filepath.Join(cache, "opa-"+version)
	if info, err := os.Stat(out); err == nil && info.Mode().IsRegular() && info.Mode()&0o111 != 0 {
		return out, nil
	}
	if lookErr != nil {
		return "", fmt.Errorf("opahttp: no opa binary at %s and no go command to build it: %w", out, lookErr)
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("opahttp: %w", err)
	}
	tmp, err := os.CreateTemp(cache, ".opa-build-*")
	if err != nil {
		return "", fmt.Errorf("opahttp: %w", err)
	}
	tmpName := tmp.Name()
	tmp.Close()
	defer os.Remove(tmpName)

	ctx, cancel := context.WithTimeout(ctx, 15*time.Minute)
	defer cancel()
	opts.Logger.Info("building the OPA command line once", "version", version, "cache", out)
	if opts.OnBuild != nil {
		opts.OnBuild(version, out)
	}
	start := time.Now()
	var buildErr error
	if root != "" {
		buildErr = goRun(ctx, goCmd, root, "build", "-trimpath", "-o", tmpName, Module)
	}
	if root == "" || buildErr != nil {
		if buildErr != nil {
			opts.Logger.Info("building OPA in this module failed; trying a temporary module", "err", buildErr)
		}
		if err := buildInTempModule(ctx, goCmd, version, tmpName); err != nil {
			if buildErr != nil {
				err = errors.Join(buildErr, err)
			}
			return "", fmt.Errorf("opahttp: build the OPA command line %s: %w", version, err)
		}
	}
	if err := os.Chmod(tmpName, 0o755); err != nil {
		return "", fmt.Errorf("opahttp: %w", err)
	}
	if err := os.Rename(tmpName, out); err != nil {
		return "", fmt.Errorf("opahttp: %w", err)
	}
	opts.Logger.Info("built the OPA command line", "path", out, "took", time.Since(start).Round(time.Second))
	return out, nil
}

func buildInTempModule(ctx context.Context, goCmd, version, out string) error {
	dir, err := os.MkdirTemp("", "pbac-opa-build-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := goRun(ctx, goCmd, dir, "mod", "init", "pbac-opa-build"); err != nil {
		return err
	}
	if err := goRun(ctx, goCmd, dir, "get", Module+"@"+version); err != nil {
		return err
	}
	return goRun(ctx, goCmd, dir, "build", "-trimpath", "-o", out, Module)
}

func goRun(ctx context.Context, goCmd, dir string, args ...string) error {
	cmd := exec.CommandContext(ctx, goCmd, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "CGO_ENABLED=0")
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 2000 {
			msg = msg[:2000] + "…"
		}
		return fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, msg)
	}
	return nil
}

// builtWithVersion is the OPA module version this program was built with.
func builtWithVersion() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return ""
	}
	for _, d := range bi.Deps {
		if d.Path == Module {
			if d.Replace != nil {
				return ""
			}
			return d.Version
		}
	}
	return ""
}

// requiredVersion asks the go command which OPA version the module at
// root requires.
func requiredVersion(ctx context.Context, goCmd, root string) string {
	cmd := exec.CommandContext(ctx, goCmd, "list", "-m", "-f", "{{.Version}}", Module)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOWORK=off")
	out, err := cmd.Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// moduleRoot is the directory of the go.mod enclosing the working
// directory that declares this program's main module, or "".
func moduleRoot() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok || bi.Main.Path == "" {
		return ""
	}
	dir, err := os.Getwd()
	if err != nil {
		return ""
	}
	for {
		if modulePath(filepath.Join(dir, "go.mod")) == bi.Main.Path {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

func modulePath(gomod string) string {
	f, err := os.Open(gomod)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "module "); ok {
			return strings.Trim(strings.TrimSpace(rest), `"`)
		}
	}
	return ""
}
