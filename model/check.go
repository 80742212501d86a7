package model

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Check types.
const (
	CheckTCP    = "tcp"
	CheckHTTP   = "http"
	CheckHTTPS  = "https"
	CheckUDP    = "udp"
	CheckDNS    = "dns"
	CheckICMP   = "icmp"
	CheckScript = "script"
	CheckNone   = "none" // not checked: the real server counts as up
)

// Defaults and limits.
const (
	DefaultCheckInterval = 2 * time.Second
	DefaultCheckTimeout  = time.Second
	DefaultRise          = 2
	DefaultFall          = 3
	DefaultRetryDelay    = time.Second // used only when Retries > 0
	DefaultHTTPStatus    = "200-299"

	MinCheckInterval = 10 * time.Millisecond
	MaxCheckInterval = time.Hour
	MaxCheckTimeout  = time.Minute
	MaxRetries       = 10
	MaxRiseFall      = 100
	MaxCheckBody     = 1 << 20 // bytes of an HTTP body read for body checks
	MaxUDPPayload    = 1400    // bytes of a UDP payload or expected reply
	MaxScriptArgs    = 64
)

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

// Check is one health check, as set on a virtual service (later embedded in
// the service model). Zero fields take defaults in NormalizeCheck.
type Check struct {
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

	HTTP   *HTTPCheck   `json:"http,omitempty"`   // type http and https
	UDP    *UDPCheck    `json:"udp,omitempty"`    // type udp
	DNS    *DNSCheck    `json:"dns,omitempty"`    // type dns
	Script *ScriptCheck `json:"script,omitempty"` // type script
}

// HTTPCheck is an HTTP(S) GET check.
type HTTPCheck struct {
	Path   string `json:"path,omitempty"`   // default "/"
	Status string `json:"status,omitempty"` // accepted status codes, "200-299,301"; default 200-299
	// BodySHA256 is the hex SHA-256 of the whole body (at most MaxCheckBody
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

// UDPCheck is a UDP check: send Payload, then wait for a reply. With an
// expected reply the reply must start with it; with RequireReply any reply
// will do; otherwise no ICMP error within the timeout counts as up (as
// keepalived's UDP_CHECK). Each byte string is given as text or as hex, not
// both.
type UDPCheck struct {
	Payload      string `json:"payload,omitempty"`
	PayloadHex   string `json:"payload_hex,omitempty"`
	Expect       string `json:"expect,omitempty"`
	ExpectHex    string `json:"expect_hex,omitempty"`
	RequireReply bool   `json:"require_reply,omitempty"`
}

// DNSCheck is a DNS query over UDP; the check passes when the answer has the
// expected rcode.
type DNSCheck struct {
	Name  string `json:"name"`            // query name; made fully qualified
	QType string `json:"qtype,omitempty"` // A, AAAA, SOA, ...; default A
	Rcode string `json:"rcode,omitempty"` // NOERROR, NXDOMAIN, ...; default NOERROR
}

// ScriptCheck runs a program (keepalived's MISC_CHECK). Exit 0 = up, 1 =
// down; 2-255 = down, or with Dynamic up with weight exit-2. A script that
// outlives its timeout is killed with its whole process group. The target
// is passed in RAFTLB_CHECK_ADDRESS and RAFTLB_CHECK_PORT.
type ScriptCheck struct {
	Path    string   `json:"path"`
	Args    []string `json:"args,omitempty"`
	Timeout Duration `json:"timeout,omitempty"` // default the check's Timeout
	Dynamic bool     `json:"dynamic,omitempty"` // misc_dynamic
}

var (
	hostRE = regexp.MustCompile(`^[A-Za-z0-9_.:\[\]-]{1,253}$`)
	hexRE  = regexp.MustCompile(`^([0-9a-fA-F]{2})*$`)
)

// NormalizeCheck validates s and returns it with defaults filled in and values in
// canonical form. Errors are *Error naming the field in JSON spelling.
func NormalizeCheck(s Check) (Check, error) {
	s.Type = strings.ToLower(strings.TrimSpace(s.Type))
	if s.Type == "" {
		s.Type = CheckTCP
	}
	switch s.Type {
	case CheckTCP, CheckHTTP, CheckHTTPS, CheckUDP, CheckDNS, CheckICMP, CheckScript, CheckNone:
	default:
		return s, Invalid("type", "%q is not a check type (tcp, http, https, udp, dns, icmp, script, none)", s.Type)
	}
	if s.Port < 0 || s.Port > 65535 {
		return s, Invalid("port", "%d is not a port (0-65535, 0 = the real server's)", s.Port)
	}
	if s.Interval == 0 {
		s.Interval = Duration(DefaultCheckInterval)
	}
	if s.Interval.D() < MinCheckInterval || s.Interval.D() > MaxCheckInterval {
		return s, Invalid("interval", "%s is out of range (%s-%s)", s.Interval.D(), MinCheckInterval, MaxCheckInterval)
	}
	if s.Timeout == 0 {
		s.Timeout = Duration(min(DefaultCheckTimeout, s.Interval.D()))
	}
	if s.Timeout.D() < time.Millisecond || s.Timeout.D() > MaxCheckTimeout {
		return s, Invalid("timeout", "%s is out of range (1ms-%s)", s.Timeout.D(), MaxCheckTimeout)
	}
	if s.Retries < 0 || s.Retries > MaxRetries {
		return s, Invalid("retries", "%d is out of range (0-%d)", s.Retries, MaxRetries)
	}
	if s.RetryDelay < 0 || s.RetryDelay.D() > MaxCheckTimeout {
		return s, Invalid("retry_delay", "%s is out of range (0-%s)", s.RetryDelay.D(), MaxCheckTimeout)
	}
	if s.RetryDelay == 0 && s.Retries > 0 {
		s.RetryDelay = Duration(DefaultRetryDelay)
	}
	if s.Rise == 0 {
		s.Rise = DefaultRise
	}
	if s.Rise < 1 || s.Rise > MaxRiseFall {
		return s, Invalid("rise", "%d is out of range (1-%d)", s.Rise, MaxRiseFall)
	}
	if s.Fall == 0 {
		s.Fall = DefaultFall
	}
	if s.Fall < 1 || s.Fall > MaxRiseFall {
		return s, Invalid("fall", "%d is out of range (1-%d)", s.Fall, MaxRiseFall)
	}
	if s.InitialDelayMax == 0 {
		s.InitialDelayMax = s.Interval
	}
	if s.InitialDelayMax < 0 || s.InitialDelayMax.D() > MaxCheckInterval {
		return s, Invalid("initial_delay_max", "%s is out of range (0-%s)", s.InitialDelayMax.D(), MaxCheckInterval)
	}

	// Per-type blocks: only the one for the type.
	want := map[string]string{CheckHTTP: "http", CheckHTTPS: "http", CheckUDP: "udp", CheckDNS: "dns", CheckScript: "script"}[s.Type]
	for name, set := range map[string]bool{"http": s.HTTP != nil, "udp": s.UDP != nil, "dns": s.DNS != nil, "script": s.Script != nil} {
		if set && name != want {
			return s, Invalid(name, "only with type %s", map[string]string{"http": "http or https", "udp": "udp", "dns": "dns", "script": "script"}[name])
		}
	}
	var err error
	switch s.Type {
	case CheckHTTP, CheckHTTPS:
		s.HTTP, err = normHTTP(s.HTTP, s.Type == CheckHTTPS)
	case CheckUDP:
		s.UDP, err = normUDP(s.UDP)
	case CheckDNS:
		s.DNS, err = normDNS(s.DNS)
	case CheckScript:
		s.Script, err = normScript(s.Script, s.Timeout)
	}
	return s, err
}

func normHTTP(h *HTTPCheck, tls bool) (*HTTPCheck, error) {
	var c HTTPCheck
	if h != nil {
		c = *h
	}
	if c.Path == "" {
		c.Path = "/"
	}
	if !strings.HasPrefix(c.Path, "/") || strings.ContainsAny(c.Path, " \r\n\t") || len(c.Path) > 2048 {
		return nil, Invalid("http.path", "%q must start with / and contain no spaces (at most 2048 bytes)", c.Path)
	}
	if c.Status == "" {
		c.Status = DefaultHTTPStatus
	}
	rs, err := ParseStatus(c.Status)
	if err != nil {
		return nil, Invalid("http.status", "%v", err)
	}
	c.Status = formatStatus(rs)
	if c.BodySHA256 != "" {
		c.BodySHA256 = strings.ToLower(c.BodySHA256)
		if len(c.BodySHA256) != 64 || !hexRE.MatchString(c.BodySHA256) {
			return nil, Invalid("http.body_sha256", "want 64 hex digits (SHA-256)")
		}
	}
	if c.BodyRegex != "" {
		if _, err := regexp.Compile(c.BodyRegex); err != nil {
			return nil, Invalid("http.body_regex", "%v", err)
		}
	}
	if c.Host != "" && !hostRE.MatchString(c.Host) {
		return nil, Invalid("http.host", "%q is not a host name", c.Host)
	}
	if c.SNI != "" && (!hostRE.MatchString(c.SNI) || strings.ContainsAny(c.SNI, ":[]")) {
		return nil, Invalid("http.sni", "%q is not a DNS name", c.SNI)
	}
	if !tls && (c.SNI != "" || c.TLSVerify || c.CAFile != "") {
		f := "http.sni"
		if c.TLSVerify {
			f = "http.tls_verify"
		} else if c.CAFile != "" {
			f = "http.ca_file"
		}
		return nil, Invalid(f, "only with type https")
	}
	if c.CAFile != "" {
		if !filepath.IsAbs(c.CAFile) {
			return nil, Invalid("http.ca_file", "%q must be an absolute path", c.CAFile)
		}
		if !c.TLSVerify {
			return nil, Invalid("http.ca_file", "only with tls_verify")
		}
	}
	return &c, nil
}

// StatusRange is an inclusive range of HTTP status codes.
type StatusRange struct{ Lo, Hi int }

// Contains reports whether code is in r.
func (r StatusRange) Contains(code int) bool { return code >= r.Lo && code <= r.Hi }

// ParseStatus reads a status list such as "200-299,301" (normalised).
func ParseStatus(s string) ([]StatusRange, error) {
	var out []StatusRange
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
		out = append(out, StatusRange{Lo: a, Hi: b})
	}
	return out, nil
}

func formatStatus(rs []StatusRange) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		if r.Lo == r.Hi {
			parts[i] = strconv.Itoa(r.Lo)
		} else {
			parts[i] = strconv.Itoa(r.Lo) + "-" + strconv.Itoa(r.Hi)
		}
	}
	return strings.Join(parts, ",")
}

func normUDP(u *UDPCheck) (*UDPCheck, error) {
	var c UDPCheck
	if u != nil {
		c = *u
	}
	if c.Payload != "" && c.PayloadHex != "" {
		return nil, Invalid("udp.payload_hex", "give payload or payload_hex, not both")
	}
	if c.Expect != "" && c.ExpectHex != "" {
		return nil, Invalid("udp.expect_hex", "give expect or expect_hex, not both")
	}
	for _, f := range []struct {
		name string
		v    *string
	}{{"udp.payload_hex", &c.PayloadHex}, {"udp.expect_hex", &c.ExpectHex}} {
		*f.v = strings.ToLower(strings.ReplaceAll(*f.v, " ", ""))
		if !hexRE.MatchString(*f.v) {
			return nil, Invalid(f.name, "not an even number of hex digits")
		}
	}
	if len(c.Payload) > MaxUDPPayload || len(c.PayloadHex)/2 > MaxUDPPayload {
		return nil, Invalid("udp.payload", "longer than %d bytes", MaxUDPPayload)
	}
	if len(c.Expect) > MaxUDPPayload || len(c.ExpectHex)/2 > MaxUDPPayload {
		return nil, Invalid("udp.expect", "longer than %d bytes", MaxUDPPayload)
	}
	return &c, nil
}

// bytes returns the payload and the expected reply of a normalised UDPCheck.
// Bytes returns the payload and the expected reply, decoded.
func (u *UDPCheck) Bytes() (payload, expect []byte) {
	payload, expect = []byte(u.Payload), []byte(u.Expect)
	if u.PayloadHex != "" {
		payload, _ = hex.DecodeString(u.PayloadHex)
	}
	if u.ExpectHex != "" {
		expect, _ = hex.DecodeString(u.ExpectHex)
	}
	return payload, expect
}

func normDNS(d *DNSCheck) (*DNSCheck, error) {
	if d == nil || d.Name == "" {
		return nil, Invalid("dns.name", "required")
	}
	c := *d
	c.Name = strings.ToLower(c.Name)
	if !strings.HasSuffix(c.Name, ".") {
		c.Name += "."
	}
	if !isDomainName(c.Name) {
		return nil, Invalid("dns.name", "%q is not a domain name", d.Name)
	}
	c.QType = strings.ToUpper(c.QType)
	if c.QType == "" {
		c.QType = "A"
	}
	if !slices.Contains(DNSTypes, c.QType) {
		return nil, Invalid("dns.qtype", "%q is not a DNS type (A, AAAA, SOA, ...)", d.QType)
	}
	c.Rcode = strings.ToUpper(c.Rcode)
	if c.Rcode == "" {
		c.Rcode = "NOERROR"
	}
	if !slices.Contains(DNSRcodes, c.Rcode) {
		return nil, Invalid("dns.rcode", "%q is not an rcode (NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ...)", d.Rcode)
	}
	return &c, nil
}

func normScript(s *ScriptCheck, timeout Duration) (*ScriptCheck, error) {
	if s == nil || s.Path == "" {
		return nil, Invalid("script.path", "required")
	}
	c := *s
	if !filepath.IsAbs(c.Path) {
		return nil, Invalid("script.path", "%q must be an absolute path", c.Path)
	}
	if len(c.Args) > MaxScriptArgs {
		return nil, Invalid("script.args", "more than %d arguments", MaxScriptArgs)
	}
	for i, a := range c.Args {
		if strings.ContainsRune(a, 0) {
			return nil, Invalid(fmt.Sprintf("script.args[%d]", i), "contains a NUL byte")
		}
	}
	if c.Timeout == 0 {
		c.Timeout = timeout
	}
	if c.Timeout.D() < time.Millisecond || c.Timeout.D() > MaxCheckTimeout {
		return nil, Invalid("script.timeout", "%s is out of range (1ms-%s)", c.Timeout.D(), MaxCheckTimeout)
	}
	c.Args = append([]string(nil), c.Args...)
	return &c, nil
}

// Hash identifies a normalised spec: equal specs have equal hashes.
func (s Check) Hash() string {
	b, _ := json.Marshal(s)
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}
