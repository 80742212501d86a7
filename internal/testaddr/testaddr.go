// Package testaddr hands out loopback addresses for tests that must know a
// listening address before the listener exists (raft peer lists).
//
// Binding 127.0.0.1:0 and releasing it is racy: the kernel may give that
// ephemeral port to an outgoing connection before the test binds it again.
// Ports here come from below Linux's ephemeral range (32768-60999), are
// checked free by binding, and are never handed out twice by one process.
package testaddr

import (
	"fmt"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
)

var (
	mu   sync.Mutex
	used = map[int]bool{}
)

// Loopback returns "127.0.0.1:<port>" with a port that was free just now.
func Loopback(t testing.TB) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	for range 1000 {
		p := 20000 + rand.IntN(12000)
		if used[p] {
			continue
		}
		addr := fmt.Sprintf("127.0.0.1:%d", p)
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			continue
		}
		ln.Close()
		used[p] = true
		return addr
	}
	t.Fatal("testaddr: no free loopback port found")
	return ""
}
