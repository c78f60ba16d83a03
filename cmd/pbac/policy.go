package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

func newPolicyCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Build, test and evaluate Rego policy",
	}
	cmd.AddCommand(newPolicyBuildCommand(), newPolicyTestCommand(), newPolicyEvalCommand())
	return cmd
}

// policySources returns the policy directory named by args, or the shipped
// policy embedded in the binary.
func policySources(args []string) (fs.FS, string, error) {
	if len(args) == 0 {
		return rego.Sources(), "the shipped policy", nil
	}
	info, err := os.Stat(args[0])
	if err != nil {
		return nil, "", fmt.Errorf("policy directory: %w", err)
	}
	if !info.IsDir() {
		return nil, "", fmt.Errorf("policy directory: %s is not a directory", args[0])
	}
	return os.DirFS(args[0]), args[0], nil
}

func newPolicyBuildCommand() *cobra.Command {
	var out, signingKey, keyID string
	cmd := &cobra.Command{
		Use:   "build [dir]",
		Short: "Compile Rego (and data.json) to a Wasm policy bundle",
		Long: `Compiles every .rego file (tests excluded) and data.json under dir — or the
shipped policy when no dir is given — into one Wasm module with all
entrypoints, and writes an OPA-format bundle (tar.gz) that declares this
binary's policy contract version in its manifest (metadata.contract_version;
see rego/README.md). The build is offline and deterministic: the same
sources give the same bytes. The shipped policy's
decision vectors travel in the bundle and are checked at every activation.

With --signing-key the bundle is signed in OPA's format (/.signatures.json):
replicas started with --bundle-verification-key accept only bundles signed
by one of their keys.`,
		Example: `  pbac policy build -o bundle.tar.gz
  pbac policy build ./policy -o bundle.tar.gz --signing-key ops.key.pem --key-id ops-2026`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fsys, name, err := policySources(args)
			if err != nil {
				return err
			}
			var b *rego.Bundle
			if len(args) == 0 {
				b, err = rego.BuildShipped(cmd.Context())
			} else {
				b, err = buildDir(cmd.Context(), fsys)
			}
			if err != nil {
				return fmt.Errorf("build %s:\n%w", name, err)
			}
			var buf bytes.Buffer
			if signingKey != "" {
				err = writeSigned(&buf, b, signingKey, keyID)
			} else {
				err = b.WriteTarGz(&buf)
			}
			if err != nil {
				return err
			}
			if out == "-" {
				_, err = cmd.OutOrStdout().Write(buf.Bytes())
				return err
			}
			if err := writeFileAtomic(out, buf.Bytes()); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "wrote %s (%d bytes, revision %s, %d-byte module, contract version %d)\n",
				out, buf.Len(), b.Revision[:12], len(b.Wasm), b.ContractVersion)
			return nil
		},
	}
	cmd.Flags().StringVarP(&out, "output", "o", "bundle.tar.gz", "bundle file to write (- for stdout)")
	cmd.Flags().StringVar(&signingKey, "signing-key", "", "private key (PEM: RSA, ECDSA or Ed25519) to sign the bundle with")
	cmd.Flags().StringVar(&keyID, "key-id", rego.DefaultKeyID, "key id recorded in the signature (replicas pick the verification key by it)")
	return cmd
}

// writeSigned writes b signed with the PEM private key in keyPath.
func writeSigned(w io.Writer, b *rego.Bundle, keyPath, keyID string) error {
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return fmt.Errorf("signing key: %w", err)
	}
	s, err := rego.NewSigner(keyPEM, keyID)
	if err != nil {
		return err
	}
	return b.WriteSignedTarGz(w, s)
}

// buildDir compiles a policy directory; decision vectors in its vectors/
// folder travel in the bundle and gate every activation of it.
func buildDir(ctx context.Context, fsys fs.FS) (*rego.Bundle, error) {
	b, err := rego.Build(ctx, fsys)
	if err != nil {
		return nil, err
	}
	sub, err := fs.Sub(fsys, "vectors")
	if err != nil {
		return b, nil
	}
	if _, err := fs.Stat(sub, "."); err != nil {
		return b, nil
	}
	vs, err := rego.LoadVectors(sub)
	if err != nil {
		return nil, err
	}
	if len(vs) > 0 {
		if b.Vectors, err = json.Marshal(vs); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// writeFileAtomic writes through a temporary file and a rename, so a
// directory watcher never sees a half-written bundle.
func writeFileAtomic(path string, data []byte) error {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	tmp, err := os.CreateTemp(dir, "."+base+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func newPolicyTestCommand() *cobra.Command {
	var verbose bool
	cmd := &cobra.Command{
		Use:   "test [dir]",
		Short: "Run the policy's Rego unit tests (*_test.rego)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			fsys, name, err := policySources(args)
			if err != nil {
				return err
			}
			passed, failed, err := rego.Test(cmd.Context(), fsys, cmd.OutOrStdout(), verbose)
			if err != nil {
				return fmt.Errorf("test %s:\n%w", name, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d passed, %d failed\n", passed, failed)
			if failed > 0 {
				return exitError{code: 1}
			}
			if passed == 0 {
				return errors.New("no Rego tests found")
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "list every test")
	return cmd
}

func newPolicyEvalCommand() *cobra.Command {
	var bundlePath, inputPath, dataPath string
	cmd := &cobra.Command{
		Use:   "eval ENTRYPOINT",
		Short: "Evaluate one entrypoint (pbac/tool_call, …) on an input and print the decision",
		Long: `Evaluates ENTRYPOINT with the Wasm engine the gateway uses and prints the
decision JSON. The policy is the bundle given by --bundle, or the shipped
policy; --data replaces the bundle's data. The input is read from --input
(a file, or - for stdin).`,
		Example: `  echo '{"client": {...}, "request": {...}}' | pbac policy eval pbac/tool_call --input -`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx := cmd.Context()
			b, err := loadBundle(cmd, bundlePath)
			if err != nil {
				return err
			}
			if dataPath != "" {
				if b.Data, err = os.ReadFile(dataPath); err != nil {
					return fmt.Errorf("read data: %w", err)
				}
			}
			input, err := readInput(cmd.InOrStdin(), inputPath)
			if err != nil {
				return err
			}
			engine, err := wasm.NewEngine(ctx, wasm.NewConfig())
			if err != nil {
				return err
			}
			defer engine.Close(ctx)
			p, err := engine.Load(ctx, b.Wasm, b.Data)
			if err != nil {
				return err
			}
			defer p.Close(ctx)
			out, err := p.Eval(ctx, args[0], input)
			if err != nil {
				return err
			}
			var pretty bytes.Buffer
			if err := json.Indent(&pretty, out, "", "  "); err != nil {
				return fmt.Errorf("format decision: %w", err)
			}
			pretty.WriteByte('\n')
			_, err = pretty.WriteTo(cmd.OutOrStdout())
			return err
		},
	}
	cmd.Flags().StringVar(&bundlePath, "bundle", "", "policy bundle (tar.gz); default: the shipped policy")
	cmd.Flags().StringVar(&inputPath, "input", "-", "input JSON file, or - for stdin")
	cmd.Flags().StringVar(&dataPath, "data", "", "policy data JSON replacing the bundle's")
	return cmd
}

func loadBundle(cmd *cobra.Command, path string) (*rego.Bundle, error) {
	if path == "" {
		return rego.BuildShipped(cmd.Context())
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open bundle: %w", err)
	}
	defer f.Close()
	return rego.ReadTarGz(f)
}

// maxInput bounds the input read for one evaluation.
const maxInput = 1 << 20

func readInput(stdin io.Reader, path string) ([]byte, error) {
	r := stdin
	if path != "-" {
		f, err := os.Open(path)
		if err != nil {
			return nil, fmt.Errorf("open input: %w", err)
		}
		defer f.Close()
		r = f
	}
	b, err := io.ReadAll(io.LimitReader(r, maxInput+1))
	if err != nil {
		return nil, fmt.Errorf("read input: %w", err)
	}
	if len(b) > maxInput {
		return nil, fmt.Errorf("input exceeds %d bytes", maxInput)
	}
	if !json.Valid(b) {
		return nil, errors.New("input is not valid JSON")
	}
	return b, nil
}
