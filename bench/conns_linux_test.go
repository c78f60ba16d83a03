package bench

import (
	"net"
	"os"
	"testing"
)

// TestEstablishedTo counts this process's own connections to a listener
// it opened: the dialled ones, not the accepted ends (whose remote port is
// the dialler's).
func TestEstablishedTo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if n, ok := EstablishedTo(os.Getpid(), port); !ok || n != 0 {
		t.Fatalf("before dialling: %d, %v; want 0, true", n, ok)
	}
	for i := range 3 {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		a, err := ln.Accept()
		if err != nil {
			t.Fatal(err)
		}
		defer a.Close()
		if n, ok := EstablishedTo(os.Getpid(), port); !ok || n != i+1 {
			t.Fatalf("after %d dials: %d, %v; want %d, true", i+1, n, ok, i+1)
		}
	}
	if _, ok := EstablishedTo(-1, port); ok {
		t.Error("a process that does not exist was readable")
	}
}
