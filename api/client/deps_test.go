package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestClientIsLight: a program that imports the Go client gets the wire
// types, the model and the trust package, not the director: no raft, bolt,
// memberlist, DNS or ICMP code (api/wire is the seam that keeps it so).
func TestClientIsLight(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/raftlb/raftlb/api/client").CombinedOutput()
	if err != nil {
		t.Skipf("go list: %v\n%s", err, out)
	}
	for _, dep := range strings.Fields(string(out)) {
		for _, heavy := range []string{"hashicorp/raft", "bbolt", "hashicorp/memberlist", "miekg/dns", "x/net/icmp",
			"raftlb/raftlb/api", "raftlb/raftlb/fsm", "raftlb/raftlb/cluster", "raftlb/raftlb/health", "raftlb/raftlb/dataplane"} {
			if strings.Contains(dep, heavy) && !strings.HasPrefix(dep, "github.com/raftlb/raftlb/api/wire") && dep != "github.com/raftlb/raftlb/api/client" {
				t.Errorf("the client depends on %s", dep)
			}
		}
	}
}
