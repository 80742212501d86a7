package ipvs

import (
	"errors"
	"net"
	"runtime"
	"slices"
	"sync"
	"syscall"

	moby "github.com/moby/ipvs"
	"golang.org/x/sys/unix"

	"github.com/raftlb/raftlb/dataplane"
)

// Schedulers are the IPVS schedulers raftlb knows, in ipvsadm's spelling.
// twos exists from Linux 6.2 on; the others since 2.6/3.x/4.x.
var Schedulers = []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "mh", "fo", "ovf", "twos"}

// Capabilities says what the IPVS backend can express on any kernel:
// every scheduler raftlb knows (see Backend.Capabilities for those this
// kernel has), every flag, nat, dr and tun, persistence, fwmark services
// and thresholds.
//
// What the kernel refuses on its own, found with ipvsadm and this backend
// in the VM tests (integration/vm/guest/kernel_test.go), and how each is
// kept out of the replicated state so that no write is refused by the
// kernel on every retry:
//
//   - A real server of the other address family: only with tun (IPv4 in
//     IPv6, IPv6 in IPv4, for IPIP, GUE and GRE alike; nat and dr are
//     refused with EINVAL). model.NormalizeReal asks for tun.
//   - Such a real server and a connection-sync daemon in the same
//     network namespace: whichever comes second is refused with EINVAL
//     (the sync protocol carries one family per connection). fsm refuses
//     either while a director registered as able to tunnel (this
//     backend: "tun" in Forwards) is in the cluster.
//   - A lower threshold above the upper one, also when the upper one is
//     0 (none): ERANGE. model.NormalizeReal refuses it.
//   - A scheduler whose module the kernel lacks (twos before 6.2):
//     ENOENT. Backend.Capabilities lists only those the kernel has.
func Capabilities() dataplane.Capabilities {
	return dataplane.Capabilities{
		Schedulers:  slices.Clone(Schedulers),
		Flags:       []string{"mh-fallback", "mh-port", "ops", "sh-fallback", "sh-port"},
		Forwards:    []string{"nat", "dr", "tun"},
		Persistence: true,
		Fwmark:      true,
		Thresholds:  true,
	}
}

// Capabilities is the package's Capabilities with the schedulers this
// kernel has, asked of the kernel once (see probeSchedulers). If it
// cannot be asked, every scheduler is listed, as before, and a missing
// one fails when used with the module to load named.
func (b *Backend) Capabilities() dataplane.Capabilities {
	c := Capabilities()
	if have, err := kernelSchedulers(); err == nil {
		c.Schedulers = have
	}
	return c
}

var kernelSchedulers = sync.OnceValues(probeSchedulers)

// probeSchedulers returns the schedulers of Schedulers the kernel has, by
// asking it to create one service with each in a network namespace made
// for the purpose: a scheduler whose module the kernel lacks fails with
// ENOENT, one not loaded yet is loaded (as ipvsadm would load it). No
// namespace anyone uses is touched, and the namespace goes with the
// thread that made it.
func probeSchedulers() ([]string, error) {
	type result struct {
		have []string
		err  error
	}
	done := make(chan result, 1)
	go func() {
		// Never unlocked: the thread, in its own namespace, ends with
		// this goroutine.
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			done <- result{err: err}
			return
		}
		h, err := moby.New("")
		if err != nil {
			done <- result{err: err}
			return
		}
		defer h.Close()
		var have []string
		for i, name := range Schedulers {
			svc := &moby.Service{AddressFamily: syscall.AF_INET, Protocol: protoTCP, Address: net.IPv4(192, 0, 2, 1).To4(),
				Port: uint16(1 + i), SchedName: name, Netmask: 0xffffffff}
			switch err := h.NewService(svc); {
			case err == nil:
				have = append(have, name)
			case !errors.Is(err, syscall.ENOENT):
				done <- result{err: err}
				return
			}
		}
		done <- result{have: have}
	}()
	r := <-done
	return r.have, r.err
}
