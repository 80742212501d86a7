package model

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestNormalizeDefaults(t *testing.T) {
	s, err := NormalizeCheck(Check{})
	if err != nil {
		t.Fatal(err)
	}
	want := Check{Type: "tcp", Interval: Duration(2 * time.Second), Timeout: Duration(time.Second), Rise: 2, Fall: 3,
		InitialDelayMax: Duration(2 * time.Second)}
	if s.Hash() != want.Hash() {
		t.Fatalf("defaults %+v, want %+v", s, want)
	}
	h, err := NormalizeCheck(Check{Type: "HTTPS", Retries: 2, HTTP: &HTTPCheck{Status: " 301 ,200-299", BodySHA256: "AB"}})
	if err == nil {
		t.Fatalf("short digest accepted: %+v", h)
	}
	h, err = NormalizeCheck(Check{Type: "HTTPS", Retries: 2, HTTP: &HTTPCheck{Status: " 301 ,200-299"}})
	if err != nil {
		t.Fatal(err)
	}
	if h.Type != "https" || h.HTTP.Path != "/" || h.HTTP.Status != "301,200-299" || h.RetryDelay.D() != time.Second {
		t.Errorf("https defaults: %+v %+v", h, h.HTTP)
	}
	// Normalising twice changes nothing.
	h2, err := NormalizeCheck(h)
	if err != nil || h2.Hash() != h.Hash() {
		t.Errorf("not idempotent: %v", err)
	}
	d, err := NormalizeCheck(Check{Type: "dns", DNS: &DNSCheck{Name: "Example.COM", QType: "aaaa", Rcode: "nxdomain"}})
	if err != nil || d.DNS.Name != "example.com." || d.DNS.QType != "AAAA" || d.DNS.Rcode != "NXDOMAIN" {
		t.Errorf("dns: %+v %v", d.DNS, err)
	}
	sc, err := NormalizeCheck(Check{Type: "script", Timeout: Duration(3 * time.Second), Script: &ScriptCheck{Path: "/bin/true"}})
	if err != nil || sc.Script.Timeout.D() != 3*time.Second {
		t.Errorf("script timeout default: %+v %v", sc.Script, err)
	}
}

func TestNormalizeErrorsNameTheField(t *testing.T) {
	for _, c := range []struct {
		spec  Check
		field string
	}{
		{Check{Type: "smtp"}, "type"},
		{Check{Port: 70000}, "port"},
		{Check{Interval: Duration(time.Millisecond)}, "interval"},
		{Check{Interval: Duration(2 * time.Hour)}, "interval"},
		{Check{Timeout: Duration(-1)}, "timeout"},
		{Check{Timeout: Duration(2 * time.Minute)}, "timeout"},
		{Check{Retries: -1}, "retries"},
		{Check{Retries: 11}, "retries"},
		{Check{RetryDelay: Duration(-time.Second)}, "retry_delay"},
		{Check{Rise: -1}, "rise"},
		{Check{Rise: 101}, "rise"},
		{Check{Fall: -2}, "fall"},
		{Check{InitialDelayMax: Duration(-1)}, "initial_delay_max"},
		{Check{Type: "tcp", HTTP: &HTTPCheck{}}, "http"},
		{Check{Type: "http", UDP: &UDPCheck{}}, "udp"},
		{Check{Type: "icmp", DNS: &DNSCheck{Name: "a"}}, "dns"},
		{Check{Type: "tcp", Script: &ScriptCheck{Path: "/x"}}, "script"},
		{Check{Type: "http", HTTP: &HTTPCheck{Path: "health"}}, "http.path"},
		{Check{Type: "http", HTTP: &HTTPCheck{Path: "/a b"}}, "http.path"},
		{Check{Type: "http", HTTP: &HTTPCheck{Status: "2xx"}}, "http.status"},
		{Check{Type: "http", HTTP: &HTTPCheck{Status: "299-200"}}, "http.status"},
		{Check{Type: "http", HTTP: &HTTPCheck{Status: "200,700"}}, "http.status"},
		{Check{Type: "http", HTTP: &HTTPCheck{BodySHA256: "zz"}}, "http.body_sha256"},
		{Check{Type: "http", HTTP: &HTTPCheck{BodyRegex: "("}}, "http.body_regex"},
		{Check{Type: "http", HTTP: &HTTPCheck{Host: "a b"}}, "http.host"},
		{Check{Type: "http", HTTP: &HTTPCheck{SNI: "x.example"}}, "http.sni"},
		{Check{Type: "http", HTTP: &HTTPCheck{TLSVerify: true}}, "http.tls_verify"},
		{Check{Type: "https", HTTP: &HTTPCheck{SNI: "a:1"}}, "http.sni"},
		{Check{Type: "https", HTTP: &HTTPCheck{CAFile: "ca.pem", TLSVerify: true}}, "http.ca_file"},
		{Check{Type: "https", HTTP: &HTTPCheck{CAFile: "/ca.pem"}}, "http.ca_file"},
		{Check{Type: "udp", UDP: &UDPCheck{Payload: "a", PayloadHex: "00"}}, "udp.payload_hex"},
		{Check{Type: "udp", UDP: &UDPCheck{PayloadHex: "0"}}, "udp.payload_hex"},
		{Check{Type: "udp", UDP: &UDPCheck{ExpectHex: "zz"}}, "udp.expect_hex"},
		{Check{Type: "udp", UDP: &UDPCheck{Expect: "a", ExpectHex: "61"}}, "udp.expect_hex"},
		{Check{Type: "udp", UDP: &UDPCheck{Payload: string(make([]byte, MaxUDPPayload+1))}}, "udp.payload"},
		{Check{Type: "dns"}, "dns.name"},
		{Check{Type: "dns", DNS: &DNSCheck{Name: "a..b"}}, "dns.name"},
		{Check{Type: "dns", DNS: &DNSCheck{Name: "a", QType: "BOGUS"}}, "dns.qtype"},
		{Check{Type: "dns", DNS: &DNSCheck{Name: "a", Rcode: "FINE"}}, "dns.rcode"},
		{Check{Type: "script"}, "script.path"},
		{Check{Type: "script", Script: &ScriptCheck{Path: "check.sh"}}, "script.path"},
		{Check{Type: "script", Script: &ScriptCheck{Path: "/c", Args: []string{"a", "b\x00"}}}, "script.args[1]"},
		{Check{Type: "script", Script: &ScriptCheck{Path: "/c", Timeout: Duration(time.Hour)}}, "script.timeout"},
	} {
		_, err := NormalizeCheck(c.spec)
		var he *Error
		if !errors.As(err, &he) || he.Field != c.field || he.Code != CodeInvalid {
			t.Errorf("NormalizeCheck(%+v) = %v, want an error on field %q", c.spec, err, c.field)
		}
	}
}

func TestSpecJSON(t *testing.T) {
	var s Check
	in := `{"type":"http","interval":"500ms","timeout":0.25,"rise":3,"http":{"path":"/hc","status":"200,301-302"}}`
	if err := json.Unmarshal([]byte(in), &s); err != nil {
		t.Fatal(err)
	}
	if s.Interval.D() != 500*time.Millisecond || s.Timeout.D() != 250*time.Millisecond {
		t.Fatalf("durations %v %v", s.Interval.D(), s.Timeout.D())
	}
	n, err := NormalizeCheck(s)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(n)
	var back Check
	if err := json.Unmarshal(b, &back); err != nil || back.Hash() != n.Hash() {
		t.Fatalf("round trip %s: %v", b, err)
	}
	if err := json.Unmarshal([]byte(`{"interval":"soon"}`), &s); err == nil {
		t.Error("bad duration accepted")
	}
	// The hash tells specs apart.
	a, _ := NormalizeCheck(Check{Type: "tcp"})
	c, _ := NormalizeCheck(Check{Type: "tcp", Fall: 4})
	if a.Hash() == c.Hash() {
		t.Error("different specs, same hash")
	}
}
