package model

import "strings"

// The DNS names a dns check may use, spelled as in zone files. They are
// listed here, not taken from a DNS library, so that model (and every
// client of the API) carries no DNS code; the checker's library knows
// each one (health's TestDNSNamesKnownToTheChecker).

// DNSTypes are the query types a dns check may ask for.
var DNSTypes = []string{"A", "AAAA", "ANY", "CAA", "CNAME", "DNSKEY", "DS", "HINFO", "HTTPS", "MX", "NAPTR", "NS",
	"PTR", "SOA", "SRV", "SSHFP", "SVCB", "TLSA", "TXT"}

// DNSRcodes are the answer codes a dns check may expect.
var DNSRcodes = []string{"NOERROR", "FORMERR", "SERVFAIL", "NXDOMAIN", "NOTIMP", "REFUSED", "YXDOMAIN", "YXRRSET",
	"NXRRSET", "NOTAUTH", "NOTZONE"}

// isDomainName reports whether s (fully qualified, with its final dot) is
// a domain name a query can carry: labels of 1 to 63 bytes, 255 bytes in
// all on the wire, no spaces or control characters.
func isDomainName(s string) bool {
	if s == "." {
		return true
	}
	if len(s) < 2 || !strings.HasSuffix(s, ".") || len(s)+1 > 255 {
		return false
	}
	for _, l := range strings.Split(strings.TrimSuffix(s, "."), ".") {
		if len(l) == 0 || len(l) > 63 {
			return false
		}
		for _, r := range l {
			if r <= ' ' || r >= 0x7f || r == '\\' || r == '"' {
				return false
			}
		}
	}
	return true
}
