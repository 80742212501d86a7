package model

import (
	"strings"
	"testing"
)

func svc(mod func(*ServiceSpec)) ServiceSpec {
	s := NewServiceSpec()
	s.Name, s.Protocol, s.Address, s.Port = "web", "tcp", "192.0.2.1", 80
	if mod != nil {
		mod(&s)
	}
	return s
}

func TestNormalizeServiceErrors(t *testing.T) {
	cases := []struct {
		name  string
		mod   func(*ServiceSpec)
		field string
	}{
		{"bad name", func(s *ServiceSpec) { s.Name = "has space" }, "name"},
		{"empty name", func(s *ServiceSpec) { s.Name = "" }, "name"},
		{"no protocol", func(s *ServiceSpec) { s.Protocol = "" }, "protocol"},
		{"bad protocol", func(s *ServiceSpec) { s.Protocol = "icmp" }, "protocol"},
		{"bad address", func(s *ServiceSpec) { s.Address = "10.0.0" }, "address"},
		{"unspecified", func(s *ServiceSpec) { s.Address = "0.0.0.0" }, "address"},
		{"mapped", func(s *ServiceSpec) { s.Address = "::ffff:10.0.0.1" }, "address"},
		{"zone", func(s *ServiceSpec) { s.Address = "fe80::1%eth0" }, "address"},
		{"port high", func(s *ServiceSpec) { s.Port = 65536 }, "port"},
		{"port negative", func(s *ServiceSpec) { s.Port = -1 }, "port"},
		{"port zero without persistence", func(s *ServiceSpec) { s.Port = 0 }, "port"},
		{"family mismatch", func(s *ServiceSpec) { s.Family = "inet6" }, "family"},
		{"bad scheduler", func(s *ServiceSpec) { s.Scheduler = "random" }, "scheduler"},
		{"flag for other scheduler", func(s *ServiceSpec) { s.SchedFlags = []string{"sh-port"} }, "sched_flags"},
		{"unknown flag", func(s *ServiceSpec) { s.SchedFlags = []string{"x"} }, "sched_flags"},
		{"ops on tcp", func(s *ServiceSpec) { s.SchedFlags = []string{"ops"} }, "sched_flags"},
		{"persistence negative", func(s *ServiceSpec) { s.Persistence = -5 }, "persistence"},
		{"persistence huge", func(s *ServiceSpec) { s.Persistence = MaxPersistence + 1 }, "persistence"},
		{"netmask without persistence", func(s *ServiceSpec) { s.PersistNetmask = 24 }, "persist_netmask"},
		{"netmask too long", func(s *ServiceSpec) { s.Persistence = 60; s.PersistNetmask = 33 }, "persist_netmask"},
		{"bad forward", func(s *ServiceSpec) { s.Forward = "masq" }, "forward"},
		{"fwmark with address", func(s *ServiceSpec) { s.Fwmark = 3 }, "fwmark"},
		{"fwmark bad family", func(s *ServiceSpec) { *s = ServiceSpec{Name: "f", Fwmark: 1, Family: "ipx"} }, "family"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NormalizeService(svc(c.mod))
			fe := AsError(err)
			if fe == nil || fe.Code != CodeInvalid || fe.Field != c.field {
				t.Fatalf("got %v, want invalid %s", err, c.field)
			}
			if !strings.Contains(fe.Error(), c.field) {
				t.Fatalf("message %q does not name the field", fe.Error())
			}
		})
	}
}

func TestNormalizeServiceCanonical(t *testing.T) {
	s, err := NormalizeService(ServiceSpec{Name: "v6", Protocol: "UDP", Address: "2001:DB8:0::10", Port: 53,
		Scheduler: "sh", SchedFlags: []string{"sh-port", "sh-fallback", "sh-port"}, Persistence: 60, PersistNetmask: 128})
	if err != nil {
		t.Fatal(err)
	}
	if s.Protocol != "udp" || s.Address != "2001:db8::10" || s.Family != "inet6" || s.Forward != "nat" ||
		s.PersistNetmask != 0 || strings.Join(s.SchedFlags, ",") != "sh-fallback,sh-port" {
		t.Fatalf("not canonical: %+v", s)
	}
	if s.Key() != "udp/[2001:db8::10]:53" {
		t.Fatalf("key %s", s.Key())
	}
	fw, err := NormalizeService(ServiceSpec{Name: "fw", Fwmark: 7, SchedFlags: []string{"ops"}})
	if err != nil || fw.Family != "inet" || fw.Scheduler != "wlc" || fw.Key() != "fwmark/inet/7" {
		t.Fatalf("fwmark: %+v %v", fw, err)
	}
	if _, err := NormalizeService(svc(func(s *ServiceSpec) { s.Port = 0; s.Persistence = 300 })); err != nil {
		t.Fatalf("port 0 with persistence: %v", err)
	}
}

func TestNormalizeRealErrors(t *testing.T) {
	s, _ := NormalizeService(svc(nil))
	base := func() RealServer { r := NewRealServer(); r.Address = "10.0.0.1"; return r }
	cases := []struct {
		name  string
		mod   func(*RealServer)
		field string
	}{
		{"no address", func(r *RealServer) { r.Address = "" }, "address"},
		{"bad address", func(r *RealServer) { r.Address = "x" }, "address"},
		{"family", func(r *RealServer) { r.Address = "2001:db8::1" }, "address"},
		{"port", func(r *RealServer) { r.Port = 70000 }, "port"},
		{"weight high", func(r *RealServer) { r.Weight = 65536 }, "weight"},
		{"weight negative", func(r *RealServer) { r.Weight = -1 }, "weight"},
		{"forward", func(r *RealServer) { r.Forward = "bridge" }, "forward"},
		{"dr remaps port", func(r *RealServer) { r.Forward = "dr"; r.Port = 8080 }, "port"},
		{"thresholds", func(r *RealServer) { r.UpperThreshold = 5; r.LowerThreshold = 6 }, "lower_threshold"},
		{"lower threshold without an upper one", func(r *RealServer) { r.LowerThreshold = 6 }, "lower_threshold"},
		{"negative threshold", func(r *RealServer) { r.UpperThreshold = -1 }, "upper_threshold"},
		{"state", func(r *RealServer) { r.State = "up" }, "state"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := base()
			c.mod(&r)
			_, err := NormalizeReal(s, r)
			if fe := AsError(err); fe == nil || fe.Field != c.field {
				t.Fatalf("got %v, want %s", err, c.field)
			}
		})
	}
	// tun may mix families; port 0 becomes the service's.
	r := base()
	r.Address, r.Forward = "2001:db8::1", ForwardTUN
	if nr, err := NormalizeReal(s, r); err != nil || nr.Port != 80 {
		t.Fatalf("tun mixed family: %+v %v", nr, err)
	}
}

func TestNormalizeVIPAndSettings(t *testing.T) {
	v, err := NormalizeVIP(VIP{Address: "192.0.2.10", Interface: "eth0"})
	if err != nil || v.Address != "192.0.2.10/32" || v.Group != "default" || v.Key() != "192.0.2.10" {
		t.Fatalf("%+v %v", v, err)
	}
	for _, bad := range []struct {
		v     VIP
		field string
	}{
		{VIP{Interface: "eth0"}, "address"},
		{VIP{Address: "192.0.2.10/40", Interface: "eth0"}, "address"},
		{VIP{Address: "127.0.0.2/8", Interface: "eth0"}, "address"},
		{VIP{Address: "192.0.2.10/24"}, "interface"},
		{VIP{Address: "192.0.2.10/24", Interface: "a/b"}, "interface"},
		{VIP{Address: "192.0.2.10/24", Interface: "eth0", Group: "no spaces"}, "group"},
	} {
		if _, err := NormalizeVIP(bad.v); AsError(err) == nil || AsError(err).Field != bad.field {
			t.Errorf("%+v: got %v, want %s", bad.v, err, bad.field)
		}
	}
	st := DefaultSettings()
	if n, err := NormalizeSettings(st); err != nil || n.TimingProfile != "lan" {
		t.Fatalf("defaults invalid: %v", err)
	}
	for field, mod := range map[string]func(*Settings){
		"timing_profile":    func(s *Settings) { s.TimingProfile = "wan" },
		"ipvs_timeouts.udp": func(s *Settings) { s.Timeouts.UDP = -1 },
		"sync.mode":         func(s *Settings) { s.Sync.Mode = "master" },
		"sync.sync_id":      func(s *Settings) { s.Sync.SyncID = 256 },
		"sync.interface":    func(s *Settings) { s.Sync.Enabled = true },
		"sync.mcast_group":  func(s *Settings) { s.Sync.McastGroup = "10.0.0.1" },
		"sync.mcast_port":   func(s *Settings) { s.Sync.McastPort = 0 },
		"sync.mcast_ttl":    func(s *Settings) { s.Sync.McastTTL = 0 },
		"sync.maxlen":       func(s *Settings) { s.Sync.MaxLen = 10 },
		"ipvs_timeouts.tcp": func(s *Settings) { s.Timeouts.TCP = MaxTimeout + 1 },
	} {
		s := DefaultSettings()
		mod(&s)
		if _, err := NormalizeSettings(s); AsError(err) == nil || AsError(err).Field != field {
			t.Errorf("%s: got %v", field, err)
		}
	}
}
