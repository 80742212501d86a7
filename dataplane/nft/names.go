package nft

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/raftlb/raftlb/dataplane"
)

// Names of raftlb's objects. Everything lives in one table; nothing outside
// it is read for services or ever written.
const (
	tableName = "raftlb"

	chainPrerouting = "prerouting"
	chainOutput     = "output"

	// The dispatch verdict maps, looked up in this order by both base
	// chains (IPVS's precedence: fwmark, then protocol+address+port, then
	// the port-zero "all ports" service of the address).
	mapFwmark4   = "fwmark4"   // meta mark → goto svc_…           (IPv4 packets)
	mapFwmark6   = "fwmark6"   // meta mark → goto svc_…           (IPv6 packets)
	mapServices4 = "services4" // l4proto . ip daddr . th dport → goto svc_…
	mapServices6 = "services6" // l4proto . ip6 daddr . th dport → goto svc_…
	mapAllPorts4 = "allports4" // l4proto . ip daddr → goto svc_…
	mapAllPorts6 = "allports6" // l4proto . ip6 daddr → goto svc_…

	// Per-service object prefixes; the rest of the name is the service's
	// suffix (see suffix), and for per_ objects the destination's.
	prefixChain = "svc_" // the service's chain
	prefixDests = "dst_" // set of its destinations, weights in comments
	prefixPin   = "per_" // persistence: the set of remembered clients; per destination, the chain adding to it
)

var baseMaps = []string{mapFwmark4, mapFwmark6, mapServices4, mapServices6, mapAllPorts4, mapAllPorts6}

var protoNumbers = map[string]byte{"tcp": 6, "udp": 17, "sctp": 132}

func protoName(n byte) string {
	for name, v := range protoNumbers {
		if v == n {
			return name
		}
	}
	return ""
}

// suffix names a service's objects: "tcp_192.0.2.1_80",
// "udp_2001-db8--1_53" (':' becomes '-', which addresses never contain) and
// "fwm_inet_7". Every such name is a bare identifier for the nft tool, and
// the mapping is one to one (parseSuffix inverts it).
func suffix(s dataplane.Service) string {
	if s.Fwmark != 0 {
		return "fwm_" + s.Family + "_" + strconv.FormatUint(uint64(s.Fwmark), 10)
	}
	return s.Protocol + "_" + strings.ReplaceAll(s.Address.String(), ":", "-") + "_" + strconv.FormatUint(uint64(s.Port), 10)
}

func chainOf(s dataplane.Service) string { return prefixChain + suffix(s) }
func destsOf(s dataplane.Service) string { return prefixDests + suffix(s) }

// pinSetOf names the persistence set of s: "per_tcp_192.0.2.1_80".
func pinSetOf(s dataplane.Service) string { return prefixPin + suffix(s) }

// pinName names the persistence chain of destination d of s:
// "per_tcp_192.0.2.1_80_10.0.0.1_8080".
func pinName(s dataplane.Service, d dataplane.Destination) string {
	return prefixPin + suffix(s) + "_" + strings.ReplaceAll(d.Address.String(), ":", "-") + "_" + strconv.FormatUint(uint64(d.Port), 10)
}

// pinService returns the suffix of the service a per_ chain (pin) name
// belongs to.
func pinService(name string) (string, bool) {
	rest, ok := strings.CutPrefix(name, prefixPin)
	parts := strings.Split(rest, "_")
	if !ok || len(parts) != 5 {
		return "", false
	}
	sfx := strings.Join(parts[:3], "_")
	_, ok = parseSuffix(sfx)
	return sfx, ok
}

// parseSuffix returns the identity (Protocol, Address, Port or Fwmark, and
// Family) that suffix names; ok is false for any name suffix would not
// produce.
func parseSuffix(sfx string) (s dataplane.Service, ok bool) {
	parts := strings.Split(sfx, "_")
	if len(parts) != 3 {
		return s, false
	}
	if parts[0] == "fwm" {
		mark, err := strconv.ParseUint(parts[2], 10, 32)
		if err != nil || mark == 0 || (parts[1] != "inet" && parts[1] != "inet6") {
			return s, false
		}
		s = dataplane.Service{Fwmark: uint32(mark), Family: parts[1]}
	} else {
		if _, known := protoNumbers[parts[0]]; !known {
			return s, false
		}
		addr, err := netip.ParseAddr(strings.ReplaceAll(parts[1], "-", ":"))
		port, perr := strconv.ParseUint(parts[2], 10, 16)
		if err != nil || perr != nil || addr.Zone() != "" {
			return s, false
		}
		s = dataplane.Service{Protocol: parts[0], Address: addr, Port: uint16(port), Family: familyOf(addr)}
	}
	return s, suffix(s) == sfx // rejects non-canonical spellings
}

func familyOf(a netip.Addr) string {
	if a.Is4() {
		return "inet"
	}
	return "inet6"
}

// identity is the part of a service that its key and names carry.
func identity(s dataplane.Service) dataplane.Service {
	return dataplane.Service{Protocol: s.Protocol, Address: s.Address, Port: s.Port, Fwmark: s.Fwmark, Family: s.Family}
}
