package nemesis

import (
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/raftlb/raftlb/dataplane/fence"
)

// Holders is who held the VIPs at one sample.
type Holders struct {
	At      time.Time
	VIP     []string // directors holding the service VIP
	Gateway []string // directors holding the gateway VIP
}

func (h Holders) String() string {
	return fmt.Sprintf("vip %v gateway %v", h.VIP, h.Gateway)
}

// Dual is one sample with two holders.
type Dual struct {
	At     time.Time
	Kind   string   // "addr" (the address checker) or "arp" (the ARP checker)
	Who    []string // the holders (director names, or MACs the lab does not know)
	Detail string
}

func (d Dual) String() string {
	return fmt.Sprintf("%s %s %v %s", d.At.Format("15:04:05.000"), d.Kind, d.Who, d.Detail)
}

// Checker samples, every interval, every director's addresses (netlink,
// in its namespace) and, for raftlb, its kernel fence (the leased set of
// table inet raftlb_fence, read with google/nftables in its namespace). A
// director holds a VIP when the address is configured on one of its
// interfaces and, when the checker is fenced, the fence gives that VIP a
// live lease element: a frozen or killed raftlb keeps its address, but its
// kernel no longer answers ARP or accepts traffic for it once the lease
// has run out. keepalived has no fence, so there the address alone is
// holding (its kernel answers for the address). A sample with two holders
// of one VIP is recorded as a Dual. The reads of one sweep take a
// millisecond or two; when they were more than maxSpread apart (the
// checker was descheduled between them) two holders count only if an
// immediate re-read of both confirms them, else the sweep is kept as
// inconclusive.
type Checker struct {
	fenced   bool
	interval time.Duration
	dirs     []*dirReader

	mu      sync.Mutex
	cur     Holders
	changes []Holders
	duals   []Dual
	// inconclusive are two-holder sweeps whose reads were more than
	// maxSpread apart and that a re-read did not confirm.
	inconclusive []Dual
	samples      int
	readErrs     int
	lastErr      error
	maxSweep     time.Duration

	stop chan struct{}
	done chan struct{}
}

type dirReader struct {
	name string
	ns   netns.NsHandle
	nl   *netlink.Handle
	nft  *nftables.Conn
}

var (
	vipIP     = net.ParseIP(VIP).To4()
	gatewayIP = net.ParseIP(GatewayVIP).To4()
	// leasedSet is the fence's set of VIPs with a live lease (see
	// dataplane/fence/layout.go; the arp table's twin is written in the
	// same transaction).
	leasedSet = &nftables.Set{
		Table:   &nftables.Table{Name: fence.TableName, Family: nftables.TableFamilyINet},
		Name:    "leased4",
		KeyType: nftables.TypeIPAddr,
	}
)

// StartChecker starts sampling the lab's directors.
func StartChecker(l *Lab, fenced bool, interval time.Duration) (*Checker, error) {
	c := &Checker{fenced: fenced, interval: interval, stop: make(chan struct{}), done: make(chan struct{})}
	for _, d := range l.Directors {
		r := &dirReader{name: d.Name}
		c.dirs = append(c.dirs, r)
		var err error
		if r.ns, err = netns.GetFromName(d.NS); err != nil {
			c.close()
			return nil, fmt.Errorf("checker: netns %s: %w", d.NS, err)
		}
		if r.nl, err = netlink.NewHandleAt(r.ns); err != nil {
			c.close()
			return nil, fmt.Errorf("checker: netlink in %s: %w", d.NS, err)
		}
		if fenced {
			if err := r.connectNft(); err != nil {
				c.close()
				return nil, err
			}
		}
	}
	go c.run()
	return c, nil
}

func (r *dirReader) connectNft() error {
	conn, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(int(r.ns)))
	if err != nil {
		return fmt.Errorf("checker: nftables in %s: %w", r.name, err)
	}
	r.nft = conn
	return nil
}

func (c *Checker) close() {
	for _, r := range c.dirs {
		if r.nft != nil {
			_ = r.nft.CloseLasting()
		}
		if r.nl != nil {
			r.nl.Close()
		}
		if r.ns.IsOpen() {
			r.ns.Close()
		}
	}
}

// Stop ends sampling.
func (c *Checker) Stop() {
	select {
	case <-c.stop:
	default:
		close(c.stop)
	}
	<-c.done
}

func (c *Checker) run() {
	defer close(c.done)
	defer c.close()
	t := time.NewTicker(c.interval)
	defer t.Stop()
	for {
		c.sweep()
		select {
		case <-c.stop:
			return
		case <-t.C:
		}
	}
}

// maxSpread is the longest a sweep may take for its two holders to
// count as simultaneous without a re-read.
const maxSpread = 5 * time.Millisecond

// sweep reads every director once.
func (c *Checker) sweep() {
	start := time.Now()
	h, details, errs := c.read(c.dirs)
	spread := h.At.Sub(start)
	dual := len(h.VIP) > 1 || len(h.Gateway) > 1
	confirm := ""
	if dual && len(errs) == 0 && spread > maxSpread {
		// The reads were far apart (the checker was descheduled between
		// them): one holder may have let go before the other took over.
		// Read the holders again, at once.
		var again []*dirReader
		for _, r := range c.dirs {
			if slices.Contains(h.VIP, r.name) || slices.Contains(h.Gateway, r.name) {
				again = append(again, r)
			}
		}
		s2 := time.Now()
		h2, details2, errs2 := c.read(again)
		if len(errs2) > 0 || (len(h2.VIP) < 2 && len(h2.Gateway) < 2) || h2.At.Sub(s2) > maxSpread {
			c.mu.Lock()
			c.inconclusive = append(c.inconclusive, Dual{At: h.At, Kind: "addr", Who: h.VIP,
				Detail: fmt.Sprintf("%s over a %v sweep (%s); re-read in %v: %s (%s)", h, spread.Round(time.Microsecond),
					strings.Join(details, "; "), h2.At.Sub(s2).Round(time.Microsecond), h2, strings.Join(details2, "; "))})
			c.mu.Unlock()
			dual = false
		} else {
			confirm = fmt.Sprintf("; confirmed by a re-read in %v: %s", h2.At.Sub(s2).Round(time.Microsecond), strings.Join(details2, "; "))
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.samples++
	c.maxSweep = max(c.maxSweep, spread)
	if len(errs) > 0 {
		c.readErrs += len(errs)
		c.lastErr = errs[0]
		return // an incomplete sample decides nothing
	}
	if dual {
		who := h.VIP
		if len(who) < 2 {
			who = h.Gateway
		}
		c.duals = append(c.duals, Dual{At: h.At, Kind: "addr", Who: who,
			Detail: fmt.Sprintf("%s (sweep %v; %s%s)", h, spread.Round(time.Microsecond), strings.Join(details, "; "), confirm)})
	}
	if len(c.changes) == 0 || !slices.Equal(h.VIP, c.cur.VIP) || !slices.Equal(h.Gateway, c.cur.Gateway) {
		c.changes = append(c.changes, h)
	}
	c.cur = h
}

// read reads the given directors once.
func (c *Checker) read(dirs []*dirReader) (h Holders, details []string, errs []error) {
	for _, r := range dirs {
		vip, gw, detail, err := r.read(c.fenced)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if vip {
			h.VIP = append(h.VIP, r.name)
		}
		if gw {
			h.Gateway = append(h.Gateway, r.name)
		}
		if vip || gw {
			details = append(details, r.name+": "+detail)
		}
	}
	h.At = time.Now()
	return h, details, errs
}

// read reports whether this director holds the service VIP and the
// gateway VIP.
func (r *dirReader) read(fenced bool) (vip, gw bool, detail string, err error) {
	addrs, err := r.nl.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return false, false, "", fmt.Errorf("%s: addresses: %w", r.name, err)
	}
	for _, a := range addrs {
		vip = vip || a.IP.Equal(vipIP)
		gw = gw || a.IP.Equal(gatewayIP)
	}
	if !fenced || (!vip && !gw) {
		return vip, gw, "address", nil
	}
	elems, err := r.nft.GetSetElements(leasedSet)
	if err != nil {
		// No fence table yet (the agent has not started) is no lease;
		// the socket is replaced after any error.
		_ = r.nft.CloseLasting()
		if cerr := r.connectNft(); cerr != nil {
			return false, false, "", cerr
		}
		if strings.Contains(err.Error(), "no such file") {
			return false, false, "address, no fence", nil
		}
		return false, false, "", fmt.Errorf("%s: fence: %w", r.name, err)
	}
	var leaseVIP, leaseGW time.Duration = -1, -1
	for _, e := range elems {
		live := e.Timeout == 0 || e.Expires > 0
		if !live {
			continue
		}
		left := e.Expires
		if e.Timeout == 0 {
			left = time.Hour
		}
		switch {
		case net.IP(e.Key).Equal(vipIP):
			leaseVIP = left
		case net.IP(e.Key).Equal(gatewayIP):
			leaseGW = left
		}
	}
	detail = fmt.Sprintf("address, lease vip %v gateway %v", leaseVIP, leaseGW)
	return vip && leaseVIP >= 0, gw && leaseGW >= 0, detail, nil
}

// Current is the last complete sample.
func (c *Checker) Current() Holders {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cur
}

// Changes returns the samples at which the holders changed in [from, to],
// preceded by the state in force at from.
func (c *Checker) Changes(from, to time.Time) []Holders {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Holders
	for i, h := range c.changes {
		if h.At.After(to) {
			break
		}
		if h.At.Before(from) {
			if i+1 == len(c.changes) || c.changes[i+1].At.After(from) {
				out = append(out, h)
			}
			continue
		}
		out = append(out, h)
	}
	return out
}

// Duals returns the dual-holder samples in [from, to].
func (c *Checker) Duals(from, to time.Time) []Dual {
	c.mu.Lock()
	defer c.mu.Unlock()
	return within(c.duals, from, to)
}

func within(ds []Dual, from, to time.Time) []Dual {
	var out []Dual
	for _, d := range ds {
		if !d.At.Before(from) && !d.At.After(to) {
			out = append(out, d)
		}
	}
	return out
}

// Inconclusive returns the two-holder sweeps that were too slow to count
// and that an immediate re-read did not confirm, in [from, to].
func (c *Checker) Inconclusive(from, to time.Time) []Dual {
	c.mu.Lock()
	defer c.mu.Unlock()
	return within(c.inconclusive, from, to)
}

// Stats returns the number of sweeps, of failed reads (with the last
// error) and the longest sweep.
func (c *Checker) Stats() (samples, readErrs int, lastErr error, maxSweep time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.samples, c.readErrs, c.lastErr, c.maxSweep
}

// Forget drops the history before t, keeping the state in force at t.
func (c *Checker) Forget(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	i := 0
	for i+1 < len(c.changes) && !c.changes[i+1].At.After(t) {
		i++
	}
	c.changes = append([]Holders(nil), c.changes[i:]...)
	var keep []Dual
	for _, d := range c.duals {
		if !d.At.Before(t) {
			keep = append(keep, d)
		}
	}
	c.duals = keep
	var inc []Dual
	for _, d := range c.inconclusive {
		if !d.At.Before(t) {
			inc = append(inc, d)
		}
	}
	c.inconclusive = inc
}
