//go:build vmguest

package guest

import (
	"fmt"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	if os.Getenv("RAFTLB_VM_GUEST") != "1" {
		fmt.Println("skip: these tests change IPVS and network namespaces; they run only inside the VM (integration/vm/run.sh)")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestNothing(t *testing.T) {}
