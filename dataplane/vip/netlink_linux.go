package vip

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// ifaProto is IFA_PROTO (linux/if_addr.h, Linux 6.1): the originator of an
// address, a u8 like a route's rtm_protocol. Values 0-3 are the kernel's
// (IFAPROT_UNSPEC, IFAPROT_KERNEL_LO, _RA, _LL).
const ifaProto = 11

// DefaultAddrProto is the address protocol raftlb marks its addresses with
// ('r'). `ip -d addr` in iproute2 6.2+ shows it as "proto 114".
const DefaultAddrProto uint8 = 114

// NetlinkConfig configures Netlink.
type NetlinkConfig struct {
	// Netns is the path of the network namespace to work in
	// (/run/netns/NAME, /proc/PID/ns/net); "" = the caller's.
	Netns string
	// Proto is the address protocol marking raftlb's addresses (default
	// DefaultAddrProto; must be above 3, the kernel's own).
	Proto uint8
	// Timeout bounds each netlink request (default 5 s).
	Timeout time.Duration
}

// Netlink is Links over rtnetlink. Safe for concurrent use.
type Netlink struct {
	ns    nsRef
	h     *netlink.Handle  // link lookups
	sh    *nl.SocketHandle // address requests (they carry IFA_PROTO, which netlink.Addr lacks)
	proto uint8
	mu    sync.Mutex // serialises requests on sh
}

var _ Links = (*Netlink)(nil)

// NewNetlink opens rtnetlink sockets in the configured namespace.
func NewNetlink(cfg NetlinkConfig) (*Netlink, error) {
	if cfg.Proto == 0 {
		cfg.Proto = DefaultAddrProto
	}
	if cfg.Proto <= 3 {
		return nil, fmt.Errorf("vip: address protocol %d is reserved for the kernel", cfg.Proto)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	ns, err := openNetns(cfg.Netns)
	if err != nil {
		return nil, err
	}
	n := &Netlink{ns: ns, proto: cfg.Proto}
	err = ns.do(func() error {
		// Created on a thread inside the namespace: no switching by the
		// netlink package itself.
		h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		n.h = h
		s, err := nl.GetNetlinkSocketAt(netns.None(), netns.None(), unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		n.sh = &nl.SocketHandle{Socket: s}
		return nil
	})
	if err == nil {
		err = n.h.SetSocketTimeout(cfg.Timeout)
	}
	if err == nil {
		tv := unix.NsecToTimeval(cfg.Timeout.Nanoseconds())
		err = errors.Join(n.sh.Socket.SetSendTimeout(&tv), n.sh.Socket.SetReceiveTimeout(&tv), n.sh.Socket.SetExtAck(true))
	}
	if err != nil {
		n.Close()
		return nil, fmt.Errorf("vip: rtnetlink: %w", err)
	}
	return n, nil
}

// Close releases the sockets and the namespace.
func (n *Netlink) Close() error {
	if n.h != nil {
		n.h.Close()
	}
	if n.sh != nil {
		n.sh.Close()
	}
	n.ns.close()
	return nil
}

// AddAddr adds p to ifname marked with the address protocol; IPv6 without
// DAD (IFA_F_NODAD), so the VIP is usable at once and a previous holder
// that has not yet let go cannot make it "dadfailed".
func (n *Netlink) AddAddr(ifname string, p netip.Prefix) error {
	err := n.addrRequest(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK, ifname, p, true)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}

// DelAddr removes p from ifname.
func (n *Netlink) DelAddr(ifname string, p netip.Prefix) error {
	err := n.addrRequest(unix.RTM_DELADDR, unix.NLM_F_ACK, ifname, p, false)
	if errors.Is(err, unix.EADDRNOTAVAIL) || errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

func (n *Netlink) addrRequest(op, flags int, ifname string, p netip.Prefix, add bool) error {
	if !p.IsValid() || p.Addr().Zone() != "" || p.Addr().Is4In6() {
		return fmt.Errorf("invalid address %v", p)
	}
	link, err := n.h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("link %s: %w", ifname, err)
	}
	family := unix.AF_INET
	if p.Addr().Is6() {
		family = unix.AF_INET6
	}
	req := nl.NewNetlinkRequest(op, flags)
	msg := nl.NewIfAddrmsg(family)
	msg.Index = uint32(link.Attrs().Index)
	msg.Prefixlen = uint8(p.Bits())
	ip := p.Addr().AsSlice()
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, ip))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, ip))
	if add {
		var f uint32
		if family == unix.AF_INET6 {
			f = unix.IFA_F_NODAD
			msg.Flags = uint8(f)
		}
		req.AddData(nl.NewRtAttr(unix.IFA_FLAGS, nl.Uint32Attr(f)))
		req.AddData(nl.NewRtAttr(ifaProto, []byte{n.proto}))
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: n.sh}
	_, err = req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// Addrs lists the addresses of every interface. Marked is set for those
// carrying the configured address protocol.
func (n *Netlink) Addrs() ([]Addr, error) {
	links, err := n.h.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, fmt.Errorf("list links: %w", err)
	}
	names := make(map[uint32]string, len(links))
	for _, l := range links {
		names[uint32(l.Attrs().Index)] = l.Attrs().Name
	}
	var msgs [][]byte
	for range 3 { // a dump interrupted by a concurrent change is retried
		req := nl.NewNetlinkRequest(unix.RTM_GETADDR, unix.NLM_F_DUMP)
		req.AddData(nl.NewIfAddrmsg(unix.AF_UNSPEC))
		n.mu.Lock()
		req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: n.sh}
		msgs, err = req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWADDR)
		n.mu.Unlock()
		if !errors.Is(err, nl.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	out := make([]Addr, 0, len(msgs))
	for _, m := range msgs {
		a, ok, err := parseAddrMsg(m, n.proto)
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		name, known := names[a.index]
		if !known {
			l, err := n.h.LinkByIndex(int(a.index))
			if err != nil {
				continue // gone meanwhile
			}
			name = l.Attrs().Name
		}
		out = append(out, Addr{Interface: name, Prefix: a.prefix, Marked: a.marked})
	}
	return out, nil
}

type parsedAddr struct {
	index  uint32
	prefix netip.Prefix
	marked bool
}

// parseAddrMsg decodes one RTM_NEWADDR payload (ifaddrmsg + attributes).
// ok is false for families other than IPv4 and IPv6.
func parseAddrMsg(m []byte, proto uint8) (parsedAddr, bool, error) {
	if len(m) < unix.SizeofIfAddrmsg {
		return parsedAddr{}, false, fmt.Errorf("short RTM_NEWADDR message (%d bytes)", len(m))
	}
	msg := nl.DeserializeIfAddrmsg(m)
	if msg.Family != unix.AF_INET && msg.Family != unix.AF_INET6 {
		return parsedAddr{}, false, nil
	}
	attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfAddrmsg:])
	if err != nil {
		return parsedAddr{}, false, fmt.Errorf("RTM_NEWADDR attributes: %w", err)
	}
	var local, address []byte
	var marked bool
	for _, a := range attrs {
		switch a.Attr.Type {
		case unix.IFA_LOCAL:
			local = a.Value
		case unix.IFA_ADDRESS:
			address = a.Value
		case ifaProto:
			marked = len(a.Value) >= 1 && a.Value[0] == proto
		}
	}
	// IFA_LOCAL is the address itself when present (IFA_ADDRESS is then
	// the peer of a point-to-point address).
	raw := address
	if local != nil {
		raw = local
	}
	ip, ok := netip.AddrFromSlice(raw)
	if !ok {
		return parsedAddr{}, false, nil
	}
	return parsedAddr{index: msg.Index, prefix: netip.PrefixFrom(ip, int(msg.Prefixlen)), marked: marked}, true, nil
}
