package main

import (
	"fmt"
	"io"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/raftlb/raftlb/api/client"
	"github.com/raftlb/raftlb/model"
)

// raftlb service ...

// serviceFlags are the flags of service add and service update, spelled as
// ipvsadm spells them plus long names.
type serviceFlags struct {
	addr   svcAddr
	fwmark uint32
	spec   model.ServiceSpec // the fields, as the flags give them
	health healthFlags
}

// serviceFields are the flags that set one field of a service spec each.
var serviceFields = []fieldFlag[model.ServiceSpec]{
	{"family", func(d, s *model.ServiceSpec) { d.Family = s.Family }},
	{"s", func(d, s *model.ServiceSpec) { d.Scheduler = s.Scheduler }},
	{"b", func(d, s *model.ServiceSpec) { d.SchedFlags = s.SchedFlags }},
	{"p", func(d, s *model.ServiceSpec) { d.Persistence = s.Persistence }},
	{"M", func(d, s *model.ServiceSpec) { d.PersistNetmask = s.PersistNetmask }},
	{"forward", func(d, s *model.ServiceSpec) { d.Forward = s.Forward }},
}

// addrFlags are the flags that choose what the service matches; one at most.
var addrFlags = []string{"t", "u", "sctp", "f"}

func (s *serviceFlags) register(f *flagSet) {
	f.Var(svcAddrValue{proto: "tcp", dst: &s.addr}, "t,tcp", "TCP service at `ADDR:PORT` (IPv6 as [addr]:port; port 0 = all ports, with -p)")
	f.Var(svcAddrValue{proto: "udp", dst: &s.addr}, "u,udp", "UDP service at `ADDR:PORT`")
	f.Var(svcAddrValue{proto: "sctp", dst: &s.addr}, "sctp", "SCTP service at `ADDR:PORT`")
	f.Var(fwmarkValue{p: &s.fwmark}, "f,fwmark", "firewall-mark service: packets marked `MARK` (decimal or 0x hex)")
	f.Var(&enumValue{p: &s.spec.Family, choices: []string{model.FamilyInet, model.FamilyInet6}}, "family", "address `FAMILY` of a fwmark service: inet or inet6 (default inet)")
	f.Var(&enumValue{p: &s.spec.Scheduler, choices: model.Schedulers}, "s,scheduler", "scheduling `METHOD`: "+strings.Join(model.Schedulers, ", ")+" (default "+model.DefaultScheduler+")")
	f.Var(listValue{p: &s.spec.SchedFlags}, "b,sched-flags", "scheduler `FLAGS`, comma separated: sh-fallback, sh-port, mh-fallback, mh-port, ops (\"\" clears them)")
	f.Int(&s.spec.Persistence, "p,persistent", "persistence timeout in `SECONDS` (0 = off)")
	f.Var(netmaskValue{p: &s.spec.PersistNetmask}, "M,netmask", "persistence granularity: a prefix `LENGTH` or an IPv4 netmask (e.g. 24 or 255.255.255.0)")
	f.Var(&enumValue{p: &s.spec.Forward, choices: []string{model.ForwardNAT, model.ForwardDR, model.ForwardTUN}}, "forward", "default forwarding `METHOD` of its real servers: nat, dr or tun (default nat)")
	s.health.register(f)
}

// check rejects contradictory flags.
func (s *serviceFlags) check(f *flagSet) error {
	if set := f.anySet(addrFlags...); len(set) > 1 {
		return usagef("%s are mutually exclusive: a service is -t, -u, -sctp or -f", strings.Join(set, " and "))
	}
	return s.health.check(f)
}

// apply sets the fields of spec whose flags were given. Its errors are
// usage errors: a health flag that does not fit the service's check, or
// health settings that model.NormalizeService refuses.
func (s *serviceFlags) apply(f *flagSet, spec *model.ServiceSpec) error {
	if len(f.anySet("t", "u", "sctp")) > 0 {
		spec.Protocol, spec.Address, spec.Port = s.addr.proto, s.addr.ap.Addr().String(), int(s.addr.ap.Port())
		spec.Fwmark, spec.Family = 0, "" // the family follows the address
	}
	if f.isSet("f") {
		spec.Fwmark, spec.Protocol, spec.Address, spec.Port = s.fwmark, "", "", 0
	}
	applyFields(f, serviceFields, spec, &s.spec)
	if f.isSet("p") && s.spec.Persistence == 0 && !f.isSet("M") {
		spec.PersistNetmask = 0 // no persistence, no persistence mask
	}
	return s.health.apply(f, spec)
}

func serviceCommands() []*command {
	return []*command{
		{
			name: "service add", params: []string{"NAME"}, synopsis: "(-t|-u|-sctp ADDR:PORT | -f MARK) [flags]",
			summary: "create a virtual service (ipvsadm -A)",
			help: "create virtual service NAME, matching TCP, UDP or SCTP traffic to ADDR:PORT, " +
				"or packets carrying firewall mark MARK (like ipvsadm -A); -check TYPE health-checks its real servers " +
				"(e.g. -check http -path /health -expect 200-299)",
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
					spec := model.NewServiceSpec()
					spec.Name = args[0]
					if err := sf.apply(f, &spec); err != nil {
						return err
					}
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
				"health-check flags change only those settings of the current check (-check TYPE adds one or changes its type, " +
				"-no-check removes it); the service is read and written back with compare-and-set",
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
					resp, err := e.c.ModifyService(e.ctx, args[0], func(spec *model.ServiceSpec) error { return sf.apply(f, spec) })
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
func serviceProto(s model.ServiceSpec) string {
	if s.Fwmark != 0 {
		return "FWM"
	}
	return strings.ToUpper(s.Protocol)
}

// serviceAddr is the LocalAddress:Port column: "192.0.2.10:80",
// "[2001:db8::1]:443" or, for a fwmark service, "7 (inet)".
func serviceAddr(s model.ServiceSpec) string {
	if s.Fwmark != 0 {
		return fmt.Sprintf("%d (%s)", s.Fwmark, s.Family)
	}
	return model.RealKey(s.Address, s.Port)
}

// serviceFlagsText is the Flags column, as ipvsadm prints it:
// "persistent 300 mask 255.255.255.0 sh-port".
func serviceFlagsText(s model.ServiceSpec) string {
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
	if family == model.FamilyInet && bits >= 0 && bits <= 32 {
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
	case model.ForwardNAT:
		return "Masq"
	case model.ForwardDR:
		return "Route"
	case model.ForwardTUN:
		return "Tunnel"
	}
	return f
}

// realColumn is one column of the real server tables (service list and
// show, real list). Further columns (each director's view of a real
// server's health) are appended in realColumns.
type realColumn struct {
	title string
	cell  func(s model.ServiceSpec, r model.RealServer) string
}

// svcReal is a real server with its service's spec.
type svcReal struct {
	spec model.ServiceSpec
	real model.RealServer
}

// realColumns returns the columns for rows: the fixed ones, then those
// that some row needs (Health when a service is checked or a real server
// has a decision; Flags for thresholds; Reason of a decision last, as it
// is free text).
func realColumns(rows []svcReal) []realColumn {
	cols := []realColumn{
		{"RemoteAddress:Port", func(_ model.ServiceSpec, r model.RealServer) string { return r.Key() }},
		{"Forward", func(s model.ServiceSpec, r model.RealServer) string { return forwardText(s.EffectiveForward(r)) }},
		{"Weight", func(_ model.ServiceSpec, r model.RealServer) string { return strconv.Itoa(r.Weight) }},
		{"State", func(_ model.ServiceSpec, r model.RealServer) string { return r.State }},
	}
	optional := []struct {
		col  realColumn
		need func(svcReal) bool
	}{
		{realColumn{"Health", func(_ model.ServiceSpec, r model.RealServer) string { return healthText(r) }},
			func(x svcReal) bool { return x.spec.Check != nil || x.real.Health != nil }},
		{realColumn{"Flags", func(_ model.ServiceSpec, r model.RealServer) string { return realFlagsText(r) }},
			func(x svcReal) bool { return realFlagsText(x.real) != "" }},
		{realColumn{"Reason", func(_ model.ServiceSpec, r model.RealServer) string { return healthReason(r) }},
			func(x svcReal) bool { return healthReason(x.real) != "" }},
	}
	for _, o := range optional {
		if slices.ContainsFunc(rows, o.need) {
			cols = append(cols, o.col)
		}
	}
	return cols
}

// realTable returns the header and one row of cells per real server.
func realTable(rows []svcReal) [][]string {
	cols := realColumns(rows)
	out := make([][]string, 0, len(rows)+1)
	head := make([]string, len(cols))
	for i, c := range cols {
		head[i] = c.title
	}
	out = append(out, head)
	for _, x := range rows {
		cells := make([]string, len(cols))
		for i, c := range cols {
			cells[i] = c.cell(x.spec, x.real)
		}
		out = append(out, cells)
	}
	return out
}

// healthText is the Health column: the cluster's committed decision, up
// (with its dynamic weight: "up w=10") or down, or "-" when there is none
// (the real server counts as up).
func healthText(r model.RealServer) string {
	switch {
	case r.Health == nil:
		return "-"
	case r.Health.Up && r.Health.Weight != nil:
		return "up w=" + strconv.Itoa(*r.Health.Weight)
	case r.Health.Up:
		return "up"
	}
	return "down"
}

func healthReason(r model.RealServer) string {
	if r.Health == nil {
		return ""
	}
	return oneLine(r.Health.Reason)
}

func realFlagsText(r model.RealServer) string {
	var parts []string
	if r.UpperThreshold != 0 {
		parts = append(parts, "uthreshold "+strconv.Itoa(r.UpperThreshold))
	}
	if r.LowerThreshold != 0 {
		parts = append(parts, "lthreshold "+strconv.Itoa(r.LowerThreshold))
	}
	return strings.Join(parts, " ")
}

// checkText describes a service's health check on one line:
// "http /health 200-299 every 2s timeout 1s rise 2 fall 3, policy majority".
func checkText(s model.ServiceSpec) string {
	c := s.Check
	if c == nil {
		return ""
	}
	parts := []string{c.Type}
	if c.Port != 0 {
		parts = append(parts, "port "+strconv.Itoa(c.Port))
	}
	switch {
	case c.HTTP != nil:
		h := c.HTTP
		parts = append(parts, h.Path, h.Status)
		if h.Host != "" {
			parts = append(parts, "host "+h.Host)
		}
		if h.SNI != "" {
			parts = append(parts, "sni "+h.SNI)
		}
		if h.TLSVerify {
			parts = append(parts, "tls-verify")
		}
		if h.CAFile != "" {
			parts = append(parts, "ca "+h.CAFile)
		}
		if h.BodyRegex != "" {
			parts = append(parts, "body ~ "+strconv.Quote(h.BodyRegex))
		}
		if h.BodySHA256 != "" {
			parts = append(parts, "body sha256 "+h.BodySHA256[:min(12, len(h.BodySHA256))]+"…")
		}
	case c.UDP != nil:
		u := c.UDP
		if u.Payload != "" || u.PayloadHex != "" {
			parts = append(parts, "send "+bytesText(u.Payload, u.PayloadHex))
		}
		if u.Expect != "" || u.ExpectHex != "" {
			parts = append(parts, "expect "+bytesText(u.Expect, u.ExpectHex))
		}
		if u.RequireReply {
			parts = append(parts, "require-reply")
		}
	case c.DNS != nil:
		parts = append(parts, c.DNS.Name, c.DNS.QType, c.DNS.Rcode)
	case c.Script != nil:
		parts = append(parts, c.Script.Path)
		for _, a := range c.Script.Args {
			parts = append(parts, strconv.Quote(a))
		}
		if c.Script.Timeout != c.Timeout {
			parts = append(parts, "script-timeout "+durText(c.Script.Timeout))
		}
		if c.Script.Dynamic {
			parts = append(parts, "dynamic")
		}
	}
	if c.Type != model.CheckNone {
		parts = append(parts, "every "+durText(c.Interval), "timeout "+durText(c.Timeout))
		if c.Retries > 0 {
			parts = append(parts, fmt.Sprintf("retries %d delay %s", c.Retries, durText(c.RetryDelay)))
		}
		parts = append(parts, fmt.Sprintf("rise %d fall %d", c.Rise, c.Fall))
		if c.StartDown {
			parts = append(parts, "start-down")
		}
	}
	out := strings.Join(parts, " ") + ", policy " + s.EffectivePolicy()
	if s.InhibitOnFailure {
		out += ", inhibit"
	}
	return out
}

// bytesText spells a UDP payload: quoted text, or 0x hex.
func bytesText(text, hex string) string {
	if hex != "" {
		return "0x" + hex
	}
	return strconv.Quote(text)
}

// usesQuorum reports whether a service has a quorum to show: it is
// health-checked, or has a quorum, hysteresis or sorry server set.
func usesQuorum(s model.Service) bool {
	return s.Check != nil || s.Quorum != 0 || s.Hysteresis != 0 || s.SorryServer != nil || s.QuorumLost
}

// quorumText describes a service's quorum: "2 hysteresis 1: LOST (healthy
// weight 0)". The healthy weight is that of the enabled real servers not
// decided down, the FSM's measure.
func quorumText(s model.Service) string {
	out := strconv.Itoa(s.EffectiveQuorum())
	if s.Hysteresis != 0 {
		out += " hysteresis " + strconv.Itoa(s.Hysteresis)
	}
	state := "held"
	if s.QuorumLost {
		state = "LOST"
	}
	return fmt.Sprintf("%s: %s (healthy weight %d)", out, state, model.HealthyWeight(s.Reals))
}

// durText prints a duration without trailing zero units: 1m, 1h30m, 2s.
func durText(d model.Duration) string {
	t := d.D().String()
	if strings.HasSuffix(t, "m0s") {
		t = strings.TrimSuffix(t, "0s")
	}
	if strings.HasSuffix(t, "h0m") {
		t = strings.TrimSuffix(t, "0m")
	}
	return t
}

// sorryText is a sorry server's address and forwarding method:
// "192.0.2.99:80 (Masq)".
func sorryText(s model.ServiceSpec) string {
	ss := s.SorryServer
	fwd := ss.Forward
	if fwd == "" {
		fwd = s.Forward
	}
	return model.RealKey(ss.Address, ss.Port) + " (" + forwardText(fwd) + ")"
}

// sorryLine is the sorry server and whether it serves now.
func sorryLine(s model.Service) string {
	if s.SorryServer == nil {
		return ""
	}
	out := sorryText(s.ServiceSpec)
	if s.QuorumLost {
		out += ", serving"
	}
	return out
}

// writeServiceList prints services the way ipvsadm -Ln does: a line per
// service, then a line per real server; each kind of line is aligned on its
// own columns. A service with health checking has its check and quorum on
// lines of their own below it.
func writeServiceList(w io.Writer, svcs []model.Service) {
	var all []svcReal
	for _, s := range svcs {
		for _, r := range s.Reals {
			all = append(all, svcReal{s.ServiceSpec, r})
		}
	}
	svcRows := [][]string{{"Prot", "LocalAddress:Port", "Scheduler", "Flags", "Name"}}
	for _, s := range svcs {
		svcRows = append(svcRows, []string{serviceProto(s.ServiceSpec), serviceAddr(s.ServiceSpec), s.Scheduler, serviceFlagsText(s.ServiceSpec), s.Name})
	}
	svcLines, realLines := alignRows(svcRows, 1), alignRows(realTable(all), 1)
	fmt.Fprintln(w, svcLines[0])
	fmt.Fprintln(w, "  -> "+realLines[0])
	n := 1
	for i, s := range svcs {
		fmt.Fprintln(w, svcLines[i+1])
		if c := checkText(s.ServiceSpec); c != "" {
			fmt.Fprintln(w, "     check "+c)
		}
		if usesQuorum(s) {
			q := "quorum " + quorumText(s)
			if ss := sorryLine(s); ss != "" {
				q += "; sorry server " + ss
			}
			fmt.Fprintln(w, "     "+q)
		}
		for range s.Reals {
			fmt.Fprintln(w, "  -> "+realLines[n])
			n++
		}
	}
}

// writeService prints one service in detail, then its real servers.
func writeService(w io.Writer, s model.Service) {
	fields := [][2]string{
		{"Name", s.Name},
		{"Service", serviceProto(s.ServiceSpec) + " " + serviceAddr(s.ServiceSpec)},
		{"Family", s.Family},
		{"Scheduler", s.Scheduler},
		{"Flags", orNone(serviceFlagsText(s.ServiceSpec))},
		{"Forward", s.Forward + " (" + forwardText(s.Forward) + ")"},
		{"Check", orNone(checkText(s.ServiceSpec))},
	}
	if usesQuorum(s) {
		fields = append(fields, [2]string{"Quorum", quorumText(s)})
	}
	if ss := sorryLine(s); ss != "" {
		fields = append(fields, [2]string{"Sorry server", ss})
	}
	fields = append(fields, [2]string{"Index", fmt.Sprintf("created %d, modified %d", s.CreateIndex, s.ModifyIndex)})
	writeFields(w, fields)
	fmt.Fprintln(w)
	writeReals(w, s.ServiceSpec, s.Reals)
}

// writeReals prints the real servers of s as a table.
func writeReals(w io.Writer, s model.ServiceSpec, reals []model.RealServer) {
	if len(reals) == 0 {
		fmt.Fprintf(w, "service %s has no real servers\n", s.Name)
		return
	}
	rows := make([]svcReal, len(reals))
	for i, r := range reals {
		rows[i] = svcReal{s, r}
	}
	writeTable(w, realTable(rows))
}

// ---- health checking (service add/update) ----

// healthFlags are the health-checking flags of service add and update.
type healthFlags struct {
	spec          model.ServiceSpec // the health fields, as the flags give them (Check with every block)
	typ           string
	noCheck       bool
	scriptArgs    []string
	sorry, sorryF string
}

// healthFlagFields maps each health flag to the field of the service spec
// it sets, in JSON spelling, so that a field model.NormalizeService refuses is
// reported with the flag that set it.
var healthFlagFields = []struct {
	flag, field string
	copy        func(d, s *model.ServiceSpec) // the plain field copy (nil: set by code in apply)
}{
	{"check", "check.type", nil},
	{"check-port", "check.port", func(d, s *model.ServiceSpec) { d.Check.Port = s.Check.Port }},
	{"interval", "check.interval", func(d, s *model.ServiceSpec) { d.Check.Interval = s.Check.Interval }},
	{"timeout", "check.timeout", func(d, s *model.ServiceSpec) { d.Check.Timeout = s.Check.Timeout }},
	{"retries", "check.retries", func(d, s *model.ServiceSpec) { d.Check.Retries = s.Check.Retries }},
	{"retry-delay", "check.retry_delay", func(d, s *model.ServiceSpec) { d.Check.RetryDelay = s.Check.RetryDelay }},
	{"rise", "check.rise", func(d, s *model.ServiceSpec) { d.Check.Rise = s.Check.Rise }},
	{"fall", "check.fall", func(d, s *model.ServiceSpec) { d.Check.Fall = s.Check.Fall }},
	{"initial-delay", "check.initial_delay_max", func(d, s *model.ServiceSpec) { d.Check.InitialDelayMax = s.Check.InitialDelayMax }},
	{"start-down", "check.start_down", func(d, s *model.ServiceSpec) { d.Check.StartDown = s.Check.StartDown }},
	{"path", "check.http.path", func(d, s *model.ServiceSpec) { d.Check.HTTP.Path = s.Check.HTTP.Path }},
	{"expect", "check.http.status", func(d, s *model.ServiceSpec) { d.Check.HTTP.Status = s.Check.HTTP.Status }},
	{"host", "check.http.host", func(d, s *model.ServiceSpec) { d.Check.HTTP.Host = s.Check.HTTP.Host }},
	{"sni", "check.http.sni", func(d, s *model.ServiceSpec) { d.Check.HTTP.SNI = s.Check.HTTP.SNI }},
	{"tls-verify", "check.http.tls_verify", func(d, s *model.ServiceSpec) { d.Check.HTTP.TLSVerify = s.Check.HTTP.TLSVerify }},
	{"tls-ca-file", "check.http.ca_file", func(d, s *model.ServiceSpec) { d.Check.HTTP.CAFile = s.Check.HTTP.CAFile }},
	{"body-regex", "check.http.body_regex", func(d, s *model.ServiceSpec) { d.Check.HTTP.BodyRegex = s.Check.HTTP.BodyRegex }},
	{"body-sha256", "check.http.body_sha256", func(d, s *model.ServiceSpec) { d.Check.HTTP.BodySHA256 = s.Check.HTTP.BodySHA256 }},
	{"udp-payload", "check.udp.payload", copyUDPPayload},
	{"udp-payload-hex", "check.udp.payload_hex", copyUDPPayload},
	{"udp-expect", "check.udp.expect", copyUDPExpect},
	{"udp-expect-hex", "check.udp.expect_hex", copyUDPExpect},
	{"udp-require-reply", "check.udp.require_reply", func(d, s *model.ServiceSpec) { d.Check.UDP.RequireReply = s.Check.UDP.RequireReply }},
	{"dns-name", "check.dns.name", func(d, s *model.ServiceSpec) { d.Check.DNS.Name = s.Check.DNS.Name }},
	{"dns-type", "check.dns.qtype", func(d, s *model.ServiceSpec) { d.Check.DNS.QType = s.Check.DNS.QType }},
	{"dns-rcode", "check.dns.rcode", func(d, s *model.ServiceSpec) { d.Check.DNS.Rcode = s.Check.DNS.Rcode }},
	{"script", "check.script.path", func(d, s *model.ServiceSpec) { d.Check.Script.Path = s.Check.Script.Path }},
	{"script-arg", "check.script.args", nil},
	{"script-timeout", "check.script.timeout", func(d, s *model.ServiceSpec) { d.Check.Script.Timeout = s.Check.Script.Timeout }},
	{"script-dynamic", "check.script.dynamic", func(d, s *model.ServiceSpec) { d.Check.Script.Dynamic = s.Check.Script.Dynamic }},
	{"health-policy", "health_policy", func(d, s *model.ServiceSpec) { d.HealthPolicy = s.HealthPolicy }},
	{"inhibit", "inhibit_on_failure", func(d, s *model.ServiceSpec) { d.InhibitOnFailure = s.InhibitOnFailure }},
	{"quorum", "quorum", func(d, s *model.ServiceSpec) { d.Quorum = s.Quorum }},
	{"hysteresis", "hysteresis", func(d, s *model.ServiceSpec) { d.Hysteresis = s.Hysteresis }},
	{"sorry-server", "sorry_server.address", nil},
	{"sorry-server", "sorry_server.port", nil},
	{"sorry-forward", "sorry_server.forward", nil},
	{"no-check", "check", nil},
}

// Text and hex spell the same bytes: giving one replaces the other (and
// giving both is refused by model.NormalizeCheck).
func copyUDPPayload(d, s *model.ServiceSpec) {
	d.Check.UDP.Payload, d.Check.UDP.PayloadHex = s.Check.UDP.Payload, s.Check.UDP.PayloadHex
}

func copyUDPExpect(d, s *model.ServiceSpec) {
	d.Check.UDP.Expect, d.Check.UDP.ExpectHex = s.Check.UDP.Expect, s.Check.UDP.ExpectHex
}

// checkTypes are the accepted -check values.
var checkTypes = []string{model.CheckTCP, model.CheckHTTP, model.CheckHTTPS, model.CheckUDP, model.CheckDNS,
	model.CheckICMP, model.CheckScript, model.CheckNone}

func (h *healthFlags) register(f *flagSet) {
	h.spec.Check = &model.Check{}
	c := h.spec.Check
	f.Var(&enumValue{p: &h.typ, choices: checkTypes}, "check", "health-check its real servers with `TYPE`: "+orList(checkTypes)+" (none: every real server counts as up)")
	f.Bool(&h.noCheck, "no-check", "remove the health check (service update)")
	f.Int(&c.Port, "check-port", "check this `PORT` instead of each real server's")
	f.Var(durationValue{&c.Interval}, "interval", "time between checks, a `DURATION` such as 2s or 500ms (default 2s)")
	f.Var(durationValue{&c.Timeout}, "timeout", "`DURATION` of one attempt (default 1s)")
	f.Int(&c.Retries, "retries", "`N` more attempts before a check fails (default 0)")
	f.Var(durationValue{&c.RetryDelay}, "retry-delay", "`DURATION` between attempts (default 1s)")
	f.Int(&c.Rise, "rise", "`N` consecutive successes to come up (default 2)")
	f.Int(&c.Fall, "fall", "`N` consecutive failures to go down (default 3)")
	f.Var(durationValue{&c.InitialDelayMax}, "initial-delay", "at most this random `DURATION` before a new real server's first check (default the interval)")
	f.Bool(&c.StartDown, "start-down", "a new real server starts down and needs -rise successes (default: starts up)")
	c.HTTP, c.UDP, c.DNS, c.Script = &model.HTTPCheck{}, &model.UDPCheck{}, &model.DNSCheck{}, &model.ScriptCheck{}
	f.String(&c.HTTP.Path, "path", "", "http(s): the `PATH` to GET (default /)")
	f.String(&c.HTTP.Status, "expect", "", "http(s): accepted status `CODES`, e.g. 200-299,301 (default 200-299)")
	f.String(&c.HTTP.Host, "host", "", "http(s): the `HOST` header (default the real server's address)")
	f.String(&c.HTTP.SNI, "sni", "", "https: the TLS server `NAME` (default the host)")
	f.Bool(&c.HTTP.TLSVerify, "tls-verify", "https: verify the server's certificate (default off, as keepalived's SSL_GET)")
	f.String(&c.HTTP.CAFile, "tls-ca-file", "", "https: PEM roots `FILE` for -tls-verify, an absolute path on every director (default the system's)")
	f.String(&c.HTTP.BodyRegex, "body-regex", "", "http(s): the body must match `REGEX`")
	f.String(&c.HTTP.BodySHA256, "body-sha256", "", "http(s): the body's SHA-256 must be `HEX`")
	f.String(&c.UDP.Payload, "udp-payload", "", "udp: send `TEXT`")
	f.String(&c.UDP.PayloadHex, "udp-payload-hex", "", "udp: send these bytes, in `HEX`")
	f.String(&c.UDP.Expect, "udp-expect", "", "udp: the reply must start with `TEXT`")
	f.String(&c.UDP.ExpectHex, "udp-expect-hex", "", "udp: the reply must start with these bytes, in `HEX`")
	f.Bool(&c.UDP.RequireReply, "udp-require-reply", "udp: any reply will do, but there must be one (default: no ICMP error is enough)")
	f.String(&c.DNS.Name, "dns-name", "", "dns: query `NAME` (required with -check dns)")
	f.String(&c.DNS.QType, "dns-type", "", "dns: query `TYPE`: A, AAAA, SOA, ... (default A)")
	f.String(&c.DNS.Rcode, "dns-rcode", "", "dns: expected `RCODE`: NOERROR, NXDOMAIN, ... (default NOERROR)")
	f.String(&c.Script.Path, "script", "", "script: run the program at `PATH` (absolute, on every director); exit 0 = up (keepalived's MISC_CHECK)")
	f.Var(multiValue{&h.scriptArgs}, "script-arg", "script: one `ARG`ument; repeat for more (-script-arg \"\" alone clears them)")
	f.Var(durationValue{&c.Script.Timeout}, "script-timeout", "script: kill it after `DURATION` (default -timeout)")
	f.Bool(&c.Script.Dynamic, "script-dynamic", "script: exit 2-255 means up with weight exit-2 (keepalived's misc_dynamic)")
	f.Var(&enumValue{p: &h.spec.HealthPolicy, choices: model.HealthPolicies}, "health-policy", "`POLICY` that turns the directors' views into the decision: majority, any (one director seeing a real server down is enough) or all (default majority)")
	f.Bool(&h.spec.InhibitOnFailure, "inhibit", "keep a failed real server with weight 0 instead of removing it, so its connections are not cut (keepalived's inhibit_on_failure)")
	f.Int(&h.spec.Quorum, "quorum", "the service is up while its healthy real servers weigh at least `WEIGHT` (default 1)")
	f.Int(&h.spec.Hysteresis, "hysteresis", "`N`: the quorum is lost below quorum-N and regained at quorum+N (default 0)")
	f.String(&h.sorry, "sorry-server", "", "`ADDR[:PORT]` that takes every new connection while the quorum is lost (\"\" removes it)")
	f.Var(&enumValue{p: &h.sorryF, choices: []string{model.ForwardNAT, model.ForwardDR, model.ForwardTUN}, allowEmpty: true},
		"sorry-forward", "forwarding `METHOD` of the sorry server: nat, dr or tun; \"\" = the service's (the default)")
}

// healthFlagNames lists the health flags in healthFlagFields order, once.
func healthFlagNames() []string {
	var out []string
	for _, hf := range healthFlagFields {
		if !slices.Contains(out, hf.flag) {
			out = append(out, hf.flag)
		}
	}
	return out
}

// checkFlagsSet returns the flags given that change a check's fields (all
// but -check and -no-check).
func checkFlagsSet(f *flagSet) []string {
	var names []string
	for _, hf := range healthFlagFields {
		if strings.HasPrefix(hf.field, "check.") && hf.flag != "check" && !slices.Contains(names, hf.flag) {
			names = append(names, hf.flag)
		}
	}
	return f.anySet(names...)
}

// check rejects contradictory health flags.
func (h *healthFlags) check(f *flagSet) error {
	if !f.isSet("no-check") {
		return nil
	}
	if !h.noCheck {
		return usagef("-no-check=false: leave the flag out")
	}
	if set := append(f.anySet("check"), checkFlagsSet(f)...); len(set) > 0 {
		return usagef("-no-check and %s contradict each other", strings.Join(set, " "))
	}
	return nil
}

// checkBlock is the per-type block a check type uses ("" for none).
func checkBlock(typ string) string {
	switch typ {
	case model.CheckHTTP, model.CheckHTTPS:
		return "http"
	case model.CheckUDP, model.CheckDNS, model.CheckScript:
		return typ
	}
	return ""
}

// cloneCheck returns a deep copy of c, keeping only the per-type block of
// c's type.
func cloneCheck(c model.Check) model.Check {
	out := c
	out.HTTP, out.UDP, out.DNS, out.Script = nil, nil, nil, nil
	switch checkBlock(c.Type) {
	case "http":
		if c.HTTP != nil {
			h := *c.HTTP
			out.HTTP = &h
		}
	case "udp":
		if c.UDP != nil {
			u := *c.UDP
			out.UDP = &u
		}
	case "dns":
		if c.DNS != nil {
			d := *c.DNS
			out.DNS = &d
		}
	case "script":
		if c.Script != nil {
			sc := *c.Script
			sc.Args = slices.Clone(c.Script.Args)
			out.Script = &sc
		}
	}
	return out
}

// apply sets the health fields of spec whose flags were given, on top of
// what spec holds (service update keeps the rest of the current check),
// and validates the result with model.NormalizeService: a refused health
// field is a usage error naming the flag and the field.
func (h *healthFlags) apply(f *flagSet, spec *model.ServiceSpec) error {
	given := f.anySet(healthFlagNames()...)
	if len(given) == 0 {
		return nil
	}
	if f.isSet("no-check") {
		spec.Check = nil
	}
	details := checkFlagsSet(f)
	switch {
	case f.isSet("check"):
		c := model.Check{}
		if spec.Check != nil {
			c = *spec.Check
		}
		c.Type = h.typ
		c = cloneCheck(c) // a new type drops the old type's block
		spec.Check = &c
	case len(details) > 0 && spec.Check == nil:
		return usagef("%s: the service has no health check: give -check TYPE too", strings.Join(details, " "))
	case len(details) > 0:
		c := cloneCheck(*spec.Check)
		spec.Check = &c
	}
	if c := spec.Check; c != nil && (f.isSet("check") || len(details) > 0) {
		h.allocBlocks(f, c)
		if f.isSet("script-arg") {
			c.Script.Args = slices.Clone(h.scriptArgs)
			if len(c.Script.Args) == 1 && c.Script.Args[0] == "" {
				c.Script.Args = nil
			}
		}
	}
	for _, hf := range healthFlagFields {
		if hf.copy != nil && f.isSet(hf.flag) && (spec.Check != nil || !strings.HasPrefix(hf.field, "check.")) {
			hf.copy(spec, &h.spec)
		}
	}
	if f.isSet("sorry-server") {
		if h.sorry == "" {
			spec.SorryServer = nil
		} else {
			addr, port, _, err := parseRealAddr(h.sorry)
			if err != nil {
				return usagef("-sorry-server: %v", err)
			}
			ss := model.SorryServer{Address: addr.String(), Port: port}
			if spec.SorryServer != nil {
				ss.Forward = spec.SorryServer.Forward
			}
			spec.SorryServer = &ss
		}
	}
	if f.isSet("sorry-forward") {
		if spec.SorryServer == nil {
			return usagef("-sorry-forward: the service has no sorry server: give -sorry-server ADDR[:PORT] too")
		}
		ss := *spec.SorryServer
		ss.Forward = h.sorryF
		spec.SorryServer = &ss
	}
	return validateHealth(f, *spec)
}

// allocBlocks gives c the per-type block of every check flag given, so that
// healthFlagFields' copies have somewhere to write.
func (h *healthFlags) allocBlocks(f *flagSet, c *model.Check) {
	given := func(block string) bool {
		for _, hf := range healthFlagFields {
			if strings.HasPrefix(hf.field, "check."+block+".") && f.isSet(hf.flag) {
				return true
			}
		}
		return false
	}
	if c.HTTP == nil && given("http") {
		c.HTTP = &model.HTTPCheck{}
	}
	if c.UDP == nil && given("udp") {
		c.UDP = &model.UDPCheck{}
	}
	if c.DNS == nil && given("dns") {
		c.DNS = &model.DNSCheck{}
	}
	if c.Script == nil && given("script") {
		c.Script = &model.ScriptCheck{}
	}
}

// validateHealth checks spec's health settings with model.NormalizeService,
// the validation the API and every director apply. A refused health field
// is a usage error naming the flag and the field; other fields are left to
// the API, as without health flags.
func validateHealth(f *flagSet, spec model.ServiceSpec) error {
	_, err := model.NormalizeService(spec)
	e := model.AsError(err)
	if e == nil || !isHealthField(e.Field) {
		return nil
	}
	if flags := flagsOfField(f, e.Field); flags != "" {
		return usagef("%s (%s): %s", flags, e.Field, e.Message)
	}
	return usagef("%s: %s", e.Field, e.Message)
}

func isHealthField(field string) bool {
	for _, p := range []string{"check", "health_policy", "inhibit_on_failure", "quorum", "hysteresis", "sorry_server"} {
		if field == p || strings.HasPrefix(field, p+".") {
			return true
		}
	}
	return false
}

// flagsOfField names the flags behind a refused field: "-expect" for
// check.http.status; for a whole block (check.http) the given flags of
// that block; "" if none.
func flagsOfField(f *flagSet, field string) string {
	base, _, _ := strings.Cut(field, "[") // check.script.args[2]
	for _, hf := range healthFlagFields {
		if hf.field == base {
			return "-" + hf.flag
		}
	}
	var names []string
	for _, hf := range healthFlagFields {
		if strings.HasPrefix(hf.field, base+".") && !slices.Contains(names, hf.flag) {
			names = append(names, hf.flag)
		}
	}
	return strings.Join(f.anySet(names...), " ")
}
