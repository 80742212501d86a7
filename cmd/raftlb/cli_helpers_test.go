package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/raftlb/raftlb/fsm"
)

func TestParseInterspersed(t *testing.T) {
	for _, tc := range []struct {
		args    string
		pos     []string
		weight  int
		token   string
		masq    bool
		set     []string
		wantErr string
	}{
		{args: "web 10.0.0.1 -w 3", pos: []string{"web", "10.0.0.1"}, weight: 3, set: []string{"w"}},
		{args: "-w 3 web 10.0.0.1", pos: []string{"web", "10.0.0.1"}, weight: 3, set: []string{"w"}},
		{args: "web -weight=4 10.0.0.1 -m", pos: []string{"web", "10.0.0.1"}, weight: 4, masq: true, set: []string{"w", "m"}},
		{args: "web -- -w 5", pos: []string{"web", "-w", "5"}},
		{args: "-token -- web", pos: []string{"web"}, token: "--", set: []string{"token"}},
		{args: "-token -- -- -x", pos: []string{"-x"}, token: "--", set: []string{"token"}},
		{args: "-m -- a", pos: []string{"a"}, masq: true, set: []string{"m"}},
		{args: "", pos: nil},
		{args: "web -w", wantErr: "flag needs an argument: -w"},
		{args: "web -w x", wantErr: `invalid value "x" for flag -w: "x" is not a whole number`},
		{args: "web -q", wantErr: "flag provided but not defined: -q"},
	} {
		t.Run(tc.args, func(t *testing.T) {
			f := newFlagSet("test")
			var weight int
			var token string
			var masq bool
			f.Int(&weight, "w,weight", "`N`")
			f.String(&token, "token", "", "`T`")
			f.Bool(&masq, "m,masq", "masq")
			pos, err := f.parse(strings.Fields(tc.args))
			if tc.wantErr != "" {
				if err == nil || err.Error() != tc.wantErr {
					t.Fatalf("err %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(pos, tc.pos) || weight != tc.weight || token != tc.token || masq != tc.masq {
				t.Errorf("pos %q weight %d token %q masq %v; want %q %d %q %v", pos, weight, token, masq, tc.pos, tc.weight, tc.token, tc.masq)
			}
			for _, n := range tc.set {
				if !f.isSet(n) {
					t.Errorf("-%s not reported set", n)
				}
			}
			for _, n := range []string{"w", "weight", "token", "m", "masq"} {
				if f.isSet(n) != f.isSet(f.canon[n]) {
					t.Errorf("alias -%s disagrees with -%s", n, f.canon[n])
				}
			}
		})
	}
}

func TestParseRealAddr(t *testing.T) {
	for _, tc := range []struct {
		in      string
		addr    string
		port    int
		hasPort bool
		ok      bool
	}{
		{"10.0.0.1", "10.0.0.1", 0, false, true},
		{"10.0.0.1:8080", "10.0.0.1", 8080, true, true},
		{"10.0.0.1:0", "10.0.0.1", 0, true, true},
		{"2001:db8::1", "2001:db8::1", 0, false, true},
		{"[2001:db8::1]", "2001:db8::1", 0, false, true},
		{"[2001:db8::1]:443", "2001:db8::1", 443, true, true},
		{"2001:db8::1:443", "2001:db8::1:443", 0, false, true}, // unbracketed: all address
		{"10.0.0.1:http", "", 0, false, false},
		{"10.0.0.1:70000", "", 0, false, false},
		{"host.example", "", 0, false, false},
		{"", "", 0, false, false},
	} {
		a, p, has, err := parseRealAddr(tc.in)
		if (err == nil) != tc.ok {
			t.Errorf("%q: err %v, want ok=%v", tc.in, err, tc.ok)
			continue
		}
		if tc.ok && (a.String() != tc.addr || p != tc.port || has != tc.hasPort) {
			t.Errorf("%q: %s %d %v, want %s %d %v", tc.in, a, p, has, tc.addr, tc.port, tc.hasPort)
		}
	}
}

func TestParseServiceAddr(t *testing.T) {
	for in, want := range map[string]string{
		"192.0.2.1:80":       "192.0.2.1:80",
		"192.0.2.1:0":        "192.0.2.1:0",
		"[2001:db8::1]:443":  "[2001:db8::1]:443",
		"192.0.2.1":          "missing :PORT",
		"[2001:db8::1]":      "missing :PORT",
		"2001:db8::1":        "missing :PORT",
		"web.example:80":     "want ADDR:PORT",
		"192.0.2.1:https":    "want ADDR:PORT",
		"[2001:db8::1]:http": "want ADDR:PORT",
	} {
		ap, err := parseServiceAddr(in)
		got := ap.String()
		if err != nil {
			got = err.Error()
		}
		if !strings.HasPrefix(got, want) {
			t.Errorf("%q: %q, want %q", in, got, want)
		}
	}
}

func TestNetmask(t *testing.T) {
	for in, want := range map[string]int{"24": 24, "0": 0, "128": 128, "255.255.255.0": 24, "255.255.0.0": 16, "255.255.255.255": 32, "0.0.0.0": 0, "255.255.255.128": 25} {
		if got, err := parseNetmask(in); err != nil || got != want {
			t.Errorf("parseNetmask(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"129", "-1", "255.0.255.0", "x", "ffff::"} {
		if _, err := parseNetmask(in); err == nil {
			t.Errorf("parseNetmask(%q) succeeded", in)
		}
	}
	for _, tc := range []struct {
		family string
		bits   int
		want   string
	}{
		{fsm.FamilyInet, 24, "255.255.255.0"},
		{fsm.FamilyInet, 25, "255.255.255.128"},
		{fsm.FamilyInet, 32, "255.255.255.255"},
		{fsm.FamilyInet6, 64, "64"},
	} {
		if got := netmaskText(tc.family, tc.bits); got != tc.want {
			t.Errorf("netmaskText(%s, %d) = %q, want %q", tc.family, tc.bits, got, tc.want)
		}
	}
}

func TestAlignRows(t *testing.T) {
	got := alignRows([][]string{
		{"Prot", "Addr", "Flags", "Name"},
		{"TCP", "192.0.2.10:80", "", "web"},
		{"FWM", "7", "persistent 30", ""},
	}, 1)
	want := []string{
		"Prot Addr          Flags         Name",
		"TCP  192.0.2.10:80               web",
		"FWM  7             persistent 30",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestWrap(t *testing.T) {
	got := wrap("aaa bbb ccc dddddddddd e", 8)
	if want := "aaa bbb\nccc\ndddddddddd\ne"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

// TestServiceFlagsApply checks that service update changes only the fields
// whose flags were given.
func TestServiceFlagsApply(t *testing.T) {
	base := fsm.ServiceSpec{Name: "web", Protocol: "tcp", Address: "192.0.2.10", Port: 80, Family: "inet",
		Scheduler: "wrr", SchedFlags: []string{"ops"}, Persistence: 300, PersistNetmask: 24, Forward: "dr"}
	for _, tc := range []struct {
		args   string
		modify func(*fsm.ServiceSpec)
	}{
		{"-s rr", func(s *fsm.ServiceSpec) { s.Scheduler = "rr" }},
		{"-b=", func(s *fsm.ServiceSpec) { s.SchedFlags = nil }},
		{"-p 0", func(s *fsm.ServiceSpec) { s.Persistence, s.PersistNetmask = 0, 0 }},
		{"-p 60", func(s *fsm.ServiceSpec) { s.Persistence = 60 }},
		{"-M 255.255.0.0", func(s *fsm.ServiceSpec) { s.PersistNetmask = 16 }},
		{"-forward tun", func(s *fsm.ServiceSpec) { s.Forward = "tun" }},
		{"-u [2001:db8::1]:53", func(s *fsm.ServiceSpec) { s.Protocol, s.Address, s.Port, s.Family = "udp", "2001:db8::1", 53, "" }},
		{"-f 0x10 -family inet6", func(s *fsm.ServiceSpec) {
			s.Protocol, s.Address, s.Port, s.Fwmark, s.Family = "", "", 0, 16, "inet6"
		}},
	} {
		t.Run(tc.args, func(t *testing.T) {
			f := newFlagSet("test")
			var sf serviceFlags
			sf.register(f)
			if _, err := f.parse(strings.Fields(tc.args)); err != nil {
				t.Fatal(err)
			}
			got, want := base, base
			got.SchedFlags, want.SchedFlags = []string{"ops"}, []string{"ops"}
			sf.apply(f, &got)
			tc.modify(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestRealFlagsApply(t *testing.T) {
	base := fsm.RealServer{Address: "10.0.0.1", Port: 80, Weight: 3, Forward: "dr", UpperThreshold: 10, LowerThreshold: 5, State: "drain"}
	for args, modify := range map[string]func(*fsm.RealServer){
		"-w 0":                func(r *fsm.RealServer) { r.Weight = 0 },
		"-m":                  func(r *fsm.RealServer) { r.Forward = "nat" },
		"-gatewaying":         func(r *fsm.RealServer) { r.Forward = "dr" },
		"-i":                  func(r *fsm.RealServer) { r.Forward = "tun" },
		"-forward=":           func(r *fsm.RealServer) { r.Forward = "" },
		"-x 0 -l-threshold 1": func(r *fsm.RealServer) { r.UpperThreshold, r.LowerThreshold = 0, 1 },
		"-state enabled":      func(r *fsm.RealServer) { r.State = "enabled" },
	} {
		f := newFlagSet("test")
		var rf realFlags
		rf.register(f)
		if _, err := f.parse(strings.Fields(args)); err != nil {
			t.Fatalf("%s: %v", args, err)
		}
		if err := rf.check(f); err != nil {
			t.Fatalf("%s: %v", args, err)
		}
		got, want := base, base
		rf.apply(f, &got)
		modify(&want)
		if got != want {
			t.Errorf("%s: got %+v, want %+v", args, got, want)
		}
	}
}
