// Package fence makes the kernel itself withdraw a VIP from a director
// whose raftlb daemon stops renewing its lease: it stops answering ARP (and
// IPv6 neighbour discovery) for the VIP and drops traffic to it, although
// the address is still configured. It backs the rule that at no instant may
// two directors hold a VIP, also when a daemon is SIGKILLed or frozen
// (SIGSTOP), because then nothing in user space is left to remove the
// address.
//
// # Mechanism
//
// The fence is three nftables tables, all named raftlb_fence, owned by
// raftlb and touched by nothing else:
//
//	table arp raftlb_fence {
//		set vips4   { type ipv4_addr; }                 # every VIP raftlb manages
//		set leased4 { type ipv4_addr; flags timeout; }  # VIPs with a live lease
//		chain arp_in  { type filter hook input  priority 0; policy accept;
//			arp htype 1 ptype ip hlen 6 plen 4 arp daddr ip @vips4 arp daddr ip != @leased4 counter drop }
//		chain arp_out { type filter hook output priority 0; policy accept;
//			arp htype 1 ptype ip hlen 6 plen 4 arp saddr ip @vips4 arp saddr ip != @leased4 counter drop }
//	}
//	table inet raftlb_fence {
//		set vips4   { type ipv4_addr; }
//		set leased4 { type ipv4_addr; flags timeout; }
//		set vips6   { type ipv6_addr; }
//		set leased6 { type ipv6_addr; flags timeout; }
//		chain prerouting { type filter hook prerouting priority raw; policy accept;
//			meta nfproto ipv4 ip daddr @vips4 ip daddr != @leased4 counter drop
//			meta nfproto ipv6 ip6 daddr @vips6 ip6 daddr != @leased6 counter drop
//			meta nfproto ipv6 meta l4proto ipv6-icmp icmpv6 type nd-neighbor-solicit
//				icmpv6 target @vips6 icmpv6 target != @leased6 counter drop }
//		chain output { type filter hook output priority raw; policy accept;
//			meta nfproto ipv6 meta l4proto ipv6-icmp icmpv6 type nd-neighbor-advert
//				icmpv6 target @vips6 icmpv6 target != @leased6 counter drop }
//	}
//	table netdev raftlb_fence {
//		set vips4, leased4, vips6, leased6 (as in inet)
//		chain egress_IFNAME { type filter hook egress device IFNAME priority -300; policy accept;
//			ether type arp arp htype 1 ptype ip hlen 6 plen 4
//				arp saddr ip @vips4 arp saddr ip != @leased4 counter drop
//			ether type ip6 meta l4proto ipv6-icmp icmpv6 type nd-neighbor-advert
//				icmpv6 target @vips6 icmpv6 target != @leased6 counter drop }
//		# one egress chain per interface a VIP is configured on
//	}
//
// (the leased sets of all tables are written together; sets cannot be
// shared between tables). A VIP is usable exactly while it is in vips and
// its element in leased exists. Renew writes the leased elements with a
// timeout; if the daemon dies or freezes, nobody renews, the elements
// expire, and from then on the kernel drops, without any help from user
// space:
//
//   - ARP requests whose target is the VIP, in arp input: the kernel's ARP
//     code never sees them, so it neither replies nor learns the sender.
//     This alone stops the replies; arp output additionally drops anything
//     the kernel would still send with the VIP as sender address (its own
//     requests when it picks the VIP as source, and any reply), so the LAN
//     learns nothing about the VIP from this host.
//   - IPv6 neighbour solicitations for the VIP (prerouting) and any
//     neighbour advertisement for it (output). Kernel-made ND traffic does
//     go through the inet hooks (unlike ARP).
//   - All IPv4/IPv6 packets to the VIP, in prerouting at priority raw
//     (-300): after reassembly (-400) but before conntrack (-200), DNAT
//     (-100, raftlb's nft dataplane) and IPVS (LOCAL_IN), so a neighbour
//     with a stale ARP/ND entry cannot reach a service through the fenced
//     director; established connections stop too.
//   - Gratuitous ARP and neighbour advertisements for the VIP leaving a
//     VIP interface, in that interface's egress chain. Frames the daemon
//     sends on packet sockets (dataplane/vip's announcements) pass no arp
//     or inet hook, but they do pass egress (Linux 5.16 and later). The
//     daemon checks its lease right before it announces, but it can freeze
//     between the check and the send: found by the SIGSTOP test, where a
//     director woken after its lease ran out put its announcement on the
//     wire and the client went back to it. The egress chain drops that
//     frame. On Linux 6.16 and later a chain can name an interface that
//     does not exist yet and follows the name across delete and re-create;
//     on older kernels it is created only for an existing interface and
//     goes away with it, which Guarded notices and repairs.
//
// # Bound
//
// The kernel checks a timed element's expiry when a packet looks it up,
// not in a background sweep (garbage collection only frees memory), so a
// VIP is fenced for every packet evaluated at or after the element's
// expiry: at most the lease timeout d after the last successful Renew,
// plus the time of a packet already past the lookup. Expiry is measured on
// the kernel's jiffies clock (monotonic; resolution 1/CONFIG_HZ, 1–10 ms,
// and the kernel rounds timeouts up to whole jiffies), from the moment
// the Renew transaction is committed; the timeout sent is d truncated to
// whole milliseconds. The raft side must therefore make a new leader wait
// longer than d (plus clock-rate error) after the old leader's last
// possible renewal before it takes the VIP.
//
// # Limits
//
//   - A frozen or crashed kernel (whole host hung, VM paused) is out of
//     scope: while it is frozen it answers nothing, but whether its leases
//     have run out when it resumes depends on whether its jiffies advanced
//     during the pause; that needs fencing from outside (STONITH).
//   - The fence covers ARP/ND and traffic entering the host. A local
//     process may still use the address, and packets a process sends from
//     the VIP are not dropped (only answers to them are).
//   - Anyone with CAP_NET_ADMIN (nft flush ruleset) can remove it; Renew
//     then fails, naming the table.
//   - Only VIPs passed to SetVIPs are fenced; an address configured before
//     it is listed there is not. Packet-socket frames are fenced only on
//     the interfaces passed with them (ask Guarded before announcing).
//
// Close leaves the fence in place, so a stopped or crashed daemon stays
// fenced; Remove deletes it (uninstall, tests).
package fence

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/raftlb/raftlb/model"
	"golang.org/x/sys/unix"
)

// opTimeout bounds one netlink exchange.
const opTimeout = 5 * time.Second

// MaxLease is the longest lease Renew accepts.
const MaxLease = time.Hour

// Option configures New.
type Option func(*Fence) error

// WithNetNSFd programs the network namespace fd refers to instead of the
// calling thread's. The caller keeps fd open while the Fence lives.
func WithNetNSFd(fd int) Option {
	return func(f *Fence) error {
		f.nsFd = fd
		return nil
	}
}

// WithNetNSPath programs the network namespace at path (such as
// /run/netns/NAME). New opens it and Close closes it.
func WithNetNSPath(path string) Option {
	return func(f *Fence) error {
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("fence: open network namespace %s: %w", path, err)
		}
		f.nsFd, f.ownFd = fd, true
		return nil
	}
}

// Fence is the kernel-side VIP fence of one network namespace. Its methods
// are safe for concurrent use.
type Fence struct {
	mu    sync.Mutex
	nsFd  int // 0: the calling thread's namespace
	ownFd bool
	conn  *nftables.Conn
	nl    *netlink.Conn
	l     *layout
	vips  map[netip.Addr]bool // as last written by SetVIPs
	// ifaces are the interfaces of the declared VIPs, and chains those
	// whose egress chain is in the kernel as far as this Fence knows
	// (found at New, written by SetVIPs or Guarded).
	ifaces, chains map[string]bool
}

// New installs the fence (both tables, their sets and chains) in the
// calling thread's network namespace or the one an option names, and
// returns a handle to it. It is idempotent: an existing fence keeps its
// vips and leased elements (a restarted daemon stays fenced until it
// renews) and gets its rules rewritten in the same transaction.
func New(opts ...Option) (*Fence, error) {
	f := &Fence{l: newLayout(), vips: map[netip.Addr]bool{},
		ifaces: map[string]bool{}, chains: map[string]bool{}}
	for _, o := range opts {
		if err := o(f); err != nil {
			f.Close()
			return nil, err
		}
	}
	if err := f.connect(); err != nil {
		f.Close()
		return nil, err
	}
	if err := f.l.install(f.conn); err != nil {
		f.Close()
		return nil, fmt.Errorf("fence: install tables arp/inet %s: %w", TableName, err)
	}
	if err := f.flush(); err != nil {
		f.Close()
		if errors.Is(err, syscall.EPERM) {
			return nil, fmt.Errorf("fence: install tables arp/inet/netdev %s: %w (needs CAP_NET_ADMIN)", TableName, err)
		}
		return nil, fmt.Errorf("fence: install tables arp/inet/netdev %s (needs nf_tables with the arp, inet and netdev families and timed sets): %w", TableName, err)
	}
	// Egress chains of an earlier run: SetVIPs removes those no longer
	// needed and rewrites the others.
	chains, err := f.conn.ListChainsOfTableFamily(nftables.TableFamilyNetdev)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("fence: list chains of table netdev %s: %w", TableName, err)
	}
	for _, c := range chains {
		if c.Table.Name == TableName && strings.HasPrefix(c.Name, egressPrefix) {
			f.chains[strings.TrimPrefix(c.Name, egressPrefix)] = true
		}
	}
	return f, nil
}

func (f *Fence) connect() error {
	conn, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(f.nsFd), nftables.WithSockOptions(func(c *netlink.Conn) error {
		f.nl = c
		_ = c.SetOption(netlink.ExtendedAcknowledge, true)
		return nil
	}))
	if err != nil {
		return fmt.Errorf("fence: netlink socket: %w", err)
	}
	f.conn = conn
	return nil
}

// ready connects if a failed transaction left no socket.
func (f *Fence) ready() error {
	if f.conn == nil {
		return f.connect()
	}
	return nil
}

func (f *Fence) disconnect() {
	if f.conn != nil {
		_ = f.conn.CloseLasting()
		f.conn, f.nl = nil, nil
	}
}

// flush sends the queued transaction. After an error the socket is
// replaced, since replies of the failed batch may still be queued.
func (f *Fence) flush() error {
	if err := f.ready(); err != nil {
		return err
	}
	if f.nl != nil {
		_ = f.nl.SetDeadline(time.Now().Add(opTimeout))
	}
	err := f.conn.Flush()
	if err != nil {
		f.disconnect()
		_ = f.connect()
	}
	return err
}

// normalize validates, unmaps, sorts and deduplicates addrs.
func normalize(addrs []netip.Addr) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		if !a.IsValid() {
			return nil, errors.New("fence: invalid VIP address")
		}
		a = a.Unmap().WithZone("")
		if a.IsUnspecified() {
			return nil, fmt.Errorf("fence: VIP %s: unspecified address", a)
		}
		out = append(out, a)
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return slices.Compact(out), nil
}

func elems(addrs []netip.Addr, is4 bool, timeout time.Duration) []nftables.SetElement {
	var es []nftables.SetElement
	for _, a := range addrs {
		if a.Is4() == is4 {
			es = append(es, nftables.SetElement{Key: a.AsSlice(), Timeout: timeout})
		}
	}
	return es
}

func list(addrs []netip.Addr) string {
	if len(addrs) == 0 {
		return "(none)"
	}
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// SetVIPs declares the VIPs under the fence: exactly addrs, replacing the
// previous list in one transaction. A VIP in the list is usable only while
// it has a lease (Renew). A VIP no longer in the list is not fenced at all;
// leases are left alone. Call it before configuring a VIP's address.
//
// ifaces are the interfaces the VIPs are configured on: after the VIPs
// are declared, each gets its egress chain (which also fences the frames
// user space sends on packet sockets there), one transaction per
// interface, and the chains of interfaces no longer listed are deleted.
// Failing to install a chain does not fail SetVIPs (the VIPs are declared
// either way); Guarded reports it and tries again.
func (f *Fence) SetVIPs(addrs []netip.Addr, ifaces []string) error {
	addrs, err := normalize(addrs)
	if err != nil {
		return err
	}
	for _, n := range ifaces {
		if err := model.CheckIfName("interface", n); err != nil {
			return fmt.Errorf("fence: %w", err)
		}
		if strings.ContainsRune(n, 0) { // netlink would cut the name there
			return fmt.Errorf("fence: interface name %q contains a NUL byte", n)
		}
	}
	ifaces = slices.Compact(slices.Sorted(slices.Values(ifaces)))
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.ready(); err != nil {
		return err
	}
	var qerr error
	for _, s := range f.l.vipSets() {
		f.conn.FlushSet(s)
		if es := elems(addrs, s.KeyType == nftables.TypeIPAddr, 0); len(es) > 0 {
			qerr = errors.Join(qerr, f.conn.SetAddElements(s, es))
		}
	}
	if qerr == nil {
		qerr = f.flush()
	} else {
		f.disconnect() // discard the queued messages
	}
	if qerr != nil {
		return fmt.Errorf("fence: set VIPs %s in tables arp/inet/netdev %s: %w", list(addrs), TableName, qerr)
	}
	f.vips = make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		f.vips[a] = true
	}
	f.ifaces = make(map[string]bool, len(ifaces))
	for _, n := range ifaces {
		f.ifaces[n] = true
		// Written every time: a chain found from an earlier run gets
		// this version's rules.
		_ = f.installEgress(n)
	}
	// Chains of interfaces without VIPs go, each on its own: an older
	// kernel may have deleted one with its device already. One left
	// behind only guards an interface with no declared VIP.
	for n := range f.chains {
		if f.ifaces[n] {
			continue
		}
		if f.ready() != nil {
			break
		}
		c, _ := f.l.egress(n)
		f.conn.DelChain(c) // with its rules
		if err := f.flush(); err == nil || errors.Is(err, syscall.ENOENT) {
			delete(f.chains, n)
		}
	}
	return nil
}

// installEgress adds ifname's egress chain with its rules, or rewrites
// them, in one transaction. Called with f.mu held.
func (f *Fence) installEgress(ifname string) error {
	if err := f.ready(); err != nil {
		return err
	}
	c, rules := f.l.egress(ifname)
	f.conn.AddChain(c)
	f.conn.FlushChain(c)
	for _, r := range rules {
		f.conn.AddRule(r)
	}
	if err := f.flush(); err != nil {
		delete(f.chains, ifname)
		return fmt.Errorf("fence: install chain netdev %s %s on the egress of %s (needs Linux 5.16 or later with the netfilter egress hook; before 6.16 the interface must exist): %w",
			TableName, c.Name, ifname, err)
	}
	f.chains[ifname] = true
	return nil
}

// Guarded reports whether frames leaving ifname are under the fence: nil
// if the interface carries a declared VIP and its egress chain is in the
// kernel. Ask it right before sending anything for a VIP on a packet
// socket. It looks the chain up (one netlink round trip) and installs it
// again if it is missing: an older kernel deletes a device's chain with
// the device, and an interface that did not exist at SetVIPs may exist
// now.
func (f *Fence) Guarded(ifname string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.ifaces[ifname] {
		return fmt.Errorf("fence: interface %s carries no declared VIP", ifname)
	}
	if f.chains[ifname] {
		if err := f.ready(); err != nil {
			return err
		}
		if _, err := f.conn.ListChain(f.l.netdev, egressPrefix+ifname); err == nil {
			return nil
		}
		delete(f.chains, ifname)
	}
	return f.installEgress(ifname)
}

// Renew gives exactly addrs a lease of d from the moment the kernel
// commits the transaction, and takes it from every other declared VIP at
// once, in one nftables transaction (three messages per leased set,
// O(number of declared VIPs) bytes), so there is no instant at which a
// renewed VIP is unleased. Every address must have been
// declared with SetVIPs. d is truncated to whole milliseconds and must be
// between 1 ms and MaxLease. Renew with no addresses is Revoke.
//
// If Renew fails the previous leases are unchanged and run out on their own
// timeouts; the caller must then assume it holds no VIP after the last
// successful Renew's time plus d.
func (f *Fence) Renew(addrs []netip.Addr, d time.Duration) error {
	addrs, err := normalize(addrs)
	if err != nil {
		return err
	}
	if d < time.Millisecond || d > MaxLease {
		return fmt.Errorf("fence: renew %s: lease %v out of range [1ms, %v]", list(addrs), d, MaxLease)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, a := range addrs {
		if !f.vips[a] {
			return fmt.Errorf("fence: renew VIP %s: not a fenced VIP (declare it with SetVIPs first)", a)
		}
	}
	if err := f.writeLeases(addrs, d); err != nil {
		return fmt.Errorf("fence: renew %s for %v in tables arp/inet/netdev %s: %w", list(addrs), d, TableName, err)
	}
	return nil
}

// Revoke ends every lease at once: all VIPs under the fence are fenced
// when it returns.
func (f *Fence) Revoke() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.writeLeases(nil, 0); err != nil {
		return fmt.Errorf("fence: revoke leases in tables arp/inet/netdev %s: %w", TableName, err)
	}
	return nil
}

// writeLeases makes the leased sets hold exactly addrs, each with timeout
// d, in one transaction. With no addrs it flushes them (Revoke).
//
// It does not flush and refill: on Linux 6.18 a flush followed by adding
// the same key in one transaction left the key absent after the commit
// (measured: VIPs fenced at once after such a renewal). Adding an element
// that exists does not refresh its timeout either. So each declared VIP's
// element is added (a no-op if it is live, a new element if absent or
// expired), which makes the delete that follows always find it, and a
// renewed VIP is then added again with a fresh timeout. All of it commits
// at once, so no packet sees the VIP unleased in between.
func (f *Fence) writeLeases(addrs []netip.Addr, d time.Duration) error {
	if err := f.ready(); err != nil {
		return err
	}
	if len(addrs) == 0 {
		for _, s := range f.l.leasedSets() {
			f.conn.FlushSet(s)
		}
		return f.flush()
	}
	declared := make([]netip.Addr, 0, len(f.vips))
	for a := range f.vips {
		declared = append(declared, a)
	}
	slices.SortFunc(declared, func(a, b netip.Addr) int { return a.Compare(b) })
	var qerr error
	for _, s := range f.l.leasedSets() {
		is4 := s.KeyType == nftables.TypeIPAddr
		if old := elems(declared, is4, d); len(old) > 0 {
			qerr = errors.Join(qerr, f.conn.SetAddElements(s, old), f.conn.SetDeleteElements(s, old))
		}
		if es := elems(addrs, is4, d); len(es) > 0 {
			qerr = errors.Join(qerr, f.conn.SetAddElements(s, es))
		}
	}
	if qerr != nil {
		f.disconnect()
		return qerr
	}
	return f.flush()
}

// Close closes the netlink socket (and the namespace fd New opened). The
// fence stays in the kernel: VIPs whose lease runs out stay fenced.
func (f *Fence) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.disconnect()
	if f.ownFd {
		f.ownFd = false
		return unix.Close(f.nsFd)
	}
	return nil
}

// Remove deletes the three fence tables, unfencing every VIP (uninstall,
// tests). A table that is already gone is not an error. The Fence must not
// be used afterwards except for Close.
func (f *Fence) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	for _, t := range []*nftables.Table{f.l.arp, f.l.inet, f.l.netdev} {
		if err := f.ready(); err != nil {
			return err
		}
		f.conn.DelTable(t)
		if err := f.flush(); err != nil && !errors.Is(err, syscall.ENOENT) {
			errs = append(errs, fmt.Errorf("fence: remove table %s %s: %w", family(t.Family), t.Name, err))
		}
	}
	return errors.Join(errs...)
}

func family(fam nftables.TableFamily) string {
	switch fam {
	case nftables.TableFamilyARP:
		return "arp"
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyNetdev:
		return "netdev"
	}
	return fmt.Sprint(uint8(fam))
}
