// Package conformance holds the test vectors of the conformance suites
// (testdata/), embedded so the pbac binary carries them.
package conformance

import (
	"embed"
	"io/fs"
)

//go:embed testdata/*.json
var vectors embed.FS

// Vectors is the testdata directory: registration.json, authorize.json and
// the recorded client request sequences.
func Vectors() fs.FS {
	sub, err := fs.Sub(vectors, "testdata")
	if err != nil {
		panic(err) // the directory is embedded above
	}
	return sub
}
