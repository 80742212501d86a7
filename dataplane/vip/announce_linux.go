package vip

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/mdlayher/packet"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// ARPForms selects the gratuitous ARP frames sent per IPv4 announcement.
type ARPForms uint8

// The forms; zero in a PacketConfig means both.
const (
	ARPRequest ARPForms = 1 << iota // op 1, sender = target = VIP (keepalived's form)
	ARPReply                        // op 2, broadcast, target MAC = sender MAC
	ARPBoth    = ARPRequest | ARPReply
)

// RouterFlag says how the R flag of Neighbour Advertisements is set.
type RouterFlag uint8

// Router flag modes.
const (
	// RouterAuto sets R when IPv6 forwarding is on for the interface
	// (net.ipv6.conf.IFNAME.forwarding), as the kernel does in its own NAs.
	RouterAuto RouterFlag = iota
	RouterSet
	RouterClear
)

// PacketConfig configures a PacketAnnouncer.
type PacketConfig struct {
	// Netns is the path of the network namespace the interfaces are in;
	// "" = the caller's.
	Netns string
	// ARP selects the IPv4 frames (default ARPBoth: a request, then a reply).
	ARP ARPForms
	// ZeroTargetMAC sends 00:00:00:00:00:00 as the request form's target
	// MAC (RFC 5227) instead of ff:ff:ff:ff:ff:ff (keepalived).
	ZeroTargetMAC bool
	// NARouter sets the R flag of IPv6 announcements (default RouterAuto).
	NARouter RouterFlag
}

// PacketAnnouncer is Announcer over AF_PACKET sockets. Safe for concurrent
// use. Each Announce looks the interface up afresh (index, MAC and flags
// may change under it) and opens a send-only socket for its frames.
type PacketAnnouncer struct {
	cfg PacketConfig
	ns  nsRef
	h   *netlink.Handle
}

var _ Announcer = (*PacketAnnouncer)(nil)

// dropAll is a socket filter accepting nothing: the sockets only send.
var dropAll = mustAssemble([]bpf.Instruction{bpf.RetConstant{Val: 0}})

func mustAssemble(p []bpf.Instruction) []bpf.RawInstruction {
	raw, err := bpf.Assemble(p)
	if err != nil {
		panic(err)
	}
	return raw
}

// NewPacketAnnouncer returns an announcer for the interfaces of the
// configured namespace.
func NewPacketAnnouncer(cfg PacketConfig) (*PacketAnnouncer, error) {
	if cfg.ARP == 0 {
		cfg.ARP = ARPBoth
	}
	if cfg.ARP&^ARPBoth != 0 {
		return nil, fmt.Errorf("vip: unknown ARP forms %#x", uint8(cfg.ARP))
	}
	if cfg.NARouter > RouterClear {
		return nil, fmt.Errorf("vip: unknown router flag mode %d", cfg.NARouter)
	}
	ns, err := openNetns(cfg.Netns)
	if err != nil {
		return nil, err
	}
	a := &PacketAnnouncer{cfg: cfg, ns: ns}
	err = ns.do(func() (err error) {
		a.h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		ns.close()
		return nil, fmt.Errorf("vip: rtnetlink: %w", err)
	}
	return a, nil
}

// Close releases the announcer's resources.
func (a *PacketAnnouncer) Close() error {
	a.h.Close()
	a.ns.close()
	return nil
}

// Announce sends the configured gratuitous ARP frames (IPv4) or one
// unsolicited Neighbour Advertisement (IPv6) for addr out of ifname.
func (a *PacketAnnouncer) Announce(ifname string, addr netip.Addr) error {
	link, err := a.h.LinkByName(ifname)
	if err != nil {
		return fmt.Errorf("link %s: %w", ifname, err)
	}
	attrs := link.Attrs()
	mac := attrs.HardwareAddr
	if len(mac) != 6 || attrs.RawFlags&(unix.IFF_NOARP|unix.IFF_LOOPBACK|unix.IFF_POINTOPOINT) != 0 || isZero(mac) {
		return fmt.Errorf("%s (%s, hardware address %q): %w", ifname, link.Type(), mac, ErrNotAnnounceable)
	}
	var frames [][]byte
	proto := unix.ETH_P_ARP
	switch {
	case addr.Is4():
		if a.cfg.ARP&ARPRequest != 0 {
			tha := broadcastMAC
			if a.cfg.ZeroTargetMAC {
				tha = zeroMAC
			}
			f, err := GARPRequest(mac, addr, tha)
			if err != nil {
				return err
			}
			frames = append(frames, f)
		}
		if a.cfg.ARP&ARPReply != 0 {
			f, err := GARPReply(mac, addr)
			if err != nil {
				return err
			}
			frames = append(frames, f)
		}
	case addr.Is6():
		proto = unix.ETH_P_IPV6
	default:
		return fmt.Errorf("invalid address %v", addr)
	}

	var conn *packet.Conn
	router := a.cfg.NARouter == RouterSet
	err = a.ns.do(func() error {
		if addr.Is6() && a.cfg.NARouter == RouterAuto {
			router = forwarding6(ifname)
		}
		var err error
		conn, err = packet.Listen(&net.Interface{Index: attrs.Index, Name: ifname, HardwareAddr: mac},
			packet.Raw, proto, &packet.Config{Filter: dropAll})
		return err
	})
	if err != nil {
		return fmt.Errorf("packet socket on %s: %w", ifname, err)
	}
	defer conn.Close()
	if addr.Is6() {
		f, err := UnsolicitedNA(mac, addr, router)
		if err != nil {
			return err
		}
		frames = append(frames, f)
	}
	for _, f := range frames {
		if _, err := conn.WriteTo(f, &packet.Addr{HardwareAddr: net.HardwareAddr(f[0:6])}); err != nil {
			if errors.Is(err, unix.ENOBUFS) {
				// What a netfilter drop on egress returns.
				return fmt.Errorf("send on %s: dropped by the kernel (raftlb's VIP fence drops announcements of a VIP with no live lease; or the queue is full): %w", ifname, err)
			}
			return fmt.Errorf("send on %s: %w", ifname, err)
		}
	}
	return nil
}

func isZero(mac net.HardwareAddr) bool {
	for _, b := range mac {
		if b != 0 {
			return false
		}
	}
	return true
}

// forwarding6 reads net.ipv6.conf.IFNAME.forwarding of the calling
// thread's namespace. An unreadable value (IPv6 disabled) counts as off.
func forwarding6(ifname string) bool {
	if strings.ContainsAny(ifname, "/") || ifname == "." || ifname == ".." {
		return false
	}
	b, err := os.ReadFile("/proc/sys/net/ipv6/conf/" + ifname + "/forwarding")
	if err != nil {
		return false
	}
	return strings.TrimSpace(string(b)) != "0"
}
