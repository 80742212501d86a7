package fence

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// Interface is the kernel fence as the lease loop uses it; *Fence is the
// real one (nftables), Fake a recording twin for tests that run the loop
// without netlink.
type Interface interface {
	// SetVIPs declares the VIPs under the fence and their interfaces.
	SetVIPs(addrs []netip.Addr, ifaces []string) error
	// Guarded says nil if ifname's announcements are guarded.
	Guarded(ifname string) error
	// Renew leases exactly addrs for d (all declared), revoking the rest.
	Renew(addrs []netip.Addr, d time.Duration) error
	// Revoke ends every lease.
	Revoke() error
	// Close releases the handle and leaves the fence in the kernel.
	Close() error
}

var _ Interface = (*Fence)(nil)

// Fake is an Interface over memory with a clock for the leases; Fail
// makes its calls fail. Safe for concurrent use.
type Fake struct {
	mu     sync.Mutex
	now    func() time.Time
	vips   map[netip.Addr]bool
	ifaces map[string]bool
	until  map[netip.Addr]time.Time

	failSetVIPs, failRenew error
}

// NewFake returns a Fake whose leases run on now (nil: time.Now).
func NewFake(now func() time.Time) *Fake {
	if now == nil {
		now = time.Now
	}
	return &Fake{now: now, vips: map[netip.Addr]bool{}, ifaces: map[string]bool{}, until: map[netip.Addr]time.Time{}}
}

func (f *Fake) SetVIPs(addrs []netip.Addr, ifaces []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failSetVIPs != nil {
		return f.failSetVIPs
	}
	f.vips, f.ifaces = map[netip.Addr]bool{}, map[string]bool{}
	for _, a := range addrs {
		f.vips[a] = true
	}
	for _, i := range ifaces {
		f.ifaces[i] = true
	}
	for a := range f.until {
		if !f.vips[a] {
			delete(f.until, a)
		}
	}
	return nil
}

func (f *Fake) Guarded(ifname string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ifaces[ifname] {
		return fmt.Errorf("fence: interface %s carries no declared VIP", ifname)
	}
	return nil
}

func (f *Fake) Renew(addrs []netip.Addr, d time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failRenew != nil {
		return f.failRenew
	}
	if d < time.Millisecond || d > MaxLease {
		return fmt.Errorf("fence: lease %v out of range", d)
	}
	for _, a := range addrs {
		if !f.vips[a] {
			return fmt.Errorf("fence: renew VIP %s: not a fenced VIP", a)
		}
	}
	f.until = map[netip.Addr]time.Time{}
	for _, a := range addrs {
		f.until[a] = f.now().Add(d.Truncate(time.Millisecond))
	}
	return nil
}

func (f *Fake) Revoke() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.until = map[netip.Addr]time.Time{}
	return nil
}

func (f *Fake) Close() error { return nil }

// Leased reports the addresses whose lease is live now, sorted.
func (f *Fake) Leased() []netip.Addr {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []netip.Addr
	for a, u := range f.until {
		if f.now().Before(u) {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out
}

// Fail sets the error the next SetVIPs or Renew returns (nil clears it).
func (f *Fake) Fail(setVIPs, renew error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failSetVIPs, f.failRenew = setVIPs, renew
}
