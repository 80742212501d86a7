package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/raftlb/raftlb/internal/pcap"
	"github.com/raftlb/raftlb/vrrp"
)

// raftlb vrrp decode: the operator's tcpdump for VRRP (package vrrp's
// codec over package pcap's reader), for looking at what keepalived and
// raftlb put on the wire.

func vrrpCommands() []*command {
	return []*command{{
		name: "vrrp decode", params: []string{"FILE"}, synopsis: "[-o json]", kind: kindLocal,
		summary: "print the VRRP packets of a capture file (pcap or pcapng; - for stdin)",
		help: "print every VRRP advertisement (RFC 3768 v2, RFC 5798 v3) in a capture file, as tcpdump would, " +
			"with the checks a receiver makes: time (UTC), source, destination, TTL, version, VRID, priority, " +
			"advert interval, addresses, v2 auth type and password, whether the checksum is right, and for a packet " +
			"a receiver would drop, why. Reads classic pcap and pcapng of Ethernet, Linux cooked (tcpdump -i any: " +
			"SLL, SLL2) and raw IP captures, e.g. from 'tcpdump -i eth0 -w vrrp.pcap vrrp'. Other frames are skipped " +
			"and counted. -o json writes one JSON object per line and packet. A file that is not a capture, or is " +
			"truncated, is an error (exit 1) after the packets before the damage",
		setup: func(f *flagSet) action {
			output := "table"
			f.Var(&enumValue{p: &output, choices: []string{"table", "json"}}, "o", "output `FORMAT`: table or json")
			return func(e *env, args []string) error {
				in, closeIn, err := openCapture(args[0])
				if err != nil {
					return err
				}
				defer closeIn()
				if output == "json" {
					enc := json.NewEncoder(e.out)
					_, err = decodeCapture(in, func(p decodedVRRP) error { return enc.Encode(p) })
				} else {
					var rows [][]string
					var sum captureSummary
					sum, err = decodeCapture(in, func(p decodedVRRP) error { rows = append(rows, p.row()); return nil })
					if len(rows) > 0 {
						writeTable(e.out, append([][]string{vrrpHeader}, rows...))
					}
					if err == nil {
						fmt.Fprintln(e.out, sum)
					}
				}
				if err != nil {
					return fmt.Errorf("%s: %w", args[0], err)
				}
				return nil
			}
		},
	}}
}

// openCapture opens name, or standard input for "-".
func openCapture(name string) (io.Reader, func(), error) {
	if name == "-" {
		return os.Stdin, func() {}, nil
	}
	fh, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	return fh, func() { fh.Close() }, nil
}

// decodedVRRP is one VRRP packet of a capture, as -o json prints it.
type decodedVRRP struct {
	Frame       int       `json:"frame"` // record number in the file, from 1
	Time        string    `json:"time"`  // RFC 3339, UTC, nanoseconds; "" when the file has none
	Src         string    `json:"src"`
	Dst         string    `json:"dst"`
	TTL         int       `json:"ttl"` // IPv4 TTL or IPv6 hop limit
	Version     int       `json:"version"`
	VRID        int       `json:"vrid"`
	Priority    int       `json:"priority"`
	AdvertIntCS int       `json:"advert_int_cs"` // centiseconds, also for v2 (100 per second)
	Addrs       []string  `json:"addrs"`
	AuthType    string    `json:"auth_type"` // v2: none, pass, ah, auth-type-N; v3: ""
	AuthPass    string    `json:"auth_pass"`
	Checksum    uint16    `json:"checksum"`
	ChecksumOK  bool      `json:"checksum_ok"`
	Error       string    `json:"error"`  // why a receiver drops it, "" when it does not
	Reason      string    `json:"reason"` // the error's short label (vrrp.Reason): ttl, checksum, auth, ...
	decoded     bool      // the VRRP fields were decoded (else only the IP header was)
	time        time.Time // the record's
}

var vrrpHeader = []string{"FRAME", "TIME", "SRC", "DST", "TTL", "VER", "VRID", "PRIO", "ADVERT", "ADDRS", "AUTH", "CHECKSUM", "ERROR"}

func (p decodedVRRP) row() []string {
	t := "-"
	if !p.time.IsZero() {
		t = p.time.Format("2006-01-02T15:04:05.000000Z07:00")
	}
	r := []string{strconv.Itoa(p.Frame), t, p.Src, p.Dst, strconv.Itoa(p.TTL)}
	if !p.decoded {
		r = append(r, "-", "-", "-", "-", "-", "-", "-")
	} else {
		auth := "-"
		if p.Version == 2 {
			auth = p.AuthType
			if p.AuthType == vrrp.AuthSimple.String() {
				auth += " " + quoteIfNeeded(p.AuthPass)
			}
		}
		sum := "ok"
		if !p.ChecksumOK {
			sum = fmt.Sprintf("bad 0x%04x", p.Checksum)
		}
		r = append(r, strconv.Itoa(p.Version), strconv.Itoa(p.VRID), strconv.Itoa(p.Priority),
			vrrp.Interval(p.AdvertIntCS).String(), orNone(strings.Join(p.Addrs, ",")), auth, sum)
	}
	return append(r, orNone(strings.TrimPrefix(p.Error, "vrrp: ")))
}

// quoteIfNeeded returns s, or s quoted when it has spaces or bytes that do
// not print.
func quoteIfNeeded(s string) string {
	if q := strconv.Quote(s); s == "" || strings.ContainsAny(s, " \"") || q[1:len(q)-1] != s {
		return q
	}
	return s
}

// captureSummary counts what decodeCapture saw.
type captureSummary struct {
	format          string
	vrrp, rejected  int
	skipped         int
	otherLinks      map[pcap.LinkType]int // records of link types not read
	otherLinksTotal int
}

func (s captureSummary) String() string {
	out := fmt.Sprintf("%d VRRP packets (%d rejected), %d other frames skipped; %s", s.vrrp, s.rejected, s.skipped, s.format)
	if s.otherLinksTotal > 0 {
		out += fmt.Sprintf("; %d frames of link types not read: %s", s.otherLinksTotal, linkTypeList(s.otherLinks))
	}
	return out
}

func linkTypeList(m map[pcap.LinkType]int) string {
	var lts []pcap.LinkType
	for lt := range m {
		lts = append(lts, lt)
	}
	slices.Sort(lts)
	var parts []string
	for _, lt := range lts {
		parts = append(parts, lt.String())
	}
	return strings.Join(parts, ", ")
}

// decodeCapture reads the capture in and hands every VRRP packet to emit,
// in file order. The error is the file's (not a capture, truncated,
// corrupt, only link types it cannot read) or emit's.
func decodeCapture(in io.Reader, emit func(decodedVRRP) error) (captureSummary, error) {
	r, err := pcap.NewReader(in)
	if err != nil {
		return captureSummary{}, err
	}
	sum := captureSummary{otherLinks: map[pcap.LinkType]int{}}
	for {
		rec, err := r.Next()
		sum.format = r.Format()
		if err == io.EOF {
			break
		}
		if err != nil {
			return sum, err
		}
		if !slices.Contains(readLinks, rec.LinkType) {
			sum.otherLinks[rec.LinkType]++
			sum.otherLinksTotal++
			continue
		}
		f, derr := decodeRecord(rec)
		if errors.Is(derr, vrrp.ErrNotVRRP) || f == nil {
			sum.skipped++
			continue
		}
		p := describeVRRP(rec, f, derr)
		sum.vrrp++
		if derr != nil {
			sum.rejected++
		}
		if err := emit(p); err != nil {
			return sum, err
		}
	}
	if sum.otherLinksTotal > 0 && sum.vrrp+sum.skipped == 0 {
		return sum, fmt.Errorf("%s: no frame of a link type raftlb reads (%s); it reads Ethernet, Linux cooked (SLL, SLL2) and raw IP",
			sum.format, linkTypeList(sum.otherLinks))
	}
	return sum, nil
}

// readLinks are the link types decodeCapture reads.
var readLinks = []pcap.LinkType{pcap.LinkEthernet, pcap.LinkLinuxSLL, pcap.LinkLinuxSLL2, pcap.LinkRaw, pcap.LinkIPv4, pcap.LinkIPv6}

// decodeRecord decodes one record of a link type in readLinks. A frame
// that is not IP, or too short for its link header, is ErrNotVRRP.
func decodeRecord(rec pcap.Record) (*vrrp.Frame, error) {
	if rec.LinkType == pcap.LinkEthernet {
		return vrrp.DecodeEthernet(rec.Data)
	}
	proto, packet, ok := pcap.Network(rec.LinkType, rec.Data)
	if !ok || (proto != 0x0800 && proto != 0x86dd) {
		return nil, vrrp.ErrNotVRRP
	}
	return vrrp.DecodeIP(packet)
}

// describeVRRP turns a decoded (or rejected) VRRP frame into its output.
func describeVRRP(rec pcap.Record, f *vrrp.Frame, err error) decodedVRRP {
	p := decodedVRRP{Frame: rec.N, Src: f.IP.Src.String(), Dst: f.IP.Dst.String(), TTL: int(f.IP.TTL),
		Addrs: []string{}, Reason: vrrp.Reason(err), time: rec.Time}
	if !rec.Time.IsZero() {
		p.Time = rec.Time.Format(time.RFC3339Nano)
	}
	if err != nil {
		p.Error = err.Error()
		if rec.OrigLen > len(rec.Data) {
			p.Error += fmt.Sprintf(" (the capture kept %d of the frame's %d bytes: raise tcpdump's -s)", len(rec.Data), rec.OrigLen)
		}
	}
	if len(f.Message) > 0 {
		p.Version = int(f.Message[0] >> 4)
	}
	if f.VRRP == nil {
		return p
	}
	v := f.VRRP
	p.decoded = true
	p.Version, p.VRID, p.Priority, p.AdvertIntCS = v.Version, int(v.VRID), int(v.Priority), int(v.Interval)
	for _, a := range v.Addrs {
		p.Addrs = append(p.Addrs, a.String())
	}
	if v.Version == 2 {
		p.AuthType, p.AuthPass = v.AuthType.String(), v.AuthPass
	}
	p.Checksum, p.ChecksumOK = v.Checksum, vrrp.ChecksumOK(f.Message, f.IP.Src, f.IP.Dst)
	return p
}
