package agent

import (
	"os"
	"strings"
	"testing"

	"github.com/raftlb/raftlb/internal/netlab"
)

// TestInterfaceFault reads a real interface's state inside a namespace:
// up, peer down (no carrier), administratively down, missing.
func TestInterfaceFault(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for network namespaces")
	}
	lab := netlab.New(t)
	a, b := lab.Netns("tra"), lab.Netns("trb")
	lab.Link(a, "eth0", b, "eth0")
	fault := func() string {
		var f string
		if err := netlab.Do(a, func() error { f = interfaceFault([]string{"eth0"}); return nil }); err != nil {
			t.Fatal(err)
		}
		return f
	}
	if f := fault(); f != "" {
		t.Fatalf("both ends up: fault %q", f)
	}
	lab.MustRun(b, "ip", "link", "set", "eth0", "down")
	if f := fault(); !strings.Contains(f, "interface eth0 is") {
		t.Fatalf("peer down: fault %q", f)
	}
	lab.MustRun(a, "ip", "link", "set", "eth0", "down")
	if f := fault(); !strings.Contains(f, "administratively down") {
		t.Fatalf("down: fault %q", f)
	}
	var f string
	_ = netlab.Do(a, func() error { f = interfaceFault([]string{"nope0"}); return nil })
	if !strings.Contains(f, "nope0") {
		t.Fatalf("missing interface: fault %q", f)
	}
}
