package guest

import (
	"bufio"
	"fmt"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/raftlb/raftlb/dataplane"
)

// These parsers read ipvsadm's output (version 1.31) into a
// dataplane.Table, so that the tests compare what the Backend programmed
// with what an independent reader sees. Neither format shows everything:
// ipvsadm-save has no thresholds, so both are completed with
// ParseThresholds.

// ParseSave parses `ipvsadm-save -n` (the same as `ipvsadm -S -n`):
//
//	-A -t 10.0.0.1:80 -s sh -p 300 -M 255.255.255.0 -b sh-fallback,sh-port
//	-a -t 10.0.0.1:80 -r 10.0.1.3:80 -i -w 65535 --tun-type ipip
//	-A -f 8 -6 -s rr -p 10
func ParseSave(out string) (dataplane.Table, error) {
	t := dataplane.Table{}
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if err := parseSaveLine(t, f); err != nil {
			return nil, fmt.Errorf("ipvsadm-save line %q: %w", sc.Text(), err)
		}
	}
	return t, nil
}

func parseSaveLine(t dataplane.Table, f []string) error {
	if f[0] != "-A" && f[0] != "-a" {
		return fmt.Errorf("neither -A nor -a")
	}
	var s dataplane.Service
	d := dataplane.Destination{Forward: "dr"} // ipvsadm's default, -g
	var mask string
	for i := 1; i < len(f); i++ {
		flag, v := f[i], ""
		switch flag {
		case "-t", "-u", "--sctp-service", "-r", "-f", "-s", "-p", "-M", "-b", "-w", "--tun-type":
			if i+1 >= len(f) {
				return fmt.Errorf("%s without a value", flag)
			}
			i++
			v = f[i]
		}
		var err error
		switch flag {
		case "-t", "-u", "--sctp-service":
			s.Protocol = map[string]string{"-t": "tcp", "-u": "udp", "--sctp-service": "sctp"}[flag]
			ap, err := netip.ParseAddrPort(v)
			if err != nil {
				return err
			}
			s.Address, s.Port, s.Family = ap.Addr(), ap.Port(), family(ap.Addr())
		case "-f":
			m, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return err
			}
			s.Fwmark, s.Family = uint32(m), "inet"
		case "-6":
			s.Family = "inet6"
		case "-s":
			s.Scheduler = v
		case "-p":
			n, err := strconv.ParseUint(v, 10, 32)
			if err != nil {
				return err
			}
			s.Timeout = uint32(n)
		case "-M":
			mask = v
		case "-o":
			s.Flags = append(s.Flags, "ops")
		case "-b":
			s.Flags = append(s.Flags, strings.Split(v, ",")...)
		case "-r":
			ap, err := netip.ParseAddrPort(v)
			if err != nil {
				return err
			}
			d.Address, d.Port = ap.Addr(), ap.Port()
		case "-m":
			d.Forward = "nat"
		case "-g":
			d.Forward = "dr"
		case "-i":
			d.Forward = "tun"
		case "-w":
			if d.Weight, err = strconv.Atoi(v); err != nil {
				return err
			}
		case "--tun-type":
			if v != "ipip" {
				return fmt.Errorf("tunnel type %s: raftlb programs only ipip", v)
			}
		default:
			return fmt.Errorf("unexpected %q", flag)
		}
	}
	if f[0] == "-a" {
		return addDest(t, s, d)
	}
	var err error
	if s.Netmask, err = parseMask(s.Family, mask); err != nil {
		return err
	}
	return addService(t, s)
}

// ParseList parses `ipvsadm -Ln`:
//
//	TCP  10.0.0.1:80 sh (sh-fallback,sh-port) persistent 300 mask 255.255.255.0
//	  -> 10.0.1.1:80                  Masq    3      0          0
//	FWM  8 IPv6 rr persistent 10
//	UDP  10.0.0.1:53 mh (mh-port) ops
func ParseList(out string) (dataplane.Table, error) {
	t := dataplane.Table{}
	var cur *dataplane.Service
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 || isListHeader(line) {
			continue
		}
		var err error
		if f[0] == "->" {
			if cur == nil {
				return nil, fmt.Errorf("ipvsadm -Ln: destination before any service: %q", line)
			}
			err = parseListDest(t, *cur, f)
		} else {
			var s dataplane.Service
			if s, err = parseListService(f); err == nil {
				cur = &s
				err = addService(t, s)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("ipvsadm -Ln line %q: %w", line, err)
		}
	}
	return t, nil
}

func isListHeader(line string) bool {
	for _, p := range []string{"IP Virtual Server", "Prot LocalAddress", "  -> RemoteAddress"} {
		if strings.HasPrefix(line, p) {
			return true
		}
	}
	return false
}

func parseListService(f []string) (dataplane.Service, error) {
	var s dataplane.Service
	var rest []string
	switch f[0] {
	case "TCP", "UDP", "SCTP":
		if len(f) < 3 {
			return s, fmt.Errorf("short service line")
		}
		ap, err := netip.ParseAddrPort(f[1])
		if err != nil {
			return s, err
		}
		s.Protocol, s.Address, s.Port, s.Family = strings.ToLower(f[0]), ap.Addr(), ap.Port(), family(ap.Addr())
		s.Scheduler, rest = f[2], f[3:]
	case "FWM":
		if len(f) < 3 {
			return s, fmt.Errorf("short service line")
		}
		m, err := strconv.ParseUint(f[1], 10, 32)
		if err != nil {
			return s, err
		}
		s.Fwmark, s.Family, rest = uint32(m), "inet", f[2:]
		if rest[0] == "IPv6" {
			s.Family, rest = "inet6", rest[1:]
		}
		if len(rest) == 0 {
			return s, fmt.Errorf("no scheduler")
		}
		s.Scheduler, rest = rest[0], rest[1:]
	default:
		return s, fmt.Errorf("unknown protocol %q", f[0])
	}
	var mask string
	for i := 0; i < len(rest); i++ {
		switch w := rest[i]; {
		case strings.HasPrefix(w, "(") && strings.HasSuffix(w, ")"):
			s.Flags = append(s.Flags, strings.Split(strings.Trim(w, "()"), ",")...)
		case w == "ops":
			s.Flags = append(s.Flags, "ops")
		case (w == "persistent" || w == "mask") && i+1 < len(rest):
			i++
			if w == "mask" {
				mask = rest[i]
				continue
			}
			n, err := strconv.ParseUint(rest[i], 10, 32)
			if err != nil {
				return s, err
			}
			s.Timeout = uint32(n)
		default:
			return s, fmt.Errorf("unexpected %q", w)
		}
	}
	var err error
	s.Netmask, err = parseMask(s.Family, mask)
	return s, err
}

var forwardNames = map[string]string{"Masq": "nat", "Route": "dr", "Tunnel": "tun", "Local": "local"}

func parseListDest(t dataplane.Table, s dataplane.Service, f []string) error {
	if len(f) < 4 {
		return fmt.Errorf("short destination line")
	}
	ap, err := netip.ParseAddrPort(f[1])
	if err != nil {
		return err
	}
	fwd, ok := forwardNames[f[2]]
	if !ok {
		return fmt.Errorf("unknown forwarding %q", f[2])
	}
	w, err := strconv.Atoi(f[3])
	if err != nil {
		return err
	}
	return addDest(t, s, dataplane.Destination{Address: ap.Addr(), Port: ap.Port(), Forward: fwd, Weight: w})
}

// Thresholds are the upper and lower connection thresholds of one
// destination.
type Thresholds struct{ Upper, Lower uint32 }

// ParseThresholds parses `ipvsadm -Ln --thresholds` into thresholds by
// service key and destination key.
func ParseThresholds(out string) (map[string]map[string]Thresholds, error) {
	res := map[string]map[string]Thresholds{}
	var cur string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 || isListHeader(line) {
			continue
		}
		if f[0] != "->" {
			s, err := parseListService(f)
			if err != nil {
				return nil, fmt.Errorf("ipvsadm --thresholds line %q: %w", line, err)
			}
			cur = s.Key()
			res[cur] = map[string]Thresholds{}
			continue
		}
		if len(f) < 4 || cur == "" {
			return nil, fmt.Errorf("ipvsadm --thresholds line %q: short or orphan", line)
		}
		ap, err1 := netip.ParseAddrPort(f[1])
		u, err2 := strconv.ParseUint(f[2], 10, 32)
		l, err3 := strconv.ParseUint(f[3], 10, 32)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("ipvsadm --thresholds line %q: bad fields", line)
		}
		res[cur][ap.String()] = Thresholds{Upper: uint32(u), Lower: uint32(l)}
	}
	return res, nil
}

// WithThresholds returns t with the thresholds from th filled in.
func WithThresholds(t dataplane.Table, th map[string]map[string]Thresholds) dataplane.Table {
	for sk, vs := range t {
		for dk, d := range vs.Dests {
			x := th[sk][dk]
			d.UpperThreshold, d.LowerThreshold = x.Upper, x.Lower
			vs.Dests[dk] = d
		}
	}
	return t
}

// Conn is one line of `ipvsadm -Lnc`.
type Conn struct {
	Proto, State                 string
	Source, Virtual, Destination netip.AddrPort
}

// ParseConns parses `ipvsadm -Lnc`:
//
//	pro expire state       source             virtual            destination
//	TCP 01:57  TIME_WAIT   10.0.0.2:41234     10.0.0.100:80      10.0.1.1:80
func ParseConns(out string) ([]Conn, error) {
	var res []Conn
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 6 || f[0] == "pro" {
			continue
		}
		var c Conn
		var err error
		c.Proto, c.State = f[0], f[2]
		if c.Source, err = netip.ParseAddrPort(f[3]); err != nil {
			return nil, fmt.Errorf("ipvsadm -Lnc line %q: %w", sc.Text(), err)
		}
		if c.Virtual, err = netip.ParseAddrPort(f[4]); err != nil {
			return nil, fmt.Errorf("ipvsadm -Lnc line %q: %w", sc.Text(), err)
		}
		if c.Destination, err = netip.ParseAddrPort(f[5]); err != nil {
			return nil, fmt.Errorf("ipvsadm -Lnc line %q: %w", sc.Text(), err)
		}
		res = append(res, c)
	}
	return res, nil
}

var timeoutRE = regexp.MustCompile(`Timeout \(tcp tcpfin udp\): (\d+) (\d+) (\d+)`)

// ParseTimeouts parses `ipvsadm -L --timeout`.
func ParseTimeouts(out string) (dataplane.Timeouts, error) {
	m := timeoutRE.FindStringSubmatch(out)
	if m == nil {
		return dataplane.Timeouts{}, fmt.Errorf("no timeouts in %q", out)
	}
	var t dataplane.Timeouts
	t.TCP, _ = strconv.Atoi(m[1])
	t.TCPFin, _ = strconv.Atoi(m[2])
	t.UDP, _ = strconv.Atoi(m[3])
	return t, nil
}

var daemonRE = regexp.MustCompile(`(master|backup) sync daemon \(([^)]*)\)`)

// ParseDaemons parses `ipvsadm -L --daemon` into role -> key=value pairs
// (mcast, syncid, and in newer ipvsadm maxlen, group, port, ttl).
func ParseDaemons(out string) map[string]map[string]string {
	res := map[string]map[string]string{}
	for _, m := range daemonRE.FindAllStringSubmatch(out, -1) {
		kv := map[string]string{}
		for _, p := range strings.Split(m[2], ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(p), "=")
			kv[k] = v
		}
		res[m[1]] = kv
	}
	return res
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "inet"
	}
	return "inet6"
}

// parseMask turns ipvsadm's persistence mask (dotted IPv4 mask or IPv6
// prefix length; "" = the whole address) into the dataplane prefix length.
func parseMask(fam, mask string) (int, error) {
	if mask == "" {
		return 0, nil
	}
	if fam == "inet6" {
		n, err := strconv.Atoi(mask)
		if err != nil || n < 1 || n > 128 {
			return 0, fmt.Errorf("IPv6 mask %q", mask)
		}
		return n % 128, nil
	}
	ip := net.ParseIP(mask).To4()
	if ip == nil {
		return 0, fmt.Errorf("IPv4 mask %q", mask)
	}
	ones, bits := net.IPMask(ip).Size()
	if bits == 0 {
		return 0, fmt.Errorf("IPv4 mask %q is not contiguous", mask)
	}
	return ones % 32, nil
}

func addService(t dataplane.Table, s dataplane.Service) error {
	slices.Sort(s.Flags)
	if _, dup := t[s.Key()]; dup {
		return fmt.Errorf("service %s listed twice", s.Key())
	}
	t[s.Key()] = dataplane.VirtualService{Service: s, Dests: map[string]dataplane.Destination{}}
	return nil
}

func addDest(t dataplane.Table, s dataplane.Service, d dataplane.Destination) error {
	vs, ok := t[s.Key()]
	if !ok {
		return fmt.Errorf("destination %s of unknown service %s", d.Key(), s.Key())
	}
	vs.Dests[d.Key()] = d
	return nil
}

// DiffTables describes how got differs from want ("" if equal), service by
// service and destination by destination.
func DiffTables(want, got dataplane.Table) string {
	var b strings.Builder
	keys := make([]string, 0, len(want)+len(got))
	for k := range want {
		keys = append(keys, k)
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		w, inW := want[k]
		g, inG := got[k]
		switch {
		case !inG:
			fmt.Fprintf(&b, "missing service %s\n", k)
			continue
		case !inW:
			fmt.Fprintf(&b, "unexpected service %s %+v\n", k, g.Service)
			continue
		case !w.Service.Equal(g.Service):
			fmt.Fprintf(&b, "service %s:\n  want %+v\n   got %+v\n", k, w.Service, g.Service)
		}
		for dk, wd := range w.Dests {
			if gd, ok := g.Dests[dk]; !ok {
				fmt.Fprintf(&b, "service %s: missing destination %s\n", k, dk)
			} else if gd != wd {
				fmt.Fprintf(&b, "service %s destination %s:\n  want %+v\n   got %+v\n", k, dk, wd, gd)
			}
		}
		for dk, gd := range g.Dests {
			if _, ok := w.Dests[dk]; !ok {
				fmt.Fprintf(&b, "service %s: unexpected destination %s %+v\n", k, dk, gd)
			}
		}
	}
	return b.String()
}
