package fence

import (
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Names of the objects the fence owns. Nothing else in the ruleset is
// touched.
const (
	TableName = "raftlb_fence" // in the arp, inet and netdev families

	setVIPs4   = "vips4"   // IPv4 VIPs under the fence (arp and inet tables)
	setLeased4 = "leased4" // IPv4 VIPs whose lease is live (arp and inet tables)
	setVIPs6   = "vips6"   // IPv6 VIPs under the fence (inet table)
	setLeased6 = "leased6" // IPv6 VIPs whose lease is live (inet table)

	chainARPIn      = "arp_in"
	chainARPOut     = "arp_out"
	chainPrerouting = "prerouting"
	chainOutput     = "output"

	// egressPrefix + an interface name is the netdev chain on that
	// interface's egress hook (one per interface a VIP is configured on).
	egressPrefix = "egress_"
)

// Priorities of the base chains (see the package documentation for why).
const (
	prioARP        = 0    // the arp family has no other users to order against
	prioPrerouting = -300 // raw: after defrag (-400), before conntrack (-200), DNAT (-100) and IPVS (LOCAL_IN)
	prioOutput     = -300 // raw: before anything else sees the outgoing NA
	prioEgress     = -300 // before any other egress chain (and tc, which runs after netfilter)
)

// Hooks of the arp family (linux/netfilter_arp.h; not in x/sys/unix).
const (
	hookARPIn  = 0 // NF_ARP_IN
	hookARPOut = 1 // NF_ARP_OUT
)

// ICMPv6 types of neighbour discovery.
const (
	icmp6NS = 135 // neighbour solicitation
	icmp6NA = 136 // neighbour advertisement
)

// layout is every object New installs, built the same way every time, so
// that a transaction from it is deterministic (set IDs are fixed, not
// drawn from google/nftables' global counter).
type layout struct {
	arp, inet, netdev *nftables.Table

	arpVIPs4, arpLeased4 *nftables.Set
	vips4, leased4       *nftables.Set
	vips6, leased6       *nftables.Set
	devVIPs4, devLeased4 *nftables.Set // the netdev table's copies
	devVIPs6, devLeased6 *nftables.Set

	chains []*nftables.Chain
	rules  []*nftables.Rule
}

// sets returns the sets in creation order.
func (l *layout) sets() []*nftables.Set {
	return []*nftables.Set{l.arpVIPs4, l.arpLeased4, l.vips4, l.leased4, l.vips6, l.leased6,
		l.devVIPs4, l.devLeased4, l.devVIPs6, l.devLeased6}
}

// vipSets returns the sets that declare the VIPs under the fence.
func (l *layout) vipSets() []*nftables.Set {
	return []*nftables.Set{l.arpVIPs4, l.vips4, l.vips6, l.devVIPs4, l.devVIPs6}
}

// leasedSets returns the leased sets, IPv4 ones first.
func (l *layout) leasedSets() []*nftables.Set {
	return []*nftables.Set{l.arpLeased4, l.leased4, l.leased6, l.devLeased4, l.devLeased6}
}

func newLayout() *layout {
	l := &layout{
		arp:    &nftables.Table{Name: TableName, Family: nftables.TableFamilyARP},
		inet:   &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet},
		netdev: &nftables.Table{Name: TableName, Family: nftables.TableFamilyNetdev},
	}
	set := func(t *nftables.Table, id uint32, name string, kt nftables.SetDatatype, timed bool) *nftables.Set {
		return &nftables.Set{Table: t, ID: id, Name: name, KeyType: kt, HasTimeout: timed}
	}
	l.arpVIPs4 = set(l.arp, 1, setVIPs4, nftables.TypeIPAddr, false)
	l.arpLeased4 = set(l.arp, 2, setLeased4, nftables.TypeIPAddr, true)
	l.vips4 = set(l.inet, 3, setVIPs4, nftables.TypeIPAddr, false)
	l.leased4 = set(l.inet, 4, setLeased4, nftables.TypeIPAddr, true)
	l.vips6 = set(l.inet, 5, setVIPs6, nftables.TypeIP6Addr, false)
	l.leased6 = set(l.inet, 6, setLeased6, nftables.TypeIP6Addr, true)
	l.devVIPs4 = set(l.netdev, 7, setVIPs4, nftables.TypeIPAddr, false)
	l.devLeased4 = set(l.netdev, 8, setLeased4, nftables.TypeIPAddr, true)
	l.devVIPs6 = set(l.netdev, 9, setVIPs6, nftables.TypeIP6Addr, false)
	l.devLeased6 = set(l.netdev, 10, setLeased6, nftables.TypeIP6Addr, true)

	accept := nftables.ChainPolicyAccept
	chain := func(t *nftables.Table, name string, hook nftables.ChainHook, prio nftables.ChainPriority) *nftables.Chain {
		return &nftables.Chain{
			Table: t, Name: name, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookRef(hook), Priority: nftables.ChainPriorityRef(prio), Policy: &accept,
		}
	}
	arpIn := chain(l.arp, chainARPIn, hookARPIn, prioARP)
	arpOut := chain(l.arp, chainARPOut, hookARPOut, prioARP)
	pre := chain(l.inet, chainPrerouting, unix.NF_INET_PRE_ROUTING, prioPrerouting)
	out := chain(l.inet, chainOutput, unix.NF_INET_LOCAL_OUT, prioOutput)
	l.chains = []*nftables.Chain{arpIn, arpOut, pre, out}

	rule := func(c *nftables.Chain, exprs ...[]expr.Any) {
		var all []expr.Any
		for _, e := range exprs {
			all = append(all, e...)
		}
		l.rules = append(l.rules, &nftables.Rule{Table: c.Table, Chain: c, Exprs: all})
	}
	arpEthIPv4 := arpEthIPv4()
	// arp_in: a request (or anything else) for an unleased VIP never
	// reaches the kernel's ARP code, so it neither answers nor learns.
	rule(arpIn, arpEthIPv4, fenced(expr.PayloadBaseNetworkHeader, 24, 4, l.arpVIPs4, l.arpLeased4), dropCounted())
	// arp_out: nothing the kernel sends (replies, its own requests,
	// announcements) carries an unleased VIP as sender.
	rule(arpOut, arpEthIPv4, fenced(expr.PayloadBaseNetworkHeader, 14, 4, l.arpVIPs4, l.arpLeased4), dropCounted())

	ipv4 := cmpMeta(expr.MetaKeyNFPROTO, []byte{unix.NFPROTO_IPV4})
	ipv6 := cmpMeta(expr.MetaKeyNFPROTO, []byte{unix.NFPROTO_IPV6})
	icmp6 := icmp6()
	// prerouting: traffic to an unleased VIP (IPv4 daddr at 16, IPv6 at 24).
	rule(pre, ipv4, fenced(expr.PayloadBaseNetworkHeader, 16, 4, l.vips4, l.leased4), dropCounted())
	rule(pre, ipv6, fenced(expr.PayloadBaseNetworkHeader, 24, 16, l.vips6, l.leased6), dropCounted())
	// prerouting: neighbour solicitations for an unleased VIP (sent to the
	// solicited-node multicast address, so the rule above misses them);
	// the ND target address is at offset 8 of the ICMPv6 header.
	rule(pre, ipv6, icmp6, cmpPayload(expr.PayloadBaseTransportHeader, 0, []byte{icmp6NS}),
		fenced(expr.PayloadBaseTransportHeader, 8, 16, l.vips6, l.leased6), dropCounted())
	// output: neighbour advertisements for an unleased VIP (solicited or
	// not).
	rule(out, ipv6, icmp6, cmpPayload(expr.PayloadBaseTransportHeader, 0, []byte{icmp6NA}),
		fenced(expr.PayloadBaseTransportHeader, 8, 16, l.vips6, l.leased6), dropCounted())
	return l
}

// Ethernet/IPv4 ARP: htype 1, ptype 0x0800, hlen 6, plen 4. The sender
// protocol address is at offset 14, the target's at 24.
func arpEthIPv4() []expr.Any {
	return cmpPayload(expr.PayloadBaseNetworkHeader, 0, []byte{0, 1, 0x08, 0x00, 6, 4})
}

func icmp6() []expr.Any { return cmpMeta(expr.MetaKeyL4PROTO, []byte{unix.IPPROTO_ICMPV6}) }

// egress returns the netdev chain on ifname's egress hook and its rules.
// Frames that user space sends on packet sockets (dataplane/vip's
// gratuitous ARP and unsolicited NA) pass no arp or inet hook, but they do
// pass the egress hook of the interface they leave by; there the chain
// drops every ARP frame whose sender is an unleased VIP and every
// neighbour advertisement whose target is one, whoever made it. So a
// daemon that checked its lease and then froze before sending cannot
// announce a VIP its lease no longer covers.
func (l *layout) egress(ifname string) (*nftables.Chain, []*nftables.Rule) {
	accept := nftables.ChainPolicyAccept
	c := &nftables.Chain{
		Table: l.netdev, Name: egressPrefix + ifname, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookEgress, Priority: nftables.ChainPriorityRef(prioEgress),
		Policy: &accept, Device: ifname,
	}
	// The ether type is read from the frame (link-layer header), as it
	// goes on the wire; the ARP and ICMPv6 fields as in the other tables.
	etherType := func(t uint16) []expr.Any {
		return cmpPayload(expr.PayloadBaseLLHeader, 12, []byte{byte(t >> 8), byte(t)})
	}
	arp := append(etherType(unix.ETH_P_ARP), arpEthIPv4()...)
	arp = append(arp, fenced(expr.PayloadBaseNetworkHeader, 14, 4, l.devVIPs4, l.devLeased4)...)
	na := append(etherType(unix.ETH_P_IPV6), icmp6()...)
	na = append(na, cmpPayload(expr.PayloadBaseTransportHeader, 0, []byte{icmp6NA})...)
	na = append(na, fenced(expr.PayloadBaseTransportHeader, 8, 16, l.devVIPs6, l.devLeased6)...)
	var rules []*nftables.Rule
	for _, e := range [][]expr.Any{arp, na} {
		rules = append(rules, &nftables.Rule{Table: l.netdev, Chain: c, Exprs: append(e, dropCounted()...)})
	}
	return c, rules
}

func cmpMeta(key expr.MetaKey, v []byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: key, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: v},
	}
}

func cmpPayload(base expr.PayloadBase, off uint32, v []byte) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: uint32(len(v))},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: v},
	}
}

// fenced matches when the address at base+off is in vips but not in
// leased. The kernel checks a timed element's expiry at this lookup.
func fenced(base expr.PayloadBase, off, n uint32, vips, leased *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: base, Offset: off, Len: n},
		&expr.Lookup{SourceRegister: 1, SetName: vips.Name, SetID: vips.ID},
		&expr.Lookup{SourceRegister: 1, SetName: leased.Name, SetID: leased.ID, Invert: true},
	}
}

func dropCounted() []expr.Any {
	return []expr.Any{&expr.Counter{}, &expr.Verdict{Kind: expr.VerdictDrop}}
}

// install queues, on c, the transaction that creates or updates the fence
// without touching set contents: tables, sets and chains are added
// idempotently (no NLM_F_EXCL), and each chain is flushed and refilled in
// the same transaction, so there is never a moment without the rules.
//
// The netdev table starts with no chains: SetVIPs adds one egress chain per
// VIP interface.
func (l *layout) install(c *nftables.Conn) error {
	c.AddTable(l.arp)
	c.AddTable(l.inet)
	c.AddTable(l.netdev)
	for _, s := range l.sets() {
		if err := c.AddSet(s, nil); err != nil {
			return err
		}
	}
	for _, ch := range l.chains {
		c.AddChain(ch)
		c.FlushChain(ch)
	}
	for _, r := range l.rules {
		c.AddRule(r)
	}
	return nil
}
