package main

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/model"
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
		{model.FamilyInet, 24, "255.255.255.0"},
		{model.FamilyInet, 25, "255.255.255.128"},
		{model.FamilyInet, 32, "255.255.255.255"},
		{model.FamilyInet6, 64, "64"},
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
	base := model.ServiceSpec{Name: "web", Protocol: "tcp", Address: "192.0.2.10", Port: 80, Family: "inet",
		Scheduler: "wrr", SchedFlags: []string{"ops"}, Persistence: 300, PersistNetmask: 24, Forward: "dr"}
	for _, tc := range []struct {
		args   string
		modify func(*model.ServiceSpec)
	}{
		{"-s rr", func(s *model.ServiceSpec) { s.Scheduler = "rr" }},
		{"-b=", func(s *model.ServiceSpec) { s.SchedFlags = nil }},
		{"-p 0", func(s *model.ServiceSpec) { s.Persistence, s.PersistNetmask = 0, 0 }},
		{"-p 60", func(s *model.ServiceSpec) { s.Persistence = 60 }},
		{"-M 255.255.0.0", func(s *model.ServiceSpec) { s.PersistNetmask = 16 }},
		{"-forward tun", func(s *model.ServiceSpec) { s.Forward = "tun" }},
		{"-u [2001:db8::1]:53", func(s *model.ServiceSpec) { s.Protocol, s.Address, s.Port, s.Family = "udp", "2001:db8::1", 53, "" }},
		{"-f 0x10 -family inet6", func(s *model.ServiceSpec) {
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
			if err := sf.apply(f, &got); err != nil {
				t.Fatal(err)
			}
			tc.modify(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got %+v\nwant %+v", got, want)
			}
		})
	}
}

func TestRealFlagsApply(t *testing.T) {
	base := model.RealSpec{Address: "10.0.0.1", Port: 80, Weight: 3, Forward: "dr", UpperThreshold: 10, LowerThreshold: 5, State: "drain"}
	for args, modify := range map[string]func(*model.RealSpec){
		"-w 0":                func(r *model.RealSpec) { r.Weight = 0 },
		"-m":                  func(r *model.RealSpec) { r.Forward = "nat" },
		"-gatewaying":         func(r *model.RealSpec) { r.Forward = "dr" },
		"-i":                  func(r *model.RealSpec) { r.Forward = "tun" },
		"-forward=":           func(r *model.RealSpec) { r.Forward = "" },
		"-x 0 -l-threshold 1": func(r *model.RealSpec) { r.UpperThreshold, r.LowerThreshold = 0, 1 },
		"-state enabled":      func(r *model.RealSpec) { r.State = "enabled" },
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

// checkedBase is a service with an HTTP check, inhibit, a quorum and a
// sorry server, as service update reads it.
func checkedBase() model.ServiceSpec {
	c, err := model.NormalizeCheck(model.Check{Type: "http", Interval: model.Duration(5 * time.Second),
		HTTP: &model.HTTPCheck{Path: "/health", Status: "200-299", Host: "www.example.org"}})
	if err != nil {
		panic(err)
	}
	return model.ServiceSpec{Name: "web", Protocol: "tcp", Address: "192.0.2.10", Port: 80, Family: "inet",
		Scheduler: "wrr", Forward: "nat", Check: &c, InhibitOnFailure: true, Quorum: 3, Hysteresis: 1,
		SorryServer: &model.SorryServer{Address: "192.0.2.99", Port: 8080, Forward: "nat"}}
}

// TestHealthFlagsApply checks that service update changes only the health
// settings whose flags were given, keeping the rest of the current check.
func TestHealthFlagsApply(t *testing.T) {
	for _, tc := range []struct {
		args   string
		modify func(*model.ServiceSpec)
	}{
		{"-interval 10s", func(s *model.ServiceSpec) { s.Check.Interval = model.Duration(10 * time.Second) }},
		{"--timeout 0.25 -rise 1 -fall 7", func(s *model.ServiceSpec) {
			s.Check.Timeout, s.Check.Rise, s.Check.Fall = model.Duration(250*time.Millisecond), 1, 7
		}},
		{"-expect 200,301 --path /ready", func(s *model.ServiceSpec) { s.Check.HTTP.Status, s.Check.HTTP.Path = "200,301", "/ready" }},
		{"-check https -sni www.example.org -tls-verify", func(s *model.ServiceSpec) {
			s.Check.Type, s.Check.HTTP.SNI, s.Check.HTTP.TLSVerify = "https", "www.example.org", true
		}},
		{"-check tcp -check-port 8081", func(s *model.ServiceSpec) { s.Check.Type, s.Check.HTTP, s.Check.Port = "tcp", nil, 8081 }},
		{"-check http", func(*model.ServiceSpec) {}},
		{"-check dns -dns-name example.org", func(s *model.ServiceSpec) {
			s.Check.Type, s.Check.HTTP, s.Check.DNS = "dns", nil, &model.DNSCheck{Name: "example.org"}
		}},
		{"-check script -script /usr/local/bin/check -script-arg a -script-arg b c", func(s *model.ServiceSpec) {
			s.Check.Type, s.Check.HTTP, s.Check.Script = "script", nil, &model.ScriptCheck{Path: "/usr/local/bin/check", Args: []string{"a", "b"}}
		}},
		{"-no-check", func(s *model.ServiceSpec) { s.Check = nil }},
		{"-start-down -retries 2 -retry-delay 200ms", func(s *model.ServiceSpec) {
			s.Check.StartDown, s.Check.Retries, s.Check.RetryDelay = true, 2, model.Duration(200*time.Millisecond)
		}},
		{"-health-policy any -inhibit=false", func(s *model.ServiceSpec) { s.HealthPolicy, s.InhibitOnFailure = "any", false }},
		{"-quorum 5 -hysteresis 2", func(s *model.ServiceSpec) { s.Quorum, s.Hysteresis = 5, 2 }},
		{"-sorry-server 192.0.2.98", func(s *model.ServiceSpec) { s.SorryServer = &model.SorryServer{Address: "192.0.2.98", Forward: "nat"} }},
		{"-sorry-server=", func(s *model.ServiceSpec) { s.SorryServer = nil }},
		{"-sorry-forward=", func(s *model.ServiceSpec) { s.SorryServer.Forward = "" }},
		{"-s rr", func(s *model.ServiceSpec) { s.Scheduler = "rr" }},
	} {
		t.Run(tc.args, func(t *testing.T) {
			f := newFlagSet("test")
			var sf serviceFlags
			sf.register(f)
			pos, err := f.parse(strings.Fields(tc.args))
			if err != nil {
				t.Fatal(err)
			}
			if err := sf.check(f); err != nil {
				t.Fatal(err)
			}
			got, want := checkedBase(), checkedBase()
			before := checkedBase()
			orig := got.Check
			if err := sf.apply(f, &got); err != nil {
				t.Fatal(err)
			}
			tc.modify(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("got  %+v %+v\nwant %+v %+v", got, got.Check, want, want.Check)
			}
			if !reflect.DeepEqual(orig, before.Check) {
				t.Errorf("apply changed the check it was given: %+v", orig)
			}
			if strings.Contains(tc.args, "-script-arg b c") && !reflect.DeepEqual(pos, []string{"c"}) {
				t.Errorf("positionals %q", pos)
			}
		})
	}
}

func TestCheckText(t *testing.T) {
	norm := func(c model.Check) *model.Check {
		n, err := model.NormalizeCheck(c)
		if err != nil {
			t.Fatal(err)
		}
		return &n
	}
	for _, tc := range []struct {
		spec model.ServiceSpec
		want string
	}{
		{model.ServiceSpec{Check: norm(model.Check{Type: "http", HTTP: &model.HTTPCheck{Path: "/health"}})},
			"http /health 200-299 every 2s timeout 1s rise 2 fall 3, policy majority"},
		{model.ServiceSpec{Check: norm(model.Check{Type: "tcp", Port: 81, Interval: model.Duration(time.Minute), Retries: 1, StartDown: true}), HealthPolicy: "all", InhibitOnFailure: true},
			"tcp port 81 every 1m timeout 1s retries 1 delay 1s rise 2 fall 3 start-down, policy all, inhibit"},
		{model.ServiceSpec{Check: norm(model.Check{Type: "udp", UDP: &model.UDPCheck{PayloadHex: "0001", Expect: "ok", RequireReply: true}})},
			`udp send 0x0001 expect "ok" require-reply every 2s timeout 1s rise 2 fall 3, policy majority`},
		{model.ServiceSpec{Check: norm(model.Check{Type: "script", Timeout: model.Duration(3 * time.Second), Script: &model.ScriptCheck{Path: "/bin/check", Args: []string{"a b"}, Timeout: model.Duration(time.Second), Dynamic: true}})},
			`script /bin/check "a b" script-timeout 1s dynamic every 2s timeout 3s rise 2 fall 3, policy majority`},
		{model.ServiceSpec{Check: norm(model.Check{Type: "none"})}, "none, policy majority"},
		{model.ServiceSpec{}, ""},
	} {
		if got := checkText(tc.spec); got != tc.want {
			t.Errorf("got  %q\nwant %q", got, tc.want)
		}
	}
}

func TestQuorumAndHealthColumns(t *testing.T) {
	s := model.Service{ServiceSpec: checkedBase(), QuorumLost: true, Reals: []model.RealServer{
		{Address: "10.0.0.1", Port: 80, Weight: 2, State: "enabled", Health: &model.RealHealth{Up: false, Reason: "d1: connection refused;\nd2: timeout"}},
		{Address: "10.0.0.2", Port: 80, Weight: 1, State: "enabled", Health: &model.RealHealth{Up: true}},
		{Address: "10.0.0.3", Port: 80, Weight: 4, State: "drain", UpperThreshold: 9},
	}}
	if got, want := quorumText(s), "3 hysteresis 1: LOST (healthy weight 1)"; got != want {
		t.Errorf("quorum %q, want %q", got, want)
	}
	if got, want := sorryLine(s), "192.0.2.99:8080 (Masq), serving"; got != want {
		t.Errorf("sorry %q, want %q", got, want)
	}
	var b strings.Builder
	writeReals(&b, s.ServiceSpec, s.Reals)
	want := `RemoteAddress:Port  Forward  Weight  State    Health  Flags         Reason
10.0.0.1:80         Masq     2       enabled  down                  d1: connection refused; d2: timeout
10.0.0.2:80         Masq     1       enabled  up
10.0.0.3:80         Masq     4       drain    -       uthreshold 9
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	// An unchecked service without decisions has no health columns.
	b.Reset()
	plain := s.ServiceSpec
	plain.Check = nil
	writeReals(&b, plain, []model.RealServer{{Address: "10.0.0.1", Port: 80, Weight: 1, State: "enabled"}})
	if strings.Contains(b.String(), "Health") {
		t.Errorf("health column without a check:\n%s", b.String())
	}
}

func TestDurationValue(t *testing.T) {
	for in, want := range map[string]time.Duration{"2s": 2 * time.Second, "1.5": 1500 * time.Millisecond, "250ms": 250 * time.Millisecond, "3": 3 * time.Second} {
		var d model.Duration
		if err := (durationValue{&d}).Set(in); err != nil || d.D() != want {
			t.Errorf("%q: %v, %v; want %v", in, d.D(), err, want)
		}
	}
	for _, in := range []string{"soon", "", "1e300", "NaN"} {
		var d model.Duration
		if err := (durationValue{&d}).Set(in); err == nil {
			t.Errorf("%q accepted as %v", in, d.D())
		}
	}
}
