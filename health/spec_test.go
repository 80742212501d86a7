package health

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestNormalizeDefaults(t *testing.T) {
	s, err := Normalize(Spec{})
	if err != nil {
		t.Fatal(err)
	}
	want := Spec{Type: "tcp", Interval: Duration(2 * time.Second), Timeout: Duration(time.Second), Rise: 2, Fall: 3,
		InitialDelayMax: Duration(2 * time.Second)}
	if s.Hash() != want.Hash() {
		t.Fatalf("defaults %+v, want %+v", s, want)
	}
	h, err := Normalize(Spec{Type: "HTTPS", Retries: 2, HTTP: &HTTPSpec{Status: " 301 ,200-299", BodySHA256: "AB"}})
	if err == nil {
		t.Fatalf("short digest accepted: %+v", h)
	}
	h, err = Normalize(Spec{Type: "HTTPS", Retries: 2, HTTP: &HTTPSpec{Status: " 301 ,200-299"}})
	if err != nil {
		t.Fatal(err)
	}
	if h.Type != "https" || h.HTTP.Path != "/" || h.HTTP.Status != "301,200-299" || h.RetryDelay.D() != time.Second {
		t.Errorf("https defaults: %+v %+v", h, h.HTTP)
	}
	// Normalising twice changes nothing.
	h2, err := Normalize(h)
	if err != nil || h2.Hash() != h.Hash() {
		t.Errorf("not idempotent: %v", err)
	}
	d, err := Normalize(Spec{Type: "dns", DNS: &DNSSpec{Name: "Example.COM", QType: "aaaa", Rcode: "nxdomain"}})
	if err != nil || d.DNS.Name != "example.com." || d.DNS.QType != "AAAA" || d.DNS.Rcode != "NXDOMAIN" {
		t.Errorf("dns: %+v %v", d.DNS, err)
	}
	sc, err := Normalize(Spec{Type: "script", Timeout: Duration(3 * time.Second), Script: &ScriptSpec{Path: "/bin/true"}})
	if err != nil || sc.Script.Timeout.D() != 3*time.Second {
		t.Errorf("script timeout default: %+v %v", sc.Script, err)
	}
}

func TestNormalizeErrorsNameTheField(t *testing.T) {
	for _, c := range []struct {
		spec  Spec
		field string
	}{
		{Spec{Type: "smtp"}, "type"},
		{Spec{Port: 70000}, "port"},
		{Spec{Interval: Duration(time.Millisecond)}, "interval"},
		{Spec{Interval: Duration(2 * time.Hour)}, "interval"},
		{Spec{Timeout: Duration(-1)}, "timeout"},
		{Spec{Timeout: Duration(2 * time.Minute)}, "timeout"},
		{Spec{Retries: -1}, "retries"},
		{Spec{Retries: 11}, "retries"},
		{Spec{RetryDelay: Duration(-time.Second)}, "retry_delay"},
		{Spec{Rise: -1}, "rise"},
		{Spec{Rise: 101}, "rise"},
		{Spec{Fall: -2}, "fall"},
		{Spec{InitialDelayMax: Duration(-1)}, "initial_delay_max"},
		{Spec{Type: "tcp", HTTP: &HTTPSpec{}}, "http"},
		{Spec{Type: "http", UDP: &UDPSpec{}}, "udp"},
		{Spec{Type: "icmp", DNS: &DNSSpec{Name: "a"}}, "dns"},
		{Spec{Type: "tcp", Script: &ScriptSpec{Path: "/x"}}, "script"},
		{Spec{Type: "http", HTTP: &HTTPSpec{Path: "health"}}, "http.path"},
		{Spec{Type: "http", HTTP: &HTTPSpec{Path: "/a b"}}, "http.path"},
		{Spec{Type: "http", HTTP: &HTTPSpec{Status: "2xx"}}, "http.status"},
		{Spec{Type: "http", HTTP: &HTTPSpec{Status: "299-200"}}, "http.status"},
		{Spec{Type: "http", HTTP: &HTTPSpec{Status: "200,700"}}, "http.status"},
		{Spec{Type: "http", HTTP: &HTTPSpec{BodySHA256: "zz"}}, "http.body_sha256"},
		{Spec{Type: "http", HTTP: &HTTPSpec{BodyRegex: "("}}, "http.body_regex"},
		{Spec{Type: "http", HTTP: &HTTPSpec{Host: "a b"}}, "http.host"},
		{Spec{Type: "http", HTTP: &HTTPSpec{SNI: "x.example"}}, "http.sni"},
		{Spec{Type: "http", HTTP: &HTTPSpec{TLSVerify: true}}, "http.tls_verify"},
		{Spec{Type: "https", HTTP: &HTTPSpec{SNI: "a:1"}}, "http.sni"},
		{Spec{Type: "https", HTTP: &HTTPSpec{CAFile: "ca.pem", TLSVerify: true}}, "http.ca_file"},
		{Spec{Type: "https", HTTP: &HTTPSpec{CAFile: "/ca.pem"}}, "http.ca_file"},
		{Spec{Type: "udp", UDP: &UDPSpec{Payload: "a", PayloadHex: "00"}}, "udp.payload_hex"},
		{Spec{Type: "udp", UDP: &UDPSpec{PayloadHex: "0"}}, "udp.payload_hex"},
		{Spec{Type: "udp", UDP: &UDPSpec{ExpectHex: "zz"}}, "udp.expect_hex"},
		{Spec{Type: "udp", UDP: &UDPSpec{Expect: "a", ExpectHex: "61"}}, "udp.expect_hex"},
		{Spec{Type: "udp", UDP: &UDPSpec{Payload: string(make([]byte, MaxPayload+1))}}, "udp.payload"},
		{Spec{Type: "dns"}, "dns.name"},
		{Spec{Type: "dns", DNS: &DNSSpec{Name: "a..b"}}, "dns.name"},
		{Spec{Type: "dns", DNS: &DNSSpec{Name: "a", QType: "BOGUS"}}, "dns.qtype"},
		{Spec{Type: "dns", DNS: &DNSSpec{Name: "a", Rcode: "FINE"}}, "dns.rcode"},
		{Spec{Type: "script"}, "script.path"},
		{Spec{Type: "script", Script: &ScriptSpec{Path: "check.sh"}}, "script.path"},
		{Spec{Type: "script", Script: &ScriptSpec{Path: "/c", Args: []string{"a", "b\x00"}}}, "script.args[1]"},
		{Spec{Type: "script", Script: &ScriptSpec{Path: "/c", Timeout: Duration(time.Hour)}}, "script.timeout"},
	} {
		_, err := Normalize(c.spec)
		var he *Error
		if !errors.As(err, &he) || he.Field != c.field || he.Code != CodeInvalid {
			t.Errorf("Normalize(%+v) = %v, want an error on field %q", c.spec, err, c.field)
		}
	}
}

func TestSpecJSON(t *testing.T) {
	var s Spec
	in := `{"type":"http","interval":"500ms","timeout":0.25,"rise":3,"http":{"path":"/hc","status":"200,301-302"}}`
	if err := json.Unmarshal([]byte(in), &s); err != nil {
		t.Fatal(err)
	}
	if s.Interval.D() != 500*time.Millisecond || s.Timeout.D() != 250*time.Millisecond {
		t.Fatalf("durations %v %v", s.Interval.D(), s.Timeout.D())
	}
	n, err := Normalize(s)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(n)
	var back Spec
	if err := json.Unmarshal(b, &back); err != nil || back.Hash() != n.Hash() {
		t.Fatalf("round trip %s: %v", b, err)
	}
	if err := json.Unmarshal([]byte(`{"interval":"soon"}`), &s); err == nil {
		t.Error("bad duration accepted")
	}
	// The hash tells specs apart.
	a, _ := Normalize(Spec{Type: "tcp"})
	c, _ := Normalize(Spec{Type: "tcp", Fall: 4})
	if a.Hash() == c.Hash() {
		t.Error("different specs, same hash")
	}
}
