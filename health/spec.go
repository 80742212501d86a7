// Package health runs the health checks of one director: checkers for each
// check type, and a Prober that schedules thousands of targets from one
// timer-driven goroutine onto a bounded worker pool and keeps a rise/fall
// state per target. Results are reported to the caller (for gossip); the
// leader decides.
package health

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Check types.
const (
	TypeTCP    = "tcp"
	TypeHTTP   = "http"
	TypeHTTPS  = "https"
	TypeUDP    = "udp"
	TypeDNS    = "dns"
	TypeICMP   = "icmp"
	TypeScript = "script"
	TypeNone   = "none" // not checked: the real server counts as up
)

// Defaults and limits.
const (
	DefaultInterval   = 2 * time.Second
	DefaultTimeout    = time.Second
	DefaultRise       = 2
	DefaultFall       = 3
	DefaultRetryDelay = time.Second // used only when Retries > 0
	DefaultStatus     = "200-299"

	MinInterval = 10 * time.Millisecond
	MaxInterval = time.Hour
	MaxTimeout  = time.Minute
	MaxRetries  = 10
	MaxRiseFall = 100
	MaxBody     = 1 << 20 // bytes of an HTTP body read for body checks
	MaxPayload  = 1400    // bytes of a UDP payload or expected reply
	MaxArgs     = 64
)

// CodeInvalid is the code of every Normalize error; it equals fsm.CodeInvalid.
const CodeInvalid = "invalid"

// Error is a rejected field; it has the shape of fsm.Error (code, field in
// JSON spelling, message) so the service model can convert it by prefixing
// the field ("health.http.status").
type Error struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Field   string `json:"field,omitempty"`
}

func (e *Error) Error() string {
	if e.Field != "" {
		return e.Field + ": " + e.Message
	}
	return e.Message
}

func invalid(field, format string, args ...any) *Error {
	return &Error{Code: CodeInvalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// Duration is a time.Duration that reads and writes JSON as a Go duration
// string ("1.5s", "200ms"); a JSON number is read as seconds.
type Duration time.Duration

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return fmt.Errorf("%q is not a duration (e.g. \"2s\", \"500ms\")", s)
		}
		*d = Duration(v)
		return nil
	}
	var f float64
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("want a duration string or a number of seconds")
	}
	*d = Duration(f * float64(time.Second))
	return nil
}

// Spec is one health check, as set on a virtual service (later embedded in
// the service model). Zero fields take defaults in Normalize.
type Spec struct {
	Type string `json:"type"` // tcp | http | https | udp | dns | icmp | script | none; empty = tcp
	// Port overrides the real server's port for the check (keepalived's
	// connect_port); 0 = the real server's port.
	Port int `json:"port,omitempty"`

	Interval   Duration `json:"interval,omitempty"`    // between checks; default 2s
	Timeout    Duration `json:"timeout,omitempty"`     // of one attempt; default 1s
	Retries    int      `json:"retries,omitempty"`     // extra attempts before a check fails; default 0
	RetryDelay Duration `json:"retry_delay,omitempty"` // between attempts; default 1s
	Rise       int      `json:"rise,omitempty"`        // consecutive successes to come up; default 2
	Fall       int      `json:"fall,omitempty"`        // consecutive failures to go down; default 3
	// InitialDelayMax bounds the random delay before a new target's first
	// check, spreading load; default = Interval.
	InitialDelayMax Duration `json:"initial_delay_max,omitempty"`
	// StartDown starts a new target down (it needs Rise successes); by
	// default it starts up (it needs Fall failures to go down).
	StartDown bool `json:"start_down,omitempty"`

	HTTP   *HTTPSpec   `json:"http,omitempty"`   // type http and https
	UDP    *UDPSpec    `json:"udp,omitempty"`    // type udp
	DNS    *DNSSpec    `json:"dns,omitempty"`    // type dns
	Script *ScriptSpec `json:"script,omitempty"` // type script
}

// HTTPSpec is an HTTP(S) GET check.
type HTTPSpec struct {
	Path   string `json:"path,omitempty"`   // default "/"
	Status string `json:"status,omitempty"` // accepted status codes, "200-299,301"; default 200-299
	// BodySHA256 is the hex SHA-256 of the whole body (at most MaxBody
	// bytes); BodyRegex must match the body. Either, both or neither.
	BodySHA256 string `json:"body_sha256,omitempty"`
	BodyRegex  string `json:"body_regex,omitempty"`
	Host       string `json:"host,omitempty"` // Host header; default the target address
	SNI        string `json:"sni,omitempty"`  // TLS server name; default Host (no SNI for an IP)
	// TLSVerify checks the server's certificate chain and name (against SNI,
	// Host or the IP). Off by default, as keepalived's SSL_GET.
	TLSVerify bool   `json:"tls_verify,omitempty"`
	CAFile    string `json:"ca_file,omitempty"` // PEM roots for TLSVerify; default the system roots
}

// UDPSpec is a UDP check: send Payload, then wait for a reply. With an
// expected reply the reply must start with it; with RequireReply any reply
// will do; otherwise no ICMP error within the timeout counts as up (as
// keepalived's UDP_CHECK). Each byte string is given as text or as hex, not
// both.
type UDPSpec struct {
	Payload      string `json:"payload,omitempty"`
	PayloadHex   string `json:"payload_hex,omitempty"`
	Expect       string `json:"expect,omitempty"`
	ExpectHex    string `json:"expect_hex,omitempty"`
	RequireReply bool   `json:"require_reply,omitempty"`
}

// DNSSpec is a DNS query over UDP; the check passes when the answer has the
// expected rcode.
type DNSSpec struct {
	Name  string `json:"name"`            // query name; made fully qualified
	QType string `json:"qtype,omitempty"` // A, AAAA, SOA, ...; default A
	Rcode string `json:"rcode,omitempty"` // NOERROR, NXDOMAIN, ...; default NOERROR
}

// ScriptSpec runs a program (keepalived's MISC_CHECK). Exit 0 = up, 1 =
// down; 2-255 = down, or with Dynamic up with weight exit-2. A script that
// outlives its timeout is killed with its whole process group. The target
// is passed in RAFTLB_CHECK_ADDRESS and RAFTLB_CHECK_PORT.
type ScriptSpec struct {
	Path    string   `json:"path"`
	Args    []string `json:"args,omitempty"`
	Timeout Duration `json:"timeout,omitempty"` // default the check's Timeout
	Dynamic bool     `json:"dynamic,omitempty"` // misc_dynamic
}

var (
	hostRE = regexp.MustCompile(`^[A-Za-z0-9_.:\[\]-]{1,253}$`)
	hexRE  = regexp.MustCompile(`^([0-9a-fA-F]{2})*$`)
)

// Normalize validates s and returns it with defaults filled in and values in
// canonical form. Errors are *Error naming the field in JSON spelling.
func Normalize(s Spec) (Spec, error) {
	s.Type = strings.ToLower(strings.TrimSpace(s.Type))
	if s.Type == "" {
		s.Type = TypeTCP
	}
	switch s.Type {
	case TypeTCP, TypeHTTP, TypeHTTPS, TypeUDP, TypeDNS, TypeICMP, TypeScript, TypeNone:
	default:
		return s, invalid("type", "%q is not a check type (tcp, http, https, udp, dns, icmp, script, none)", s.Type)
	}
	if s.Port < 0 || s.Port > 65535 {
		return s, invalid("port", "%d is not a port (0-65535, 0 = the real server's)", s.Port)
	}
	if s.Interval == 0 {
		s.Interval = Duration(DefaultInterval)
	}
	if s.Interval.D() < MinInterval || s.Interval.D() > MaxInterval {
		return s, invalid("interval", "%s is out of range (%s-%s)", s.Interval.D(), MinInterval, MaxInterval)
	}
	if s.Timeout == 0 {
		s.Timeout = Duration(min(DefaultTimeout, s.Interval.D()))
	}
	if s.Timeout.D() < time.Millisecond || s.Timeout.D() > MaxTimeout {
		return s, invalid("timeout", "%s is out of range (1ms-%s)", s.Timeout.D(), MaxTimeout)
	}
	if s.Retries < 0 || s.Retries > MaxRetries {
		return s, invalid("retries", "%d is out of range (0-%d)", s.Retries, MaxRetries)
	}
	if s.RetryDelay < 0 || s.RetryDelay.D() > MaxTimeout {
		return s, invalid("retry_delay", "%s is out of range (0-%s)", s.RetryDelay.D(), MaxTimeout)
	}
	if s.RetryDelay == 0 && s.Retries > 0 {
		s.RetryDelay = Duration(DefaultRetryDelay)
	}
	if s.Rise == 0 {
		s.Rise = DefaultRise
	}
	if s.Rise < 1 || s.Rise > MaxRiseFall {
		return s, invalid("rise", "%d is out of range (1-%d)", s.Rise, MaxRiseFall)
	}
	if s.Fall == 0 {
		s.Fall = DefaultFall
	}
	if s.Fall < 1 || s.Fall > MaxRiseFall {
		return s, invalid("fall", "%d is out of range (1-%d)", s.Fall, MaxRiseFall)
	}
	if s.InitialDelayMax == 0 {
		s.InitialDelayMax = s.Interval
	}
	if s.InitialDelayMax < 0 || s.InitialDelayMax.D() > MaxInterval {
		return s, invalid("initial_delay_max", "%s is out of range (0-%s)", s.InitialDelayMax.D(), MaxInterval)
	}

	// Per-type blocks: only the one for the type.
	want := map[string]string{TypeHTTP: "http", TypeHTTPS: "http", TypeUDP: "udp", TypeDNS: "dns", TypeScript: "script"}[s.Type]
	for name, set := range map[string]bool{"http": s.HTTP != nil, "udp": s.UDP != nil, "dns": s.DNS != nil, "script": s.Script != nil} {
		if set && name != want {
			return s, invalid(name, "only with type %s", map[string]string{"http": "http or https", "udp": "udp", "dns": "dns", "script": "script"}[name])
		}
	}
	var err error
	switch s.Type {
	case TypeHTTP, TypeHTTPS:
		s.HTTP, err = normHTTP(s.HTTP, s.Type == TypeHTTPS)
	case TypeUDP:
		s.UDP, err = normUDP(s.UDP)
	case TypeDNS:
		s.DNS, err = normDNS(s.DNS)
	case TypeScript:
		s.Script, err = normScript(s.Script, s.Timeout)
	}
	return s, err
}

func normHTTP(h *HTTPSpec, tls bool) (*HTTPSpec, error) {
	var c HTTPSpec
	if h != nil {
		c = *h
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if !strings.HasPrefix(c.Path, "/") || strings.ContainsAny(c.Path, " \r\n\t") || len(c.Path) > 2048 {
		return nil, invalid("http.path", "%q must start with / and contain no spaces (at most 2048 bytes)", c.Path)
	}
	if c.Status == "" {
		c.Status = DefaultStatus
	}
	rs, err := parseStatus(c.Status)
	if err != nil {
		return nil, invalid("http.status", "%v", err)
	}
	c.Status = formatStatus(rs)
	if c.BodySHA256 != "" {
		c.BodySHA256 = strings.ToLower(c.BodySHA256)
		if len(c.BodySHA256) != 64 || !hexRE.MatchString(c.BodySHA256) {
			return nil, invalid("http.body_sha256", "want 64 hex digits (SHA-256)")
		}
	}
	if c.BodyRegex != "" {
		if _, err := regexp.Compile(c.BodyRegex); err != nil {
			return nil, invalid("http.body_regex", "%v", err)
		}
	}
	if c.Host != "" && !hostRE.MatchString(c.Host) {
		return nil, invalid("http.host", "%q is not a host name", c.Host)
	}
	if c.SNI != "" && (!hostRE.MatchString(c.SNI) || strings.ContainsAny(c.SNI, ":[]")) {
		return nil, invalid("http.sni", "%q is not a DNS name", c.SNI)
	}
	if !tls && (c.SNI != "" || c.TLSVerify || c.CAFile != "") {
		f := "http.sni"
		if c.TLSVerify {
			f = "http.tls_verify"
		} else if c.CAFile != "" {
			f = "http.ca_file"
		}
		return nil, invalid(f, "only with type https")
	}
	if c.CAFile != "" {
		if !filepath.IsAbs(c.CAFile) {
			return nil, invalid("http.ca_file", "%q must be an absolute path", c.CAFile)
		}
		if !c.TLSVerify {
			return nil, invalid("http.ca_file", "only with tls_verify")
		}
	}
	return &c, nil
}

// statusRange is an inclusive range of HTTP status codes.
type statusRange struct{ lo, hi int }

func parseStatus(s string) ([]statusRange, error) {
	var out []statusRange
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err1 := strconv.Atoi(strings.TrimSpace(lo))
		b := a
		var err2 error
		if isRange {
			b, err2 = strconv.Atoi(strings.TrimSpace(hi))
		}
		if err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%q is not a status code or range (e.g. \"200-299,301\")", part)
		}
		if a < 100 || b > 599 || a > b {
			return nil, fmt.Errorf("%q is out of range (100-599, low-high)", part)
		}
		out = append(out, statusRange{a, b})
	}
	return out, nil
}

func formatStatus(rs []statusRange) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		if r.lo == r.hi {
			parts[i] = strconv.Itoa(r.lo)
		} else {
			parts[i] = strconv.Itoa(r.lo) + "-" + strconv.Itoa(r.hi)
		}
	}
	return strings.Join(parts, ",")
}

func normUDP(u *UDPSpec) (*UDPSpec, error) {
	var c UDPSpec
	if u != nil {
		c = *u
	}
	if c.Payload != "" && c.PayloadHex != "" {
		return nil, invalid("udp.payload_hex", "give payload or payload_hex, not both")
	}
	if c.Expect != "" && c.ExpectHex != "" {
		return nil, invalid("udp.expect_hex", "give expect or expect_hex, not both")
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"udp.payload_hex", &c.PayloadHex}, {"udp.expect_hex", &c.ExpectHex}} {
		*f.v = strings.ToLower(strings.ReplaceAll(*f.v, " ", ""))
		if !hexRE.MatchString(*f.v) {
			return nil, invalid(f.name, "not an even number of hex digits")
		}
	}
	if len(c.Payload) > MaxPayload || len(c.PayloadHex)/2 > MaxPayload {
		return nil, invalid("udp.payload", "longer than %d bytes", MaxPayload)
	}
	if len(c.Expect) > MaxPayload || len(c.ExpectHex)/2 > MaxPayload {
		return nil, invalid("udp.expect", "longer than %d bytes", MaxPayload)
	}
	return &c, nil
}

// bytes returns the payload and the expected reply of a normalised UDPSpec.
func (u *UDPSpec) bytes() (payload, expect []byte) {
	payload, expect = []byte(u.Payload), []byte(u.Expect)
	if u.PayloadHex != "" {
		payload, _ = hex.DecodeString(u.PayloadHex)
	}
	if u.ExpectHex != "" {
		expect, _ = hex.DecodeString(u.ExpectHex)
	}
	return payload, expect
}

func normDNS(d *DNSSpec) (*DNSSpec, error) {
	if d == nil || d.Name == "" {
		return nil, invalid("dns.name", "required")
	}
	c := *d
	c.Name = dns.Fqdn(strings.ToLower(c.Name))
	if _, ok := dns.IsDomainName(c.Name); !ok {
		return nil, invalid("dns.name", "%q is not a domain name", d.Name)
	}
	c.QType = strings.ToUpper(c.QType)
	if c.QType == "" {
		c.QType = "A"
	}
	if _, ok := dns.StringToType[c.QType]; !ok {
		return nil, invalid("dns.qtype", "%q is not a DNS type (A, AAAA, SOA, ...)", d.QType)
	}
	c.Rcode = strings.ToUpper(c.Rcode)
	if c.Rcode == "" {
		c.Rcode = "NOERROR"
	}
	if _, ok := dns.StringToRcode[c.Rcode]; !ok {
		return nil, invalid("dns.rcode", "%q is not an rcode (NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...)", d.Rcode)
	}
	return &c, nil
}

func normScript(s *ScriptSpec, timeout Duration) (*ScriptSpec, error) {
	if s == nil || s.Path == "" {
		return nil, invalid("script.path", "required")
	}
	c := *s
	if !filepath.IsAbs(c.Path) {
		return nil, invalid("script.path", "%q must be an absolute path", c.Path)
	}
	if len(c.Args) > MaxArgs {
		return nil, invalid("script.args", "more than %d arguments", MaxArgs)
	}
	for i, a := range c.Args {
		if strings.ContainsRune(a, 0) {
			return nil, invalid(fmt.Sprintf("script.args[%d]", i), "contains a NUL byte")
		}
	}
	if c.Timeout == 0 {
		c.Timeout = timeout
	}
	if c.Timeout.D() < time.Millisecond || c.Timeout.D() > MaxTimeout {
		return nil, invalid("script.timeout", "%s is out of range (1ms-%s)", c.Timeout.D(), MaxTimeout)
	}
	c.Args = append([]string(nil), c.Args...)
	return &c, nil
}

// Hash identifies a normalised spec: equal specs have equal hashes.
func (s Spec) Hash() string {
	b, _ := json.Marshal(s)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}
