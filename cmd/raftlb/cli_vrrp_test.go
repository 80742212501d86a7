package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/raftlb/raftlb/internal/pcap"
)

// The keepalived 2.2.7 captures and their vectors live in vrrp/testdata
// (vrrp/testdata/README.md).
const vrrpTestdata = "../../vrrp/testdata"

// kaVector is what this test reads of vrrp/testdata/vectors.json.
type kaVector struct {
	Kind     string `json:"kind"`
	Pcap     string `json:"pcap"`
	Seen     int    `json:"seen"`
	FrameHex string `json:"frame_hex"`
	Src      string `json:"src"`
	Dst      string `json:"dst"`
	TTL      int    `json:"ttl"`
	VRRP     *struct {
		Version     int      `json:"version"`
		VRID        int      `json:"vrid"`
		Priority    int      `json:"priority"`
		AuthType    *int     `json:"auth_type"`
		AdverIntS   int      `json:"adver_int_s"`
		MaxAdverInt int      `json:"max_adver_int_cs"`
		Checksum    uint16   `json:"checksum"`
		AuthData    string   `json:"auth_data"`
		ChecksumOK  bool     `json:"checksum_ok"`
		Addrs       []string `json:"addrs"`
	} `json:"vrrp"`
}

func loadKAVectors(t *testing.T) []kaVector {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(vrrpTestdata, "vectors.json"))
	if err != nil {
		t.Fatal(err)
	}
	var vs []kaVector
	if err := json.Unmarshal(b, &vs); err != nil {
		t.Fatal(err)
	}
	return vs
}

// expected returns what raftlb vrrp decode -o json should print for v
// (but frame and time, which vary between its repeats).
func (v kaVector) expected() decodedVRRP {
	w := v.VRRP
	d := decodedVRRP{Src: v.Src, Dst: v.Dst, TTL: v.TTL, Version: w.Version, VRID: w.VRID, Priority: w.Priority,
		AdvertIntCS: w.MaxAdverInt, Addrs: w.Addrs, Checksum: w.Checksum, ChecksumOK: w.ChecksumOK}
	if w.Version == 2 {
		d.AdvertIntCS = w.AdverIntS * 100
		d.AuthType = []string{"none", "pass"}[*w.AuthType]
		if *w.AuthType == 1 {
			pass, _ := hex.DecodeString(w.AuthData)
			d.AuthPass = strings.TrimRight(string(pass), "\x00")
		}
	}
	return d
}

// decodeJSON runs raftlb vrrp decode -o json on file and parses its lines.
func decodeJSON(t *testing.T, file string) []decodedVRRP {
	t.Helper()
	r := runCLI("vrrp", "decode", file, "-o", "json")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("vrrp decode %s: exit %d, %s", file, r.code, r.stderr)
	}
	var out []decodedVRRP
	sc := bufio.NewScanner(strings.NewReader(r.stdout))
	for sc.Scan() {
		var d decodedVRRP
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		out = append(out, d)
	}
	return out
}

// TestVRRPDecodeVectors decodes each keepalived capture: every VRRP packet
// in it is one of the capture's vectors, with the recorded fields, and each
// vector is seen as often as the lab counted it.
func TestVRRPDecodeVectors(t *testing.T) {
	vs := loadKAVectors(t)
	for _, name := range []string{"v2_auth_pass_adv1.pcap", "v2_noauth_adv1.pcap", "v3_adv1.pcap", "v3_unicast_adv1.pcap"} {
		t.Run(name, func(t *testing.T) {
			want := map[string]int{} // expected packet (as JSON) -> times seen
			total := 0
			for _, v := range vs {
				if v.Pcap == name && v.Kind == "vrrp4" {
					b, _ := json.Marshal(v.expected())
					want[string(b)] += v.Seen
					total += v.Seen
				}
			}
			got := decodeJSON(t, filepath.Join(vrrpTestdata, name))
			if len(got) != total {
				t.Errorf("%d VRRP packets, want %d", len(got), total)
			}
			last := time.Time{}
			for _, d := range got {
				tm, err := time.Parse(time.RFC3339Nano, d.Time)
				if err != nil || tm.Before(last) || d.Frame < 1 || d.Error != "" || d.Reason != "" {
					t.Errorf("frame %d: time %q, error %q", d.Frame, d.Time, d.Error)
				}
				last = tm
				d.Frame, d.Time = 0, ""
				b, _ := json.Marshal(d)
				want[string(b)]--
			}
			for p, n := range want {
				if n != 0 {
					t.Errorf("seen %d times too few: %s", n, p)
				}
			}
		})
	}
	// The table form ends with the counts (those of the lab's pcaptool.py).
	r := runCLI("vrrp", "decode", filepath.Join(vrrpTestdata, "v3_unicast_adv1.pcap"))
	if want := "34 VRRP packets (0 rejected), 38 other frames skipped; pcap (nanosecond, little-endian, Ethernet)\n"; r.code != 0 ||
		!strings.HasSuffix(r.stdout, want) {
		t.Errorf("exit %d, output ends %q, want %q", r.code, r.stdout[max(0, len(r.stdout)-120):], want)
	}
}

// readRecords returns the records of a capture file, data copied.
func readRecords(t *testing.T, file string) []pcap.Record {
	t.Helper()
	fh, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	r, err := pcap.NewReader(fh)
	if err != nil {
		t.Fatal(err)
	}
	var recs []pcap.Record
	for {
		rec, err := r.Next()
		if err != nil {
			return recs
		}
		rec.Data = bytes.Clone(rec.Data)
		recs = append(recs, rec)
	}
}

// writeCapture writes records (their link type lt) to a new file in dir.
func writeCapture(t *testing.T, name string, lt pcap.LinkType, nano bool, o binary.ByteOrder, recs []pcap.Record) string {
	t.Helper()
	var buf bytes.Buffer
	w, err := pcap.NewWriter(&buf, lt, nano, o)
	if err != nil {
		t.Fatal(err)
	}
	for _, rec := range recs {
		if err := w.Write(rec.Time, rec.Data, rec.OrigLen); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestVRRPDecodeCooked rewrites a keepalived capture as tcpdump -i any
// would have written it (Linux cooked, SLL and SLL2, big-endian,
// microseconds) and as raw IP: the same packets come out.
func TestVRRPDecodeCooked(t *testing.T) {
	src := filepath.Join(vrrpTestdata, "v2_auth_pass_adv1.pcap")
	recs := readRecords(t, src)
	want := decodeJSON(t, src)
	for i := range want {
		tm, _ := time.Parse(time.RFC3339Nano, want[i].Time)
		want[i].Time = tm.Truncate(time.Microsecond).Format(time.RFC3339Nano)
	}
	rewrite := map[pcap.LinkType]func(frame []byte) []byte{
		pcap.LinkLinuxSLL: func(f []byte) []byte { // packet type 2 (multicast), ARPHRD_ETHER, the source MAC
			h := []byte{0, 2, 0, 1, 0, 6}
			h = append(append(h, f[6:12]...), 0, 0)
			return append(append(h, f[12:14]...), f[14:]...)
		},
		pcap.LinkLinuxSLL2: func(f []byte) []byte { // protocol, ifindex 3, ARPHRD_ETHER, multicast, the source MAC
			h := append(bytes.Clone(f[12:14]), 0, 0, 0, 0, 0, 3, 0, 1, 2, 6)
			h = append(append(h, f[6:12]...), 0, 0)
			return append(h, f[14:]...)
		},
		pcap.LinkRaw: func(f []byte) []byte {
			if binary.BigEndian.Uint16(f[12:14]) != 0x0800 {
				return f[14:16] // an ARP body: no IP version, skipped
			}
			return f[14:]
		},
	}
	for lt, fn := range rewrite {
		t.Run(lt.String(), func(t *testing.T) {
			var out []pcap.Record
			for _, rec := range recs {
				d := fn(rec.Data)
				out = append(out, pcap.Record{Time: rec.Time, Data: d, OrigLen: len(d)})
			}
			file := writeCapture(t, "cooked.pcap", lt, false, binary.BigEndian, out)
			if got := decodeJSON(t, file); !reflect.DeepEqual(got, want) {
				t.Errorf("decoded\n%+v\nwant\n%+v", got, want)
			}
			r := runCLI("vrrp", "decode", file)
			if !strings.HasSuffix(r.stdout, "20 VRRP packets (0 rejected), 35 other frames skipped; pcap (microsecond, big-endian, "+lt.String()+")\n") {
				t.Errorf("summary: %q", r.stdout[max(0, len(r.stdout)-120):])
			}
		})
	}
}

// frameOf returns the first frame of the vectors of pcap name with
// priority prio.
func frameOf(t *testing.T, vs []kaVector, name string, prio int) []byte {
	for _, v := range vs {
		if v.Pcap == name && v.VRRP != nil && v.VRRP.Priority == prio {
			b, _ := hex.DecodeString(v.FrameHex)
			return b
		}
	}
	t.Fatalf("no vector of %s with priority %d", name, prio)
	return nil
}

// fixIPv4 recomputes the IPv4 header checksum of an Ethernet frame.
func fixIPv4(f []byte) []byte {
	f[24], f[25] = 0, 0
	var s uint32
	for i := 14; i < 34; i += 2 {
		s += uint32(f[i])<<8 | uint32(f[i+1])
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	binary.BigEndian.PutUint16(f[24:26], ^uint16(s))
	return f
}

// TestVRRPDecodeGolden: the table form, with a packet of each kind a
// receiver drops, against testdata/vrrp_decode.golden.
func TestVRRPDecodeGolden(t *testing.T) {
	vs := loadKAVectors(t)
	v2, v3 := frameOf(t, vs, "v2_auth_pass_adv1.pcap", 150), frameOf(t, vs, "v3_adv1.pcap", 100)
	v2noauth := frameOf(t, vs, "v2_noauth_adv1.pcap", 0)
	edit := func(f []byte, fn func(b []byte)) []byte { b := bytes.Clone(f); fn(b); return b }
	arp := frameOf(t, vs, "v2_auth_pass_adv1.pcap", 100)
	arp = edit(arp, func(b []byte) { b[12], b[13] = 0x08, 0x06 })
	frames := [][]byte{
		v2, v3, v2noauth,
		edit(v2, func(b []byte) { b[22] = 64; fixIPv4(b) }), // TTL 64: from off the link
		edit(v2, func(b []byte) { b[36] = 151 }),            // priority changed, checksum not: bad checksum
		edit(v3, func(b []byte) { b[22] = 254; fixIPv4(b) }),
		edit(v2, func(b []byte) { b[38] = 2 }),               // auth type AH
		edit(v2, func(b []byte) { copy(b[46:], "a b\x01") }), // password with a space and a control byte, checksum bad
		edit(v2, func(b []byte) { b[25]++ }),                 // IPv4 header checksum
		arp,                                                  // skipped
		v3[:40],                                              // cut by the snap length: below
	}
	var recs []pcap.Record
	t0 := time.Date(2026, 12, 4, 19, 47, 1, 814888123, time.UTC)
	for i, f := range frames {
		recs = append(recs, pcap.Record{Time: t0.Add(time.Duration(i) * 100 * time.Millisecond), Data: f, OrigLen: len(f)})
	}
	recs[len(recs)-1].OrigLen = len(v3)
	file := writeCapture(t, "golden.pcap", pcap.LinkEthernet, true, binary.LittleEndian, recs)
	r := runCLI("vrrp", "decode", file)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	checkGolden(t, "vrrp_decode", r.stdout)

	// The same in JSON: the reasons a receiver would count.
	var reasons []string
	for _, d := range decodeJSON(t, file) {
		reasons = append(reasons, fmt.Sprintf("%d:%s:%v", d.Frame, d.Reason, d.ChecksumOK))
	}
	want := []string{"1::true", "2::true", "3::true", "4:ttl:true", "5:checksum:false", "6:ttl:true", "7:auth:false",
		"8:checksum:false", "9:ip_checksum:true", "11:ip_header:false"}
	if !reflect.DeepEqual(reasons, want) {
		t.Errorf("reasons %q, want %q", reasons, want)
	}
}

func TestVRRPDecodeErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, err := os.ReadFile(filepath.Join(vrrpTestdata, "v2_noauth_adv1.pcap"))
	if err != nil {
		t.Fatal(err)
	}
	wifi := writeCapture(t, "wifi.pcap", 105, false, binary.LittleEndian, []pcap.Record{{Data: []byte{1, 2, 3}, OrigLen: 3}})
	for _, c := range []struct {
		name, file, want, stdout string
	}{
		{"garbage", write("garbage.pcap", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")),
			"garbage.pcap: pcap: not a capture file (magic 47455420): neither pcap nor pcapng", ""},
		{"empty", write("empty.pcap", nil), "empty.pcap: pcap: not a capture file: 0 bytes", ""},
		// Cut inside the last record (48): the packets before it are printed, then the error.
		{"truncated", write("cut.pcap", good[:len(good)-10]), "cut.pcap: pcap: truncated: record 48 has", "10.99.0.13"},
		{"record header cut", write("cut2.pcap", good[:24+10]), "cut2.pcap: pcap: truncated: record 1 header has 10 of 16 bytes", ""},
		{"header only", write("hdr.pcap", good[:20]), "hdr.pcap: pcap: file header truncated", ""},
		{"missing", filepath.Join(dir, "nope.pcap"), "nope.pcap: no such file or directory", ""},
		{"link type", wifi, "no frame of a link type raftlb reads (link type 105); it reads Ethernet, Linux cooked (SLL, SLL2) and raw IP", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			for _, o := range []string{"table", "json"} {
				r := runCLI("vrrp", "decode", "-o", o, c.file)
				if r.code != exitError || !strings.HasPrefix(r.stderr, "raftlb: ") || !strings.Contains(r.stderr, c.want) ||
					strings.Count(r.stderr, "\n") != 1 {
					t.Errorf("-o %s: exit %d, stderr %q; want exit 1 and %q", o, r.code, r.stderr, c.want)
				}
				if !strings.Contains(r.stdout, c.stdout) || (c.stdout == "" && r.stdout != "") {
					t.Errorf("-o %s: stdout %q, want it to contain %q", o, r.stdout, c.stdout)
				}
			}
		})
	}
	// Usage errors: exit 2.
	for _, args := range [][]string{{"vrrp", "decode"}, {"vrrp", "decode", "a", "b"}, {"vrrp", "decode", "-o", "yaml", "a"}} {
		if r := runCLI(args...); r.code != exitUsage {
			t.Errorf("%q: exit %d, %s", args, r.code, r.stderr)
		}
	}
	// A capture with no packets at all is not an error.
	empty := writeCapture(t, "none.pcap", pcap.LinkEthernet, false, binary.LittleEndian, nil)
	if r := runCLI("vrrp", "decode", empty); r.code != 0 || r.stdout != "0 VRRP packets (0 rejected), 0 other frames skipped; pcap (microsecond, little-endian, Ethernet)\n" {
		t.Errorf("empty capture: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
}

// FuzzDecodeCapture: no file makes raftlb vrrp decode panic, and what
// fails is the file (pcap.ErrFormat) or its link types.
func FuzzDecodeCapture(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(vrrpTestdata, "*.pcap"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var n int
		sum, err := decodeCapture(bytes.NewReader(b), func(p decodedVRRP) error {
			n++
			_ = p.row()
			if len(p.Addrs) > 255 || (p.Error == "") != (p.Reason == "") {
				return fmt.Errorf("packet %+v", p)
			}
			return nil
		})
		if err != nil && !errors.Is(err, pcap.ErrFormat) && !strings.Contains(err.Error(), "no frame of a link type") {
			t.Fatal(err)
		}
		if n != sum.vrrp {
			t.Fatalf("%d packets emitted, %d counted", n, sum.vrrp)
		}
		_ = sum.String()
	})
}
