package usersfile_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/pbac-gateway/pbac/identity/usersfile"
)

// A users file written with Append (what pbac user add --file does) signs
// its people in with their groups.
func Example() {
	dir, _ := os.MkdirTemp("", "users")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "users.yaml")

	cheap := usersfile.Params{Memory: 64, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32} // use DefaultParams for real files
	e, err := usersfile.NewEntry("dana", []string{"engineering"}, []byte("correct horse battery"), cheap)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := usersfile.Append(path, e); err != nil {
		fmt.Println(err)
		return
	}
	f, err := usersfile.Open(path, usersfile.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	p, err := f.Authenticate(context.Background(), "dana", "correct horse battery")
	fmt.Println(p.Subject, p.Groups, err)
	_, err = f.Authenticate(context.Background(), "dana", "wrong")
	fmt.Println(err)
	// Output:
	// dana [engineering] <nil>
	// unknown user or wrong password
}
