package vip

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// FakeLinks is Links over a map, for tests of the Manager and of its
// users (the agent's lease loop). With cascade, removing an IPv4 address
// that is the first (primary) of its subnet on an interface also removes
// the later ones, as Linux does without promote_secondaries.
type FakeLinks struct {
	mu      sync.Mutex
	addrs   []Addr // in insertion order
	ifaces  map[string]bool
	cascade bool
	failAdd map[string]error // by interface
	failDel error
	failDmp error
	calls   []string
}

// NewFakeLinks returns FakeLinks with the given interfaces.
func NewFakeLinks(ifaces ...string) *FakeLinks {
	f := &FakeLinks{ifaces: map[string]bool{}, failAdd: map[string]error{}}
	for _, i := range ifaces {
		f.ifaces[i] = true
	}
	return f
}

func (f *FakeLinks) find(ifname string, p netip.Prefix) int {
	return slices.IndexFunc(f.addrs, func(a Addr) bool { return a.Interface == ifname && a.Prefix == p })
}

func (f *FakeLinks) AddAddr(ifname string, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "add "+p.String()+" "+ifname)
	if err := f.failAdd[ifname]; err != nil {
		return err
	}
	if !f.ifaces[ifname] {
		return fmt.Errorf("link %s: Link not found", ifname)
	}
	if f.find(ifname, p) < 0 {
		f.addrs = append(f.addrs, Addr{Interface: ifname, Prefix: p, Marked: true})
	}
	return nil
}

func (f *FakeLinks) DelAddr(ifname string, p netip.Prefix) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, "del "+p.String()+" "+ifname)
	if f.failDel != nil {
		return f.failDel
	}
	i := f.find(ifname, p)
	if i < 0 {
		return nil
	}
	primary := p.Addr().Is4() && slices.IndexFunc(f.addrs, func(a Addr) bool {
		return a.Interface == ifname && a.Prefix.Masked() == p.Masked()
	}) == i
	f.addrs = slices.Delete(f.addrs, i, i+1)
	if f.cascade && primary {
		f.addrs = slices.DeleteFunc(f.addrs, func(a Addr) bool {
			return a.Interface == ifname && a.Prefix.Masked() == p.Masked()
		})
	}
	return nil
}

func (f *FakeLinks) Addrs() ([]Addr, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failDmp != nil {
		return nil, f.failDmp
	}
	return slices.Clone(f.addrs), nil
}

type announcement struct {
	at     time.Time
	ifname string
	addr   netip.Addr
}

// FakeAnnouncer is an Announcer that records what it sends.
type FakeAnnouncer struct {
	mu   sync.Mutex
	sent []announcement
	fail map[netip.Addr]error
}

// NewFakeAnnouncer returns an Announcer that records what it sends.
func NewFakeAnnouncer() *FakeAnnouncer { return &FakeAnnouncer{fail: map[netip.Addr]error{}} }

func (f *FakeAnnouncer) Announce(ifname string, addr netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.fail[addr]; err != nil {
		return err
	}
	f.sent = append(f.sent, announcement{time.Now(), ifname, addr})
	return nil
}

// Held lists the addresses on the fake interfaces, "prefix ifname" sorted.
func (f *FakeLinks) Held() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, a := range f.addrs {
		out = append(out, a.Prefix.String()+" "+a.Interface)
	}
	slices.Sort(out)
	return out
}

// Count is how many announcements were sent for addr.
func (f *FakeAnnouncer) Count(addr netip.Addr) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, a := range f.sent {
		if a.addr == addr {
			n++
		}
	}
	return n
}
