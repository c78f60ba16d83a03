//go:build linux || darwin || freebsd || netbsd || openbsd

package gateway

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// connUsable peeks at a pooled connection without waiting: nothing to read
// is a connection still open with nothing unasked on it; end of stream is
// one the backend closed; bytes are an answer nobody asked for.
func connUsable(rc syscall.RawConn) error {
	if rc == nil {
		return nil
	}
	var state error
	var buf [1]byte
	err := rc.Read(func(fd uintptr) bool {
		n, _, err := unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
		switch {
		case errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EWOULDBLOCK):
		case err != nil:
			state = err
		case n == 0:
			state = errConnClosed
		default:
			state = errConnUnsolicited
		}
		return true // one look, never a wait
	})
	if err != nil {
		return err
	}
	return state
}
