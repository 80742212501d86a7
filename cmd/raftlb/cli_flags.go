package main

import (
	"flag"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/raftlb/raftlb/model"
)

// flagSet wraps flag.FlagSet with aliases (-t and -tcp set the same value),
// interspersed positionals, and a record of which flags were given.
type flagSet struct {
	fs     *flag.FlagSet
	docs   []*flagDoc        // in registration order, for usage
	canon  map[string]string // every name → its canonical (first) name
	set    map[string]bool   // canonical names given on the command line
	global bool              // flags registered now are client flags
}

type flagDoc struct {
	names  []string
	global bool
}

func newFlagSet(name string) *flagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return &flagSet{fs: fs, canon: map[string]string{}, set: map[string]bool{}}
}

// Var registers v under names, a comma-separated list of aliases whose
// first is canonical ("t,tcp"). Put the value's name in backquotes in usage.
func (f *flagSet) Var(v flag.Value, names, usage string) {
	ns := strings.Split(names, ",")
	for _, n := range ns {
		f.fs.Var(v, n, usage)
		f.canon[n] = ns[0]
	}
	f.docs = append(f.docs, &flagDoc{names: ns, global: f.global})
}

func (f *flagSet) String(p *string, names, def, usage string) {
	*p = def
	f.Var((*stringValue)(p), names, usage)
}

func (f *flagSet) Int(p *int, names, usage string) {
	f.Var((*intValue)(p), names, usage)
}

func (f *flagSet) Bool(p *bool, names, usage string) {
	f.Var((*boolValue)(p), names, usage)
}

// isSet reports whether the flag (any of its names) was given.
func (f *flagSet) isSet(name string) bool { return f.set[f.canon[name]] }

// anySet returns the names of those of the given flags that were given.
func (f *flagSet) anySet(names ...string) []string {
	var out []string
	for _, n := range names {
		if f.isSet(n) {
			out = append(out, "-"+n)
		}
	}
	return out
}

// ownSet reports whether any of the command's own (not client) flags was
// given.
func (f *flagSet) ownSet() bool {
	for _, d := range f.docs {
		if !d.global && f.set[d.names[0]] {
			return true
		}
	}
	return false
}

// parse parses args, collecting positionals wherever they appear; "--" ends
// the flags.
func (f *flagSet) parse(args []string) ([]string, error) {
	var pos []string
	for {
		if err := f.fs.Parse(args); err != nil {
			return nil, err
		}
		rest := f.fs.Args()
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" && !f.isValueOfPrevious(args, consumed-1) {
			pos = append(pos, rest...)
			break
		}
		if len(rest) == 0 {
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	f.fs.Visit(func(fl *flag.Flag) { f.set[f.canon[fl.Name]] = true })
	return pos, nil
}

// isValueOfPrevious reports whether args[i] is the value of a non-boolean
// flag given as a separate argument just before it ("-token --").
func (f *flagSet) isValueOfPrevious(args []string, i int) bool {
	if i == 0 {
		return false
	}
	prev := args[i-1]
	if !strings.HasPrefix(prev, "-") || strings.Contains(prev, "=") || prev == "--" {
		return false
	}
	fl := f.fs.Lookup(strings.TrimLeft(prev, "-"))
	if fl == nil {
		return false
	}
	b, ok := fl.Value.(interface{ IsBoolFlag() bool })
	return !ok || !b.IsBoolFlag()
}

// printDefaults writes the command's (global=false) or client (global=true)
// flags, aliases together, under title.
func (f *flagSet) printDefaults(w io.Writer, global bool, title string) {
	type line struct{ left, usage string }
	var lines []line
	width := 0
	for _, d := range f.docs {
		if d.global != global {
			continue
		}
		fl := f.fs.Lookup(d.names[0])
		valName, usage := flag.UnquoteUsage(fl)
		names := make([]string, len(d.names))
		for i, n := range d.names {
			names[i] = "-" + n
		}
		left := strings.Join(names, ", ")
		if valName != "" {
			left += " " + valName
		}
		if fl.DefValue != "" && fl.DefValue != "0" && fl.DefValue != "false" {
			usage += fmt.Sprintf(" (default %s)", fl.DefValue)
		}
		lines = append(lines, line{left, usage})
		width = max(width, len(left))
	}
	if len(lines) == 0 {
		return
	}
	fmt.Fprint(w, title)
	for _, l := range lines {
		fmt.Fprintf(w, "  %-*s  %s\n", width, l.left, l.usage)
	}
}

// ---- flag values ----

type stringValue string

func (s *stringValue) Set(v string) error { *s = stringValue(v); return nil }
func (s *stringValue) String() string     { return string(*s) }

type intValue int

func (n *intValue) Set(v string) error {
	i, err := strconv.Atoi(v)
	if err != nil {
		return fmt.Errorf("%q is not a whole number", v)
	}
	*n = intValue(i)
	return nil
}
func (n *intValue) String() string { return strconv.Itoa(int(*n)) }

type boolValue bool

func (b *boolValue) Set(v string) error {
	x, err := strconv.ParseBool(v)
	if err != nil {
		return fmt.Errorf("%q is not true or false", v)
	}
	*b = boolValue(x)
	return nil
}
func (b *boolValue) String() string   { return strconv.FormatBool(bool(*b)) }
func (b *boolValue) IsBoolFlag() bool { return true }

// enumValue accepts one of choices ("" too when allowEmpty).
type enumValue struct {
	p          *string
	choices    []string
	allowEmpty bool
}

func (e *enumValue) Set(v string) error {
	if !slices.Contains(e.choices, v) && (v != "" || !e.allowEmpty) {
		return fmt.Errorf("want %s", orList(e.choices))
	}
	*e.p = v
	return nil
}

func (e *enumValue) String() string {
	if e.p == nil {
		return ""
	}
	return *e.p
}

// orList spells choices as "a, b or c".
func orList(choices []string) string {
	if len(choices) < 2 {
		return strings.Join(choices, "")
	}
	return strings.Join(choices[:len(choices)-1], ", ") + " or " + choices[len(choices)-1]
}

// listValue is a comma-separated list; an empty string clears it.
type listValue struct{ p *[]string }

func (l listValue) Set(v string) error {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	*l.p = out
	return nil
}

func (l listValue) String() string {
	if l.p == nil {
		return ""
	}
	return strings.Join(*l.p, ",")
}

// svcAddr is the protocol and address of a virtual service; -t, -u and
// -sctp all write to it.
type svcAddr struct {
	proto string
	ap    netip.AddrPort
}

type svcAddrValue struct {
	proto string
	dst   *svcAddr
}

func (v svcAddrValue) Set(s string) error {
	ap, err := parseServiceAddr(s)
	if err != nil {
		return err
	}
	*v.dst = svcAddr{proto: v.proto, ap: ap}
	return nil
}

func (v svcAddrValue) String() string {
	if v.dst == nil || !v.dst.ap.IsValid() {
		return ""
	}
	return v.dst.ap.String()
}

// fwmarkValue is a firewall mark, decimal or 0x hex, 1-4294967295.
type fwmarkValue struct{ p *uint32 }

func (v fwmarkValue) Set(s string) error {
	n, err := strconv.ParseUint(s, 0, 32)
	if err != nil || n == 0 {
		return fmt.Errorf("want a firewall mark from 1 to 4294967295 (decimal or 0x hex)")
	}
	*v.p = uint32(n)
	return nil
}

func (v fwmarkValue) String() string {
	if v.p == nil || *v.p == 0 {
		return ""
	}
	return strconv.FormatUint(uint64(*v.p), 10)
}

// netmaskValue is a persistence netmask: a prefix length, or an IPv4 mask
// in dotted form as ipvsadm -M takes it.
type netmaskValue struct{ p *int }

func (v netmaskValue) Set(s string) error {
	n, err := parseNetmask(s)
	if err != nil {
		return err
	}
	*v.p = n
	return nil
}

func (v netmaskValue) String() string {
	if v.p == nil {
		return ""
	}
	return strconv.Itoa(*v.p)
}

func parseNetmask(s string) (int, error) {
	if n, err := strconv.Atoi(s); err == nil {
		if n < 0 || n > 128 {
			return 0, fmt.Errorf("prefix length %d is out of range (0-128)", n)
		}
		return n, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || !a.Is4() {
		return 0, fmt.Errorf("want a prefix length or an IPv4 netmask such as 255.255.255.0")
	}
	b := a.As4()
	bits := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
	ones := 0
	for bits&(1<<31) != 0 {
		ones++
		bits <<= 1
	}
	if bits != 0 {
		return 0, fmt.Errorf("%s is not a contiguous netmask", s)
	}
	return ones, nil
}

// ---- addresses ----

// parseServiceAddr parses a virtual service's ADDR:PORT ([addr]:port for
// IPv6). The port is required: 0 means all ports (with persistence).
func parseServiceAddr(s string) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err == nil {
		return ap, nil
	}
	if _, err := netip.ParseAddr(strings.Trim(s, "[]")); err == nil {
		return ap, fmt.Errorf("missing :PORT (IPv6 as [addr]:port; port 0 = all ports, with -p)")
	}
	return ap, fmt.Errorf("want ADDR:PORT (IPv6 as [addr]:port)")
}

// parseRealAddr parses a real server's ADDR[:PORT]: "10.0.0.1:80",
// "[2001:db8::1]:80", or a bare address (IPv6 with or without brackets),
// which means port 0: the service's port. hasPort says whether a port was
// given.
func parseRealAddr(s string) (addr netip.Addr, port int, hasPort bool, err error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr(), int(ap.Port()), true, nil
	}
	bare := s
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		bare = s[1 : len(s)-1]
	}
	if a, err := netip.ParseAddr(bare); err == nil {
		return a, 0, false, nil
	}
	return netip.Addr{}, 0, false, fmt.Errorf("%q is not ADDR[:PORT] (IPv6 as [addr]:port or a bare address)", s)
}

// durationValue is a Go duration ("2s", "500ms"), or a number of seconds
// as keepalived writes them ("2", "0.5").
type durationValue struct{ p *model.Duration }

func (v durationValue) Set(s string) error {
	if d, err := time.ParseDuration(s); err == nil {
		*v.p = model.Duration(d)
		return nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) || math.Abs(f) > float64(math.MaxInt64/int64(time.Second)) {
		return fmt.Errorf("%q is not a duration (e.g. 2s, 500ms, or seconds)", s)
	}
	*v.p = model.Duration(f * float64(time.Second))
	return nil
}

func (v durationValue) String() string {
	if v.p == nil || *v.p == 0 {
		return ""
	}
	return v.p.D().String()
}

// multiValue collects every occurrence of a repeatable flag, in order.
type multiValue struct{ p *[]string }

func (m multiValue) Set(v string) error { *m.p = append(*m.p, v); return nil }

func (m multiValue) String() string {
	if m.p == nil {
		return ""
	}
	return strings.Join(*m.p, " ")
}
