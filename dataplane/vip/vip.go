// Package vip holds raftlb's virtual IP addresses on the director that
// should hold them, and announces them on the LAN.
//
// A Manager (one per director, one per network namespace) is told which
// VIPs this director must hold right now: the raft leader passes all of
// them, a follower none. It adds the missing addresses, removes the ones no
// longer wanted, and announces every VIP it takes with a burst of gratuitous
// ARPs (IPv4) or unsolicited Neighbour Advertisements (IPv6), then again
// periodically, because switches age their MAC tables long before hosts
// forget their neighbour entries (MetalLB #2910).
//
// The kernel is reached through two small seams, Links (addresses) and
// Announcer (frames), so the logic is tested with fakes; Netlink and
// PacketAnnouncer are the real implementations (rtnetlink and AF_PACKET,
// optionally in another network namespace).
//
// # Which addresses are raftlb's
//
// Netlink marks every address it adds with an address protocol (IFA_PROTO,
// Linux 6.1+; DefaultAddrProto), the way routing daemons mark their routes
// with rtm_protocol. It works for IPv4 and IPv6 alike and survives a restart
// of raftlb. An address label ("eth0:rlb") was rejected: labels exist only
// for IPv4, must start with the interface name and fit IFNAMSIZ (15 bytes),
// and old ifconfig-style tools treat them as aliases. A state file was
// rejected too: it is stale after a reboot or a manual change.
//
// The Manager removes an address only if
//   - it carries raftlb's mark (raftlb added it, in this run or an earlier one), or
//   - this Manager took it as a VIP in this run (Set found it already present), or
//   - in RemoveUnowned, it is a VIP of the replicated state on that VIP's interface.
//
// It never removes another address, so an operator's address, or a VIP kept
// on lo for direct routing, stays. On kernels before 6.1 the mark is not
// stored; then an address raftlb added in an earlier run is recognised only
// if it is still a VIP in the state (RemoveUnowned).
package vip

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/raftlb/raftlb/model"
)

// Links is the address side of the kernel. Implementations must be safe
// for use by one goroutine at a time (the Manager serialises its calls).
type Links interface {
	// AddAddr adds p to interface ifname, marked as raftlb's. An IPv6
	// address is added without duplicate address detection. The exact
	// address being present already is not an error.
	AddAddr(ifname string, p netip.Prefix) error
	// DelAddr removes p from ifname. The address being absent is not an
	// error.
	DelAddr(ifname string, p netip.Prefix) error
	// Addrs lists the IPv4 and IPv6 addresses of every interface.
	Addrs() ([]Addr, error)
}

// Addr is an address on an interface.
type Addr struct {
	Interface string
	Prefix    netip.Prefix // the address with its prefix length, e.g. 192.0.2.10/24
	Marked    bool         // carries raftlb's mark: raftlb added it
}

// Announcer tells the LAN where an address is.
type Announcer interface {
	// Announce sends one announcement (gratuitous ARP for IPv4, unsolicited
	// Neighbour Advertisement for IPv6) for addr out of ifname, from
	// ifname's hardware address. It returns an error wrapping
	// ErrNotAnnounceable if ifname has no link layer to announce on
	// (loopback, NOARP, point-to-point); the Manager then stops announcing
	// that VIP without counting a failure.
	Announce(ifname string, addr netip.Addr) error
}

// ErrNotAnnounceable says an interface has no link layer to announce on.
var ErrNotAnnounceable = errors.New("interface cannot announce addresses")

// ErrClosed is returned by Set when asked to hold VIPs after Close.
var ErrClosed = errors.New("vip: manager closed")

// Defaults.
const (
	DefaultBurstCount    = 5                      // keepalived's vrrp_garp_master_repeat
	DefaultBurstInterval = 100 * time.Millisecond // keepalived sends its 5 back to back
	DefaultRefresh       = 10 * time.Second
)

// Options configure a Manager. Zero values take the defaults; negative
// values disable (the convention of dataplane.Options).
type Options struct {
	Log *slog.Logger
	// BurstCount is the number of announcements sent for a VIP when this
	// director takes it, the first at once, inside Set (default 5;
	// negative: none).
	BurstCount int
	// BurstInterval separates the announcements of a burst (default
	// 100 ms; negative: back to back, like keepalived).
	BurstInterval time.Duration
	// Refresh is the period of the pass that re-adds held VIPs removed
	// behind raftlb's back and announces every held VIP once more (default
	// 10 s; negative disables both).
	Refresh time.Duration
	// MayAnnounce, if set, is asked right before every announcement of
	// addr on ifname; when it says no, the announcement is skipped
	// (counted as gated). The agent answers from the VIP lease, read with
	// a fresh clock (a daemon woken from SIGSTOP fires its pending
	// announcement timers before anything else runs), and from the kernel
	// fence, whose egress chain on ifname must be in place: it drops the
	// frame if the daemon freezes between this check and the send.
	MayAnnounce func(ifname string, addr netip.Addr) bool
}

func (o *Options) setDefaults() {
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	switch {
	case o.BurstCount == 0:
		o.BurstCount = DefaultBurstCount
	case o.BurstCount < 0:
		o.BurstCount = 0
	}
	switch {
	case o.BurstInterval == 0:
		o.BurstInterval = DefaultBurstInterval
	case o.BurstInterval < 0:
		o.BurstInterval = 0
	}
	switch {
	case o.Refresh == 0:
		o.Refresh = DefaultRefresh
	case o.Refresh < 0:
		o.Refresh = 0
	}
}

// Error is a failed operation on one VIP.
type Error struct {
	Op        string       // add | remove | announce | parse
	Interface string       // "" if unknown
	VIP       netip.Prefix // invalid for parse errors
	Raw       string       // the VIP as given, for parse errors
	Err       error
}

func (e *Error) Error() string {
	what := strconv.Quote(e.Raw)
	if e.VIP.IsValid() {
		what = e.VIP.String()
	}
	if e.Interface != "" {
		return fmt.Sprintf("vip: %s %s on %s: %v", e.Op, what, e.Interface, e.Err)
	}
	return fmt.Sprintf("vip: %s %s: %v", e.Op, what, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Stats are a Manager's counters.
type Stats struct {
	Held            int       `json:"held"`             // VIPs held now
	Added           uint64    `json:"added"`            // addresses added
	Removed         uint64    `json:"removed"`          // addresses removed
	AddrErrors      uint64    `json:"addr_errors"`      // failed adds, removes and kernel reads
	Announced       uint64    `json:"announced"`        // announcements sent
	AnnounceErrors  uint64    `json:"announce_errors"`  // announcements that failed
	AnnounceSkipped uint64    `json:"announce_skipped"` // VIPs on interfaces that cannot announce
	AnnounceGated   uint64    `json:"announce_gated"`   // announcements withheld by MayAnnounce
	Repaired        uint64    `json:"repaired"`         // held VIPs re-added by the refresh pass
	LastError       string    `json:"last_error,omitempty"`
	LastErrorAt     time.Time `json:"last_error_at,omitzero"`
}

// key identifies an address on an interface.
type key struct {
	ifname string
	prefix netip.Prefix
}

func (k key) String() string { return k.prefix.String() + " on " + k.ifname }

// held is a VIP this Manager holds.
type held struct {
	vip       model.VIP
	burstLeft int       // announcements still due in the burst
	next      time.Time // when the next one of the burst is due
	quiet     bool      // the interface cannot announce: don't try again
}

// Manager holds a director's VIPs. All methods are safe for concurrent use.
type Manager struct {
	links Links
	ann   Announcer
	opts  Options
	log   *slog.Logger

	mu          sync.Mutex
	desired     map[key]model.VIP // from the last Set
	held        map[key]*held
	nextRefresh time.Time // zero: none scheduled
	stats       Stats
	closed      bool

	kick chan struct{}
	done chan struct{}
	wg   sync.WaitGroup
}

// New returns a Manager holding nothing, with its refresh goroutine
// running; Close stops it. New does not read or change the kernel: call
// RemoveUnowned at start.
func New(links Links, ann Announcer, opts Options) *Manager {
	opts.setDefaults()
	m := &Manager{
		links: links, ann: ann, opts: opts, log: opts.Log,
		desired: map[key]model.VIP{}, held: map[key]*held{},
		kick: make(chan struct{}, 1), done: make(chan struct{}),
	}
	m.wg.Add(1)
	go m.loop()
	return m
}

// Close stops the refresh goroutine and waits for it. It leaves the
// addresses alone: call ReleaseAll (before or after) to drop them.
// Idempotent.
func (m *Manager) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.done)
	m.mu.Unlock()
	m.wg.Wait()
	return nil
}

// parseVIPs turns VIPs into keys; invalid ones become errors.
func parseVIPs(vips []model.VIP) (map[key]model.VIP, []error) {
	out := make(map[key]model.VIP, len(vips))
	var errs []error
	for _, v := range vips {
		p, err := ParsePrefix(v.Address)
		if err == nil && v.Interface == "" {
			err = errors.New("no interface")
		}
		if err != nil {
			errs = append(errs, &Error{Op: "parse", Interface: v.Interface, Raw: v.Address, Err: err})
			continue
		}
		out[key{v.Interface, p}] = v
	}
	return out, errs
}

// ParsePrefix parses a VIP address, "addr/len" or a bare address (a host
// prefix), keeping the address bits.
func ParsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	var err error
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(s); err == nil {
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Addr().Is4In6() || p.Addr().IsUnspecified() || p.Addr().IsMulticast() {
		return netip.Prefix{}, fmt.Errorf("%s is not a unicast address", s)
	}
	return p, nil
}

// Set makes this director hold exactly vips: it adds the missing
// addresses, removes raftlb's addresses that are not in vips, and announces
// each VIP it takes (the first announcement before Set returns, the rest of
// the burst from the Manager's goroutine). A VIP that could not be added is
// retried by the next Set and by the refresh pass. Once Set returns, no
// announcement is sent for a VIP it released. Errors name the interface and
// VIP; the other VIPs are handled regardless. After Close, Set can only
// release (vips empty); otherwise it returns ErrClosed.
func (m *Manager) Set(vips []model.VIP) error {
	want, errs := parseVIPs(vips)
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed && len(vips) > 0 {
		return ErrClosed
	}
	m.desired = want
	errs = append(errs, m.reconcile()...)
	m.kickLoop()
	return m.fail(errs)
}

// ReleaseAll drops every VIP this Manager holds and every address raftlb
// marked: Set(nil). It works after Close too.
func (m *Manager) ReleaseAll() error { return m.Set(nil) }

// Owned returns the VIPs held now, sorted by address.
func (m *Manager) Owned() []model.VIP {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]model.VIP, 0, len(m.held))
	for _, h := range m.held {
		out = append(out, h.vip)
	}
	slices.SortFunc(out, func(a, b model.VIP) int {
		if c := strings.Compare(a.Address, b.Address); c != 0 {
			return c
		}
		return strings.Compare(a.Interface, b.Interface)
	})
	return out
}

// Stats returns a copy of the counters.
func (m *Manager) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.stats
	s.Held = len(m.held)
	return s
}

// RemoveUnowned removes from the kernel every address that this Manager
// does not hold and that either carries raftlb's mark or is one of vips
// (the VIPs of the replicated state) on that VIP's interface, whatever its
// prefix length. Call it at start with all VIPs of the state, before the
// first Set: a director that restarts must not keep VIPs it held before.
//
// A VIP must therefore never be a director's own address: RemoveUnowned
// (and Set, when releasing a VIP it found present) would remove it.
// Validation of the state should reject such VIPs.
func (m *Manager) RemoveUnowned(vips []model.VIP) error {
	state, errs := parseVIPs(vips)
	stateAddr := map[string]map[netip.Addr]bool{} // interface -> VIP addresses
	for k := range state {
		if stateAddr[k.ifname] == nil {
			stateAddr[k.ifname] = map[netip.Addr]bool{}
		}
		stateAddr[k.ifname][k.prefix.Addr()] = true
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	addrs, err := m.links.Addrs()
	if err != nil {
		m.stats.AddrErrors++
		return m.fail(append(errs, fmt.Errorf("vip: read addresses: %w", err)))
	}
	for _, a := range addrs {
		k := key{a.Interface, a.Prefix}
		if _, want := m.desired[k]; want || m.held[k] != nil {
			continue
		}
		if a.Marked || stateAddr[a.Interface][a.Prefix.Addr()] {
			if err := m.remove(k, "unowned"); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return m.fail(errs)
}

// fail records errs and returns them joined.
func (m *Manager) fail(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	err := errors.Join(errs...)
	m.stats.LastError = err.Error()
	m.stats.LastErrorAt = time.Now()
	return err
}

func (m *Manager) remove(k key, why string) error {
	if err := m.links.DelAddr(k.ifname, k.prefix); err != nil {
		m.stats.AddrErrors++
		return &Error{Op: "remove", Interface: k.ifname, VIP: k.prefix, Err: err}
	}
	m.stats.Removed++
	m.log.Info("vip removed", "vip", k.prefix.String(), "interface", k.ifname, "reason", why)
	return nil
}

// reconcile makes the kernel and m.held match m.desired. Called with m.mu
// held.
func (m *Manager) reconcile() []error {
	var errs []error
	present, err := m.present()
	if err != nil {
		errs = append(errs, err)
	}
	// Release first: from here on no announcement is sent for these.
	gone := map[key]bool{}
	for k := range m.held {
		if _, ok := m.desired[k]; ok {
			continue
		}
		delete(m.held, k)
		if present == nil || present[k] != nil {
			if err := m.remove(k, "released"); err != nil {
				errs = append(errs, err)
			}
			gone[k] = true
		}
	}
	for k, a := range present {
		if _, ok := m.desired[k]; !ok && a.Marked && !gone[k] {
			if err := m.remove(k, "marked by raftlb, not wanted"); err != nil {
				errs = append(errs, err)
			}
			gone[k] = true
		}
	}
	if len(gone) > 0 && present != nil {
		// Removing an IPv4 primary address removes its secondaries too
		// unless promote_secondaries is set: look again before adding.
		if p, err := m.present(); err == nil {
			present = p
		}
	}
	now := time.Now()
	var newly []key
	for k, v := range m.desired {
		h := m.held[k]
		if present != nil && present[k] != nil {
			if h == nil {
				newly = append(newly, k)
			}
		} else if h == nil || present != nil {
			// Missing: not held yet, or held but gone from the kernel.
			if err := m.links.AddAddr(k.ifname, k.prefix); err != nil {
				m.stats.AddrErrors++
				errs = append(errs, &Error{Op: "add", Interface: k.ifname, VIP: k.prefix, Err: err})
				if h != nil {
					delete(m.held, k)
				}
				continue
			}
			m.stats.Added++
			if h != nil {
				m.stats.Repaired++
				m.log.Warn("vip re-added: it had gone from the kernel", "vip", k.prefix.String(), "interface", k.ifname)
				delete(m.held, k)
			} else {
				m.log.Info("vip added", "vip", k.prefix.String(), "interface", k.ifname)
			}
			newly = append(newly, k)
		}
		if h := m.held[k]; h != nil {
			h.vip = v
		}
	}
	slices.SortFunc(newly, func(a, b key) int { return strings.Compare(a.String(), b.String()) })
	for _, k := range newly {
		h := &held{vip: m.desired[k], burstLeft: m.opts.BurstCount, next: now}
		m.held[k] = h
		if h.burstLeft > 0 {
			m.announce(k, h)
			if h.burstLeft > 0 { // announce may have stopped the burst
				h.burstLeft--
			}
			h.next = now.Add(m.opts.BurstInterval)
		}
	}
	// The refresh pass runs while VIPs are wanted: it also retries those
	// that could not be added.
	if len(m.desired) > 0 && m.opts.Refresh > 0 && m.nextRefresh.IsZero() {
		m.nextRefresh = now.Add(m.opts.Refresh)
	}
	if len(m.desired) == 0 {
		m.nextRefresh = time.Time{}
	}
	return errs
}

// present reads the kernel's addresses. On error it returns nil and the
// callers trust m.held.
func (m *Manager) present() (map[key]*Addr, error) {
	addrs, err := m.links.Addrs()
	if err != nil {
		m.stats.AddrErrors++
		return nil, fmt.Errorf("vip: read addresses: %w", err)
	}
	out := make(map[key]*Addr, len(addrs))
	for i := range addrs {
		a := &addrs[i]
		out[key{a.Interface, a.Prefix}] = a
	}
	return out, nil
}

// announce sends one announcement for h. Called with m.mu held, so that a
// VIP released by Set is never announced afterwards.
func (m *Manager) announce(k key, h *held) {
	if h.quiet {
		return
	}
	if m.opts.MayAnnounce != nil && !m.opts.MayAnnounce(k.ifname, k.prefix.Addr()) {
		m.stats.AnnounceGated++
		return
	}
	err := m.ann.Announce(k.ifname, k.prefix.Addr())
	switch {
	case err == nil:
		m.stats.Announced++
	case errors.Is(err, ErrNotAnnounceable):
		m.stats.AnnounceSkipped++
		h.quiet = true
		h.burstLeft = 0
		m.log.Info("vip not announced", "vip", k.prefix.String(), "interface", k.ifname, "reason", err)
	default:
		m.stats.AnnounceErrors++
		e := &Error{Op: "announce", Interface: k.ifname, VIP: k.prefix, Err: err}
		m.stats.LastError = e.Error()
		m.stats.LastErrorAt = time.Now()
		m.log.Warn("vip announcement failed", "vip", k.prefix.String(), "interface", k.ifname, "err", err)
	}
}

func (m *Manager) kickLoop() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// loop sends the rest of the bursts and runs the refresh pass. It is the
// Manager's only goroutine.
func (m *Manager) loop() {
	defer m.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait, ok := m.tick()
		if ok {
			timer.Reset(wait)
		} else {
			timer.Stop()
		}
		select {
		case <-m.done:
			return
		case <-m.kick:
		case <-timer.C:
		}
	}
}

// tick does what is due and returns how long to wait for the next thing
// (ok false: nothing scheduled).
func (m *Manager) tick() (wait time.Duration, ok bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return 0, false
	}
	now := time.Now()
	if !m.nextRefresh.IsZero() && !now.Before(m.nextRefresh) {
		m.nextRefresh = time.Time{}
		if errs := m.reconcile(); len(errs) > 0 {
			err := m.fail(errs)
			m.log.Warn("vip refresh", "err", err)
		}
		keys := make([]key, 0, len(m.held))
		for k, h := range m.held {
			if h.burstLeft == 0 {
				keys = append(keys, k)
			}
		}
		slices.SortFunc(keys, func(a, b key) int { return strings.Compare(a.String(), b.String()) })
		for _, k := range keys {
			m.announce(k, m.held[k])
		}
		if len(m.desired) > 0 && m.opts.Refresh > 0 {
			m.nextRefresh = now.Add(m.opts.Refresh)
		}
	}
	var next time.Time
	for k, h := range m.held {
		if h.burstLeft > 0 && !now.Before(h.next) {
			m.announce(k, h)
			if h.burstLeft > 0 { // announce may have stopped the burst
				h.burstLeft--
			}
			h.next = now.Add(m.opts.BurstInterval)
		}
		if h.burstLeft > 0 && (next.IsZero() || h.next.Before(next)) {
			next = h.next
		}
	}
	if !m.nextRefresh.IsZero() && (next.IsZero() || m.nextRefresh.Before(next)) {
		next = m.nextRefresh
	}
	if next.IsZero() {
		return 0, false
	}
	return max(0, next.Sub(now)), true
}
