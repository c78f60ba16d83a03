package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/pbac-gateway/pbac/identity/usersfile"
)

func newUserCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Manage the people of a users file (identity.users_file)",
		Long: `A users file lists the people who may sign in on an install without an
identity provider: names, argon2id password hashes and groups. Policy data
(identity.group_roles) turns groups into roles.`,
	}
	cmd.AddCommand(newUserAddCommand())
	return cmd
}

func newUserAddCommand() *cobra.Command {
	var (
		groups             []string
		file, display, arg string
	)
	cmd := &cobra.Command{
		Use:   "add NAME [--groups a,b] [--file users.yaml]",
		Short: "Hash a person's password and print or append their users file entry",
		Long: `Read NAME's password (prompted twice on a terminal, else the first line of
standard input; never from the command line, where other users and the shell
history would see it), hash it with argon2id (64 MiB, 3 passes, 4 lanes) and
print the entry to paste under users: in the users file, or with --file add
it to that file (created with mode 0600 if missing; a name already there is
refused). A running server picks the change up within a second.`,
		Example: `  pbac user add dana --groups engineering,oncall --file /etc/pbac/users.yaml
  printf '%s\n' "$PASSWORD" | pbac user add ci-operator --groups operators`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			name := args[0]
			password, err := readNewPassword(cmd, name)
			if err != nil {
				return err
			}
			e, err := usersfile.NewEntry(name, groups, password, usersfile.DefaultParams)
			clear(password)
			if err != nil {
				return err
			}
			e.DisplayName, e.Email = display, arg
			if file == "" {
				out, err := e.Marshal()
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(cmd.OutOrStdout(), "# add under users: in the users file\n%s", out)
				return err
			}
			if err := usersfile.Append(file, e); err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "added %s to %s\n", name, file)
			return nil
		},
	}
	cmd.Flags().StringSliceVar(&groups, "groups", nil, "the person's groups, comma-separated")
	cmd.Flags().StringVar(&file, "file", "", "append the entry to this users file instead of printing it")
	cmd.Flags().StringVar(&display, "display-name", "", "the name pages show (default NAME)")
	cmd.Flags().StringVar(&arg, "email", "", "the person's email address")
	return cmd
}

// readNewPassword reads a password from the terminal (twice, not echoed)
// or the first line of standard input.
func readNewPassword(cmd *cobra.Command, name string) ([]byte, error) {
	in := cmd.InOrStdin()
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		fmt.Fprintf(cmd.ErrOrStderr(), "Password for %s: ", name)
		p1, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return nil, err
		}
		fmt.Fprint(cmd.ErrOrStderr(), "Again: ")
		p2, err := term.ReadPassword(int(f.Fd()))
		fmt.Fprintln(cmd.ErrOrStderr())
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(p1, p2) {
			return nil, errors.New("the passwords differ")
		}
		clear(p2)
		return p1, nil
	}
	line, err := bufio.NewReader(io.LimitReader(in, 4096)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("read the password from standard input: %w", err)
	}
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		return nil, errors.New("no password on standard input")
	}
	return []byte(line), nil
}
