package main

import (
	"fmt"
	"io"
	"net/netip"
	"strconv"
	"strings"

	"github.com/raftlb/raftlb/api/client"
	"github.com/raftlb/raftlb/fsm"
)

// raftlb service ...

// serviceFlags are the flags of service add and service update, spelled as
// ipvsadm spells them plus long names.
type serviceFlags struct {
	addr       svcAddr
	fwmark     uint32
	family     string
	scheduler  string
	schedFlags []string
	persist    int
	netmask    int
	forward    string
}

// addrFlags are the flags that choose what the service matches; one at most.
var addrFlags = []string{"t", "u", "sctp", "f"}

func (s *serviceFlags) register(f *flagSet) {
	f.Var(svcAddrValue{proto: "tcp", dst: &s.addr}, "t,tcp", "TCP service at `ADDR:PORT` (IPv6 as [addr]:port; port 0 = all ports, with -p)")
	f.Var(svcAddrValue{proto: "udp", dst: &s.addr}, "u,udp", "UDP service at `ADDR:PORT`")
	f.Var(svcAddrValue{proto: "sctp", dst: &s.addr}, "sctp", "SCTP service at `ADDR:PORT`")
	f.Var(fwmarkValue{p: &s.fwmark}, "f,fwmark", "firewall-mark service: packets marked `MARK` (decimal or 0x hex)")
	f.Var(&enumValue{p: &s.family, choices: []string{fsm.FamilyInet, fsm.FamilyInet6}}, "family", "address `FAMILY` of a fwmark service: inet or inet6 (default inet)")
	f.Var(&enumValue{p: &s.scheduler, choices: fsm.Schedulers}, "s,scheduler", "scheduling `METHOD`: "+strings.Join(fsm.Schedulers, ", ")+" (default "+fsm.DefaultScheduler+")")
	f.Var(listValue{p: &s.schedFlags}, "b,sched-flags", "scheduler `FLAGS`, comma separated: sh-fallback, sh-port, mh-fallback, mh-port, ops (\"\" clears them)")
	f.Int(&s.persist, "p,persistent", "persistence timeout in `SECONDS` (0 = off)")
	f.Var(netmaskValue{p: &s.netmask}, "M,netmask", "persistence granularity: a prefix `LENGTH` or an IPv4 netmask (e.g. 24 or 255.255.255.0)")
	f.Var(&enumValue{p: &s.forward, choices: []string{fsm.ForwardNAT, fsm.ForwardDR, fsm.ForwardTUN}}, "forward", "default forwarding `METHOD` of its real servers: nat, dr or tun (default nat)")
}

// check rejects contradictory flags.
func (s *serviceFlags) check(f *flagSet) error {
	if set := f.anySet(addrFlags...); len(set) > 1 {
		return usagef("%s are mutually exclusive: a service is -t, -u, -sctp or -f", strings.Join(set, " and "))
	}
	return nil
}

// apply sets the fields of spec whose flags were given.
func (s *serviceFlags) apply(f *flagSet, spec *fsm.ServiceSpec) {
	if len(f.anySet("t", "u", "sctp")) > 0 {
		spec.Protocol, spec.Address, spec.Port = s.addr.proto, s.addr.ap.Addr().String(), int(s.addr.ap.Port())
		spec.Fwmark, spec.Family = 0, "" // the family follows the address
	}
	if f.isSet("f") {
		spec.Fwmark, spec.Protocol, spec.Address, spec.Port = s.fwmark, "", "", 0
	}
	if f.isSet("family") {
		spec.Family = s.family
	}
	if f.isSet("s") {
		spec.Scheduler = s.scheduler
	}
	if f.isSet("b") {
		spec.SchedFlags = s.schedFlags
	}
	if f.isSet("p") {
		spec.Persistence = s.persist
		if s.persist == 0 && !f.isSet("M") {
			spec.PersistNetmask = 0 // no persistence, no persistence mask
		}
	}
	if f.isSet("M") {
		spec.PersistNetmask = s.netmask
	}
	if f.isSet("forward") {
		spec.Forward = s.forward
	}
}

func serviceCommands() []*command {
	return []*command{
		{
			name: "service add", params: []string{"NAME"}, synopsis: "(-t|-u|-sctp ADDR:PORT | -f MARK) [flags]",
			summary: "create a virtual service (ipvsadm -A)",
			help: "create virtual service NAME, matching TCP, UDP or SCTP traffic to ADDR:PORT, " +
				"or packets carrying firewall mark MARK (like ipvsadm -A)",
			setup: func(f *flagSet) action {
				var sf serviceFlags
				sf.register(f)
				return func(e *env, args []string) error {
					if err := sf.check(f); err != nil {
						return err
					}
					if len(f.anySet(addrFlags...)) == 0 {
						return usagef("service add: missing -t, -u or -sctp ADDR:PORT, or -f MARK")
					}
					spec := fsm.NewServiceSpec()
					spec.Name = args[0]
					sf.apply(f, &spec)
					resp, err := e.c.CreateService(e.ctx, client.ServiceCreate{ServiceSpec: spec})
					if err != nil {
						return err
					}
					return e.wrote(resp, "service %s added", args[0])
				}
			},
		},
		{
			name: "service update", params: []string{"NAME"}, summary: "change the given settings of a service (ipvsadm -E)",
			help: "change the settings of service NAME given as flags, leaving the others as they are (like ipvsadm -E); " +
				"the service is read and written back with compare-and-set",
			setup: func(f *flagSet) action {
				var sf serviceFlags
				sf.register(f)
				return func(e *env, args []string) error {
					if err := sf.check(f); err != nil {
						return err
					}
					if !f.ownSet() {
						return usagef("service update: nothing to change: give at least one flag")
					}
					resp, err := e.c.ModifyService(e.ctx, args[0], func(spec *fsm.ServiceSpec) { sf.apply(f, spec) })
					if err != nil {
						return err
					}
					return e.wrote(resp, "service %s updated", args[0])
				}
			},
		},
		{
			name: "service delete", params: []string{"NAME"}, summary: "delete a service and its real servers (ipvsadm -D)",
			setup: func(f *flagSet) action {
				return func(e *env, args []string) error {
					resp, err := e.c.DeleteService(e.ctx, args[0], 0)
					if err != nil {
						return err
					}
					return e.wrote(resp, "service %s deleted", args[0])
				}
			},
		},
		{
			name: "service list", summary: "list the services and their real servers (ipvsadm -Ln)", kind: kindRead,
			setup: func(f *flagSet) action {
				return func(e *env, _ []string) error {
					svcs, _, err := e.c.Services(e.ctx, e.read)
					if err != nil {
						return err
					}
					return e.show(svcs, func(w io.Writer) { writeServiceList(w, svcs) })
				}
			},
		},
		{
			name: "service show", params: []string{"NAME"}, summary: "show one service and its real servers", kind: kindRead,
			setup: func(f *flagSet) action {
				return func(e *env, args []string) error {
					svc, err := e.c.Service(e.ctx, args[0], e.read)
					if err != nil {
						return err
					}
					return e.show(svc, func(w io.Writer) { writeService(w, svc) })
				}
			},
		},
	}
}

// serviceProto is the Prot column: TCP, UDP, SCTP or FWM.
func serviceProto(s fsm.ServiceSpec) string {
	if s.Fwmark != 0 {
		return "FWM"
	}
	return strings.ToUpper(s.Protocol)
}

// serviceAddr is the LocalAddress:Port column: "192.0.2.10:80",
// "[2001:db8::1]:443" or, for a fwmark service, "7 (inet)".
func serviceAddr(s fsm.ServiceSpec) string {
	if s.Fwmark != 0 {
		return fmt.Sprintf("%d (%s)", s.Fwmark, s.Family)
	}
	return fsm.RealKey(s.Address, s.Port)
}

// serviceFlagsText is the Flags column, as ipvsadm prints it:
// "persistent 300 mask 255.255.255.0 sh-port".
func serviceFlagsText(s fsm.ServiceSpec) string {
	var parts []string
	if s.Persistence != 0 {
		parts = append(parts, "persistent "+strconv.Itoa(s.Persistence))
		if s.PersistNetmask != 0 {
			parts = append(parts, "mask "+netmaskText(s.Family, s.PersistNetmask))
		}
	}
	if len(s.SchedFlags) > 0 {
		parts = append(parts, strings.Join(s.SchedFlags, ","))
	}
	return strings.Join(parts, " ")
}

// netmaskText prints an IPv4 persistence mask dotted and an IPv6 one as a
// prefix length, like ipvsadm.
func netmaskText(family string, bits int) string {
	if family == fsm.FamilyInet && bits >= 0 && bits <= 32 {
		var b [4]byte
		for i := range bits {
			b[i/8] |= 0x80 >> (i % 8)
		}
		return netip.AddrFrom4(b).String()
	}
	return strconv.Itoa(bits)
}

// forwardText is the Forward column in ipvsadm's words.
func forwardText(f string) string {
	switch f {
	case fsm.ForwardNAT:
		return "Masq"
	case fsm.ForwardDR:
		return "Route"
	case fsm.ForwardTUN:
		return "Tunnel"
	}
	return f
}

// realHeader and realRow are the columns of a real server line.
func realHeader(reals []fsm.RealServer) []string {
	h := []string{"RemoteAddress:Port", "Forward", "Weight", "State"}
	for _, r := range reals {
		if realFlagsText(r) != "" {
			return append(h, "Flags")
		}
	}
	return h
}

func realRow(s fsm.ServiceSpec, r fsm.RealServer) []string {
	return []string{r.Key(), forwardText(s.EffectiveForward(r)), strconv.Itoa(r.Weight), r.State, realFlagsText(r)}
}

func realFlagsText(r fsm.RealServer) string {
	var parts []string
	if r.UpperThreshold != 0 {
		parts = append(parts, "uthreshold "+strconv.Itoa(r.UpperThreshold))
	}
	if r.LowerThreshold != 0 {
		parts = append(parts, "lthreshold "+strconv.Itoa(r.LowerThreshold))
	}
	return strings.Join(parts, " ")
}

// writeServiceList prints services the way ipvsadm -Ln does: a line per
// service, then a line per real server; each kind of line is aligned on its
// own columns.
func writeServiceList(w io.Writer, svcs []fsm.Service) {
	var all []fsm.RealServer
	for _, s := range svcs {
		all = append(all, s.Reals...)
	}
	svcRows := [][]string{{"Prot", "LocalAddress:Port", "Scheduler", "Flags", "Name"}}
	realRows := [][]string{realHeader(all)}
	for _, s := range svcs {
		svcRows = append(svcRows, []string{serviceProto(s.ServiceSpec), serviceAddr(s.ServiceSpec), s.Scheduler, serviceFlagsText(s.ServiceSpec), s.Name})
		for _, r := range s.Reals {
			realRows = append(realRows, realRow(s.ServiceSpec, r))
		}
	}
	svcLines, realLines := alignRows(svcRows, 1), alignRows(realRows, 1)
	fmt.Fprintln(w, svcLines[0])
	fmt.Fprintln(w, "  -> "+realLines[0])
	n := 1
	for i, s := range svcs {
		fmt.Fprintln(w, svcLines[i+1])
		for range s.Reals {
			fmt.Fprintln(w, "  -> "+realLines[n])
			n++
		}
	}
}

// writeService prints one service in detail, then its real servers.
func writeService(w io.Writer, s fsm.Service) {
	writeFields(w, [][2]string{
		{"Name", s.Name},
		{"Service", serviceProto(s.ServiceSpec) + " " + serviceAddr(s.ServiceSpec)},
		{"Family", s.Family},
		{"Scheduler", s.Scheduler},
		{"Flags", orNone(serviceFlagsText(s.ServiceSpec))},
		{"Forward", s.Forward + " (" + forwardText(s.Forward) + ")"},
		{"Index", fmt.Sprintf("created %d, modified %d", s.CreateIndex, s.ModifyIndex)},
	})
	fmt.Fprintln(w)
	writeReals(w, s.ServiceSpec, s.Reals)
}

// writeReals prints the real servers of s as a table.
func writeReals(w io.Writer, s fsm.ServiceSpec, reals []fsm.RealServer) {
	if len(reals) == 0 {
		fmt.Fprintf(w, "service %s has no real servers\n", s.Name)
		return
	}
	rows := [][]string{realHeader(reals)}
	for _, r := range reals {
		rows = append(rows, realRow(s, r))
	}
	writeTable(w, rows)
}
