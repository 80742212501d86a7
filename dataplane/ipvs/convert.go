package ipvs

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"slices"
	"syscall"

	moby "github.com/moby/ipvs"

	"github.com/raftlb/raftlb/dataplane"
	"github.com/raftlb/raftlb/model"
)

// Service flags (IP_VS_SVC_F_* in include/uapi/linux/ip_vs.h).
const (
	flagPersistent = 0x0001
	flagHashed     = 0x0002 // set by the kernel on every listed service; ignored
	flagOnePacket  = 0x0004
	flagSched1     = 0x0008 // sh-fallback / mh-fallback
	flagSched2     = 0x0010 // sh-port / mh-port
	flagSched3     = 0x0020 // no scheduler uses it today
)

// IP protocol numbers IPVS services use.
const (
	protoTCP  = syscall.IPPROTO_TCP  // 6
	protoUDP  = syscall.IPPROTO_UDP  // 17
	protoSCTP = syscall.IPPROTO_SCTP // 132
)

var protoNumbers = map[string]uint16{"tcp": protoTCP, "udp": protoUDP, "sctp": protoSCTP}

var familyNumbers = map[string]uint16{"inet": syscall.AF_INET, "inet6": syscall.AF_INET6}

var forwardFlags = map[string]uint32{
	"nat": moby.ConnectionFlagMasq,
	"tun": moby.ConnectionFlagTunnel,
	"dr":  moby.ConnectionFlagDirectRoute,
}

// protoName is the dataplane name of an IP protocol number.
func protoName(p uint16) (string, error) {
	for name, n := range protoNumbers {
		if n == p {
			return name, nil
		}
	}
	return "", fmt.Errorf("IP protocol %d is not one IPVS balances (tcp, udp, sctp)", p)
}

// familyName is the dataplane name of an address family number.
func familyName(af uint16) (string, error) {
	for name, n := range familyNumbers {
		if n == af {
			return name, nil
		}
	}
	return "", fmt.Errorf("address family %d is neither AF_INET nor AF_INET6", af)
}

// forwardName is the dataplane name of a destination's forwarding method
// (the low three bits of its connection flags). The kernel reports "local"
// for a destination whose address is one of the director's own.
func forwardName(connFlags uint32) (string, error) {
	switch connFlags & moby.ConnectionFlagFwdMask {
	case moby.ConnectionFlagMasq:
		return "nat", nil
	case moby.ConnectionFlagTunnel:
		return "tun", nil
	case moby.ConnectionFlagDirectRoute:
		return "dr", nil
	case moby.ConnectionFlagLocalNode:
		return "local", nil
	}
	return "", fmt.Errorf("unknown forwarding method %d", connFlags&moby.ConnectionFlagFwdMask)
}

// schedFlagBits encodes scheduler flag names into IP_VS_SVC_F_* bits. The
// sh-* and mh-* flags are the kernel's generic SCHED1/SCHED2 bits, so each
// is accepted only with its own scheduler; "flag-1".."flag-3" name the bits
// for any scheduler (what Dump reports for bits it cannot name otherwise).
func schedFlagBits(scheduler string, flags []string) (uint32, error) {
	var b uint32
	for _, f := range flags {
		switch f {
		case "ops":
			b |= flagOnePacket
		case "sh-fallback", "mh-fallback":
			if scheduler != f[:2] {
				return 0, fmt.Errorf("scheduler flag %s needs scheduler %s, not %q", f, f[:2], scheduler)
			}
			b |= flagSched1
		case "sh-port", "mh-port":
			if scheduler != f[:2] {
				return 0, fmt.Errorf("scheduler flag %s needs scheduler %s, not %q", f, f[:2], scheduler)
			}
			b |= flagSched2
		case "flag-1":
			b |= flagSched1
		case "flag-2":
			b |= flagSched2
		case "flag-3":
			b |= flagSched3
		default:
			return 0, fmt.Errorf("unknown scheduler flag %q (want sh-fallback, sh-port, mh-fallback, mh-port or ops)", f)
		}
	}
	return b, nil
}

// schedFlagNames decodes IP_VS_SVC_F_* bits into sorted scheduler flag
// names; persistence and the kernel's HASHED bit are not scheduler flags.
func schedFlagNames(scheduler string, b uint32) []string {
	var names []string
	if b&flagOnePacket != 0 {
		names = append(names, "ops")
	}
	prefix := ""
	if scheduler == "sh" || scheduler == "mh" {
		prefix = scheduler
	}
	if b&flagSched1 != 0 {
		names = append(names, nameOr(prefix, "-fallback", "flag-1"))
	}
	if b&flagSched2 != 0 {
		names = append(names, nameOr(prefix, "-port", "flag-2"))
	}
	if b&flagSched3 != 0 {
		names = append(names, "flag-3")
	}
	slices.Sort(names)
	return names
}

func nameOr(prefix, suffix, generic string) string {
	if prefix == "" {
		return generic
	}
	return prefix + suffix
}

// encodeNetmask is the value of IPVS_SVC_ATTR_NETMASK for a persistence
// granularity given as a prefix length (0 = the whole address).
//
// IPv4: the kernel keeps a mask in network byte order (__be32) and moby/ipvs
// passes the uint32 through in host byte order, so the value is the mask's
// bytes read in native order. IPv6: the kernel keeps the prefix length
// itself and rejects 0 (ipvsadm sends 128 by default).
func encodeNetmask(family uint16, prefix int) (uint32, error) {
	switch family {
	case syscall.AF_INET:
		if prefix < 0 || prefix > 32 {
			return 0, fmt.Errorf("netmask /%d is not an IPv4 prefix length (1-32)", prefix)
		}
		if prefix == 0 {
			prefix = 32
		}
		mask := net.CIDRMask(prefix, 32)
		return binary.NativeEndian.Uint32(mask), nil
	case syscall.AF_INET6:
		if prefix < 0 || prefix > 128 {
			return 0, fmt.Errorf("netmask /%d is not an IPv6 prefix length (1-128)", prefix)
		}
		if prefix == 0 {
			prefix = 128
		}
		return uint32(prefix), nil
	}
	return 0, fmt.Errorf("address family %d is neither AF_INET nor AF_INET6", family)
}

// decodeNetmask reverses encodeNetmask: the whole address comes back as 0.
// A non-contiguous IPv4 mask (only possible if set by another tool) is
// reported by the length of its leading run of ones.
func decodeNetmask(family uint16, v uint32) int {
	switch family {
	case syscall.AF_INET:
		var b [4]byte
		binary.NativeEndian.PutUint32(b[:], v)
		n := bits.LeadingZeros32(^binary.BigEndian.Uint32(b[:]))
		if n == 32 {
			return 0
		}
		return n
	case syscall.AF_INET6:
		if v >= 128 {
			return 0
		}
		return int(v)
	}
	return 0
}

// toKernelService converts a dataplane service into the moby/ipvs form that
// is sent to the kernel.
func toKernelService(s dataplane.Service) (*moby.Service, error) {
	af, err := serviceFamily(s)
	if err != nil {
		return nil, err
	}
	out := &moby.Service{AddressFamily: af, SchedName: s.Scheduler}
	if s.Scheduler == "" {
		return nil, fmt.Errorf("service %s has no scheduler", s.Key())
	}
	if s.Fwmark != 0 {
		if s.Protocol != "" || s.Address.IsValid() || s.Port != 0 {
			return nil, fmt.Errorf("fwmark service %s must not have a protocol, address or port", s.Key())
		}
		out.FWMark = s.Fwmark
	} else {
		p, ok := protoNumbers[s.Protocol]
		if !ok {
			return nil, fmt.Errorf("service %s: protocol %q is not tcp, udp or sctp", s.Key(), s.Protocol)
		}
		out.Protocol = p
		out.Address = net.IP(s.Address.Unmap().AsSlice())
		out.Port = s.Port
	}
	flags, err := schedFlagBits(s.Scheduler, s.Flags)
	if err != nil {
		return nil, fmt.Errorf("service %s: %w", s.Key(), err)
	}
	netmask := 0
	if s.Timeout > 0 {
		flags |= flagPersistent
		out.Timeout = s.Timeout
		netmask = s.Netmask
	} else if s.Netmask != 0 {
		return nil, fmt.Errorf("service %s: a persistence netmask needs a persistence timeout", s.Key())
	}
	out.Flags = flags
	if out.Netmask, err = encodeNetmask(af, netmask); err != nil {
		return nil, fmt.Errorf("service %s: %w", s.Key(), err)
	}
	return out, nil
}

// toKernelServiceKey converts only the identity of s (family, protocol,
// address, port or fwmark): enough for deleting it and for its destination
// operations, where the kernel ignores the other fields.
func toKernelServiceKey(s dataplane.Service) (*moby.Service, error) {
	af, err := serviceFamily(s)
	if err != nil {
		return nil, err
	}
	out := &moby.Service{AddressFamily: af, FWMark: s.Fwmark}
	if s.Fwmark == 0 {
		p, ok := protoNumbers[s.Protocol]
		if !ok {
			return nil, fmt.Errorf("service %s: protocol %q is not tcp, udp or sctp", s.Key(), s.Protocol)
		}
		out.Protocol = p
		out.Address = net.IP(s.Address.Unmap().AsSlice())
		out.Port = s.Port
	}
	out.Netmask, _ = encodeNetmask(af, 0) // moby/ipvs always sends one
	return out, nil
}

// serviceFamily is the address family of s: its Family, which must agree
// with its address; derived from the address when Family is empty.
func serviceFamily(s dataplane.Service) (uint16, error) {
	if s.Fwmark == 0 && !s.Address.IsValid() {
		return 0, fmt.Errorf("service %s has neither an address nor a fwmark", s.Key())
	}
	fam := s.Family
	if fam == "" && s.Fwmark == 0 {
		fam = addrFamily(s.Address)
	}
	af, ok := familyNumbers[fam]
	if !ok {
		return 0, fmt.Errorf("service %s: family %q is not inet or inet6", s.Key(), s.Family)
	}
	if s.Fwmark == 0 && fam != addrFamily(s.Address) {
		return 0, fmt.Errorf("service %s: family %s does not match its address", s.Key(), fam)
	}
	return af, nil
}

func addrFamily(a netip.Addr) string {
	if a.Unmap().Is4() {
		return "inet"
	}
	return "inet6"
}

// fromKernelService converts a service read from the kernel into the
// dataplane form.
func fromKernelService(s *moby.Service) (dataplane.Service, error) {
	fam, err := familyName(s.AddressFamily)
	if err != nil {
		return dataplane.Service{}, err
	}
	out := dataplane.Service{Family: fam, Scheduler: s.SchedName, Fwmark: s.FWMark}
	if s.FWMark == 0 {
		if out.Protocol, err = protoName(s.Protocol); err != nil {
			return dataplane.Service{}, err
		}
		if out.Address, err = ipToAddr(s.Address, s.AddressFamily); err != nil {
			return dataplane.Service{}, err
		}
		out.Port = s.Port
	}
	out.Flags = schedFlagNames(s.SchedName, s.Flags)
	if s.Flags&flagPersistent != 0 {
		out.Timeout = s.Timeout
		out.Netmask = decodeNetmask(s.AddressFamily, s.Netmask)
	}
	return out, nil
}

// ipToAddr converts a kernel address of the given family.
func ipToAddr(ip net.IP, af uint16) (netip.Addr, error) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, fmt.Errorf("bad address %v", []byte(ip))
	}
	if af == syscall.AF_INET {
		a = a.Unmap()
		if !a.Is4() {
			return netip.Addr{}, fmt.Errorf("address %s is not IPv4", a)
		}
	}
	return a, nil
}

// toKernelDest converts a dataplane destination of a service of address
// family af (AF_INET or AF_INET6) into the moby/ipvs form, with the
// destination's own family: only tun forwarding may cross families (the
// kernel tunnels IPv4 in IPv6 and IPv6 in IPv4, and refuses nat and dr).
func toKernelDest(af uint16, d dataplane.Destination) (*moby.Destination, error) {
	family, err := familyName(af)
	if err != nil {
		return nil, err
	}
	if !d.Address.IsValid() {
		return nil, fmt.Errorf("destination %s has no address", d.Key())
	}
	fwd, ok := forwardFlags[d.Forward]
	if !ok {
		return nil, fmt.Errorf("destination %s: forwarding method %q is not nat, dr or tun", d.Key(), d.Forward)
	}
	if addrFamily(d.Address) != family {
		if d.Forward != "tun" {
			return nil, fmt.Errorf("destination %s is not an %s address like its service: only tun forwarding crosses address families", d.Key(), family)
		}
		af = familyNumbers[addrFamily(d.Address)]
	}
	if d.Weight < 0 || d.Weight > model.MaxWeight {
		return nil, fmt.Errorf("destination %s: weight %d is out of range (0-%d)", d.Key(), d.Weight, model.MaxWeight)
	}
	return &moby.Destination{
		AddressFamily:   af,
		Address:         net.IP(d.Address.Unmap().AsSlice()),
		Port:            d.Port,
		Weight:          d.Weight,
		ConnectionFlags: fwd,
		UpperThreshold:  d.UpperThreshold,
		LowerThreshold:  d.LowerThreshold,
	}, nil
}

// fromKernelDest converts a destination read from the kernel.
func fromKernelDest(d *moby.Destination) (dataplane.Destination, error) {
	a, err := ipToAddr(d.Address, d.AddressFamily)
	if err != nil {
		return dataplane.Destination{}, err
	}
	fwd, err := forwardName(d.ConnectionFlags)
	if err != nil {
		return dataplane.Destination{}, fmt.Errorf("destination %s: %w", netip.AddrPortFrom(a, d.Port), err)
	}
	return dataplane.Destination{
		Address:        a,
		Port:           d.Port,
		Weight:         d.Weight,
		Forward:        fwd,
		UpperThreshold: d.UpperThreshold,
		LowerThreshold: d.LowerThreshold,
	}, nil
}
