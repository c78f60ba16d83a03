package config

import (
	"fmt"
	"time"
)

// positiveDuration parses v, the value of key, as a duration above zero;
// the error names the key and gives example as a value that would do.
func positiveDuration(key, v, example string) (time.Duration, error) {
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		return 0, fmt.Errorf("%s %q: want a positive duration (e.g. %s)", key, v, example)
	}
	return d, nil
}
