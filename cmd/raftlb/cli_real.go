package main

import (
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/raftlb/raftlb/model"
)

// raftlb real ...

// realFlags are the flags of real add and real update (ipvsadm -a/-e).
type realFlags struct {
	r                model.RealSpec // the fields, as the flags give them
	masq, gate, ipip bool
}

// realFields are the flags that set one field of a real server each.
var realFields = []fieldFlag[model.RealSpec]{
	{"w", func(d, s *model.RealSpec) { d.Weight = s.Weight }},
	{"forward", func(d, s *model.RealSpec) { d.Forward = s.Forward }},
	{"x", func(d, s *model.RealSpec) { d.UpperThreshold = s.UpperThreshold }},
	{"y", func(d, s *model.RealSpec) { d.LowerThreshold = s.LowerThreshold }},
	{"state", func(d, s *model.RealSpec) { d.State = s.State }},
}

// forwardFlags choose the forwarding method; one at most.
var forwardFlags = []string{"m", "g", "i", "forward"}

func (r *realFlags) register(f *flagSet) {
	f.Int(&r.r.Weight, "w,weight", fmt.Sprintf("`WEIGHT` from 0 to %d (default %d)", model.MaxWeight, model.DefaultWeight))
	f.Bool(&r.masq, "m,masq", "forward by masquerading (NAT), like -forward nat")
	f.Bool(&r.gate, "g,gatewaying", "forward by direct routing, like -forward dr")
	f.Bool(&r.ipip, "i,ipip", "forward by IP-in-IP tunnelling, like -forward tun")
	f.Var(&enumValue{p: &r.r.Forward, choices: []string{model.ForwardNAT, model.ForwardDR, model.ForwardTUN}, allowEmpty: true},
		"forward", "forwarding `METHOD`: nat, dr or tun; \"\" = the service's (the default)")
	f.Int(&r.r.UpperThreshold, "x,u-threshold", "upper connection threshold: no new connections above `N` (0 = none)")
	f.Int(&r.r.LowerThreshold, "y,l-threshold", "lower connection threshold: back in rotation below `N`")
	f.Var(&enumValue{p: &r.r.State, choices: []string{model.StateEnabled, model.StateDrain, model.StateDisabled}},
		"state", "administrative `STATE`: enabled, drain (no new connections) or disabled (default enabled)")
}

func (r *realFlags) check(f *flagSet) error {
	if set := f.anySet(forwardFlags...); len(set) > 1 {
		return usagef("%s are mutually exclusive: give one forwarding method", strings.Join(set, " and "))
	}
	for _, b := range []struct {
		name string
		v    bool
	}{{"m", r.masq}, {"g", r.gate}, {"i", r.ipip}} {
		if f.isSet(b.name) && !b.v {
			return usagef("-%s=false: leave the flag out, or use -forward", b.name)
		}
	}
	return nil
}

// apply sets the fields of rs whose flags were given; -m, -g and -i are
// -forward nat, dr and tun.
func (r *realFlags) apply(f *flagSet, rs *model.RealSpec) {
	applyFields(f, realFields, rs, &r.r)
	switch {
	case f.isSet("m"):
		rs.Forward = model.ForwardNAT
	case f.isSet("g"):
		rs.Forward = model.ForwardDR
	case f.isSet("i"):
		rs.Forward = model.ForwardTUN
	}
}

// realKey turns the ADDR[:PORT] argument into the real server's key. Without
// a port the real server has the service's port, so the service is read.
func (e *env) realKey(service, arg string) (string, error) {
	addr, port, hasPort, err := parseRealAddr(arg)
	if err != nil {
		return "", usagef("%v", err)
	}
	if !hasPort {
		svc, err := e.c.Service(e.ctx, service, e.read)
		if err != nil {
			return "", err
		}
		port = svc.Port
	}
	return netip.AddrPortFrom(addr, uint16(port)).String(), nil
}

// modifyRealCommand builds real update and real drain: a read-modify-write
// of one real server. setup registers the command's flags and returns prepare,
// which checks them once parsed and returns the change to make.
func modifyRealCommand(name, summary, help, verb string,
	setup func(f *flagSet) (prepare func() (func(*model.RealSpec), error))) *command {
	return &command{
		name: name, params: []string{"SERVICE", "ADDR[:PORT]"}, summary: summary, help: help,
		setup: func(f *flagSet) action {
			prepare := setup(f)
			return func(e *env, args []string) error {
				modify, err := prepare()
				if err != nil {
					return err
				}
				key, err := e.realKey(args[0], args[1])
				if err != nil {
					return err
				}
				resp, err := e.c.ModifyReal(e.ctx, args[0], key, modify)
				if err != nil {
					return err
				}
				return e.wrote(resp, "real server %s of service %s %s", key, args[0], verb)
			}
		},
	}
}

func realCommands() []*command {
	return []*command{
		{
			name: "real add", params: []string{"SERVICE", "ADDR[:PORT]"}, summary: "add a real server to a service (ipvsadm -a)",
			help: "add real server ADDR[:PORT] to service SERVICE (like ipvsadm -a); without a port it uses the service's. " +
				"IPv6 as [addr]:port or a bare address",
			setup: func(f *flagSet) action {
				var rf realFlags
				rf.register(f)
				return func(e *env, args []string) error {
					if err := rf.check(f); err != nil {
						return err
					}
					addr, port, _, err := parseRealAddr(args[1])
					if err != nil {
						return usagef("%v", err)
					}
					rs := model.NewRealSpec()
					rs.Address, rs.Port = addr.String(), port
					rf.apply(f, &rs)
					resp, err := e.c.CreateReal(e.ctx, args[0], rs)
					if err != nil {
						return err
					}
					key := rs.Real().Key()
					if resp.Real != nil {
						key = resp.Real.Key()
					}
					return e.wrote(resp, "real server %s added to service %s", key, args[0])
				}
			},
		},
		modifyRealCommand("real update", "change the given settings of a real server (ipvsadm -e)",
			"change the settings of real server ADDR[:PORT] of SERVICE given as flags, leaving the others as they are "+
				"(like ipvsadm -e); the real server is read and written back with compare-and-set",
			"updated",
			func(f *flagSet) func() (func(*model.RealSpec), error) {
				var rf realFlags
				rf.register(f)
				return func() (func(*model.RealSpec), error) {
					if err := rf.check(f); err != nil {
						return nil, err
					}
					if !f.ownSet() {
						return nil, usagef("real update: nothing to change: give at least one flag")
					}
					return func(r *model.RealSpec) { rf.apply(f, r) }, nil
				}
			}),
		{
			name: "real delete", params: []string{"SERVICE", "ADDR[:PORT]"}, summary: "remove a real server from a service (ipvsadm -d)",
			setup: func(f *flagSet) action {
				return func(e *env, args []string) error {
					key, err := e.realKey(args[0], args[1])
					if err != nil {
						return err
					}
					resp, err := e.c.DeleteReal(e.ctx, args[0], key, 0)
					if err != nil {
						return err
					}
					return e.wrote(resp, "real server %s deleted from service %s", key, args[0])
				}
			},
		},
		modifyRealCommand("real drain", "stop sending new connections to a real server",
			"set real server ADDR[:PORT] of SERVICE to state drain: its weight becomes 0 in the kernel, "+
				"so existing connections finish but no new ones arrive; 'raftlb real update -state enabled' undoes it",
			"draining",
			func(f *flagSet) func() (func(*model.RealSpec), error) {
				return func() (func(*model.RealSpec), error) {
					return func(r *model.RealSpec) { r.State = model.StateDrain }, nil
				}
			}),
		{
			name: "real list", params: []string{"SERVICE"}, summary: "list the real servers of a service", kind: kindRead,
			setup: func(f *flagSet) action {
				return func(e *env, args []string) error {
					svc, err := e.c.Service(e.ctx, args[0], e.read)
					if err != nil {
						return err
					}
					sh := e.serviceHealth(svc) // each director's view (cli_health.go)
					return e.show(realsWithViews(svc, sh), func(w io.Writer) { writeRealsWithViews(w, svc, sh) })
				}
			},
		},
	}
}
