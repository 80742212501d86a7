package pcap

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// readAll reads every record of b, copying the data.
func readAll(t testing.TB, b []byte) (*Reader, []Record, error) {
	t.Helper()
	r, err := NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, nil, err
	}
	var recs []Record
	for {
		rec, err := r.Next()
		if err == io.EOF {
			return r, recs, nil
		}
		if err != nil {
			return r, recs, err
		}
		rec.Data = bytes.Clone(rec.Data)
		recs = append(recs, rec)
	}
}

// The keepalived captures of vrrp/testdata (tcpdump --time-stamp-precision=nano);
// the record counts are those of the lab's pcaptool.py.
func TestKeepalivedCaptures(t *testing.T) {
	records := map[string]int{"v2_auth_pass_adv1.pcap": 55, "v2_noauth_adv1.pcap": 48, "v3_adv1.pcap": 48, "v3_unicast_adv1.pcap": 72}
	files, _ := filepath.Glob("../../vrrp/testdata/*.pcap")
	if len(files) != 4 {
		t.Fatalf("%d pcaps in vrrp/testdata, want 4", len(files))
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r, recs, err := readAll(t, b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if r.Format() != "pcap (nanosecond, little-endian, Ethernet)" || len(recs) != records[filepath.Base(f)] {
			t.Errorf("%s: %s, %d records", f, r.Format(), len(recs))
		}
		size := 24
		for i, rec := range recs {
			size += 16 + len(rec.Data)
			if rec.N != i+1 || rec.LinkType != LinkEthernet || rec.OrigLen != len(rec.Data) ||
				rec.Time.Year() < 2020 || (i > 0 && rec.Time.Before(recs[i-1].Time)) {
				t.Errorf("%s record %d: %+v", f, i+1, rec)
			}
		}
		if size != len(b) {
			t.Errorf("%s: records cover %d of %d bytes", f, size, len(b))
		}
	}
}

func TestWriterRoundTrip(t *testing.T) {
	t0 := time.Date(2026, 12, 4, 19, 47, 1, 814888123, time.UTC)
	for _, c := range []struct {
		nano   bool
		order  binary.ByteOrder
		format string
	}{
		{true, binary.LittleEndian, "pcap (nanosecond, little-endian, Linux cooked v2 (SLL2))"},
		{true, binary.BigEndian, "pcap (nanosecond, big-endian, Linux cooked v2 (SLL2))"},
		{false, binary.LittleEndian, "pcap (microsecond, little-endian, Linux cooked v2 (SLL2))"},
		{false, binary.BigEndian, "pcap (microsecond, big-endian, Linux cooked v2 (SLL2))"},
	} {
		var buf bytes.Buffer
		w, err := NewWriter(&buf, LinkLinuxSLL2, c.nano, c.order)
		if err != nil {
			t.Fatal(err)
		}
		want := []Record{
			{N: 1, Time: t0, LinkType: LinkLinuxSLL2, Data: []byte("abc"), OrigLen: 3},
			{N: 2, Time: t0.Add(time.Second), LinkType: LinkLinuxSLL2, Data: []byte{}, OrigLen: 60},
		}
		for _, rec := range want {
			if err := w.Write(rec.Time, rec.Data, rec.OrigLen); err != nil {
				t.Fatal(err)
			}
		}
		if !c.nano {
			for i := range want {
				want[i].Time = want[i].Time.Truncate(time.Microsecond)
			}
		}
		r, got, err := readAll(t, buf.Bytes())
		if err != nil || r.Format() != c.format || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: %+v, %v; want %+v", c.format, got, err, want)
		}
	}
}

func TestClassicErrors(t *testing.T) {
	var good bytes.Buffer
	w, _ := NewWriter(&good, LinkEthernet, false, binary.LittleEndian)
	w.Write(time.Unix(1, 0), make([]byte, 40), 0)
	g := good.Bytes() // 24 + 16 + 40 bytes
	corrupt := func(off int, v ...byte) []byte {
		b := bytes.Clone(g)
		copy(b[off:], v)
		return b
	}
	for _, c := range []struct {
		name string
		file []byte
		want string
	}{
		{"empty", nil, "not a capture file: 0 bytes"},
		{"text", []byte("hello, this is not a capture file"), "not a capture file (magic 68656c6c): neither pcap nor pcapng"},
		{"header cut", g[:10], "file header truncated"},
		{"record header cut", g[:30], "truncated: record 1 header has 6 of 16 bytes"},
		{"record data cut", g[:70], "truncated: record 1 has 30 of 40 bytes"},
		{"huge length", corrupt(32, 0xff, 0xff, 0xff, 0x7f), "record 1: captured length 2147483647 is corrupt"},
		{"version 3", corrupt(4, 3), "pcap version 3.4, want 2.x"},
		{"usec >= 1e6", corrupt(28, 0x40, 0x42, 0x0f, 0), "timestamp fraction 1000000000 is corrupt"},
	} {
		_, _, err := readAll(t, c.file)
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrFormat with %q", c.name, err, c.want)
		}
	}
}

// ngBlock returns a pcapng block of type typ with body (padded to 32 bits).
func ngBlock(o binary.AppendByteOrder, typ uint32, body []byte) []byte {
	body = append(bytes.Clone(body), make([]byte, (4-len(body)%4)%4)...)
	b := o.AppendUint32(nil, typ)
	b = o.AppendUint32(b, uint32(12+len(body)))
	b = append(b, body...)
	return o.AppendUint32(b, uint32(12+len(body)))
}

func ngSHB(o binary.AppendByteOrder) []byte {
	body := o.AppendUint32(nil, byteOrderMagic)
	body = o.AppendUint16(body, 1)
	body = o.AppendUint16(body, 0)
	body = o.AppendUint64(body, ^uint64(0)) // section length unknown
	return ngBlock(o, blockSHB, body)
}

// ngIDB describes an interface; tsresol < 0 leaves the option out.
func ngIDB(o binary.AppendByteOrder, lt LinkType, snap uint32, tsresol int) []byte {
	body := o.AppendUint16(nil, uint16(lt))
	body = o.AppendUint16(body, 0)
	body = o.AppendUint32(body, snap)
	body = o.AppendUint16(body, 2) // if_name "lo", padded
	body = o.AppendUint16(body, 2)
	body = append(body, 'l', 'o', 0, 0)
	if tsresol >= 0 {
		body = o.AppendUint16(body, optTSResol)
		body = o.AppendUint16(body, 1)
		body = append(body, byte(tsresol), 0, 0, 0)
	}
	body = append(body, 0, 0, 0, 0) // opt_endofopt
	return ngBlock(o, blockIDB, body)
}

func ngEPB(o binary.AppendByteOrder, iface uint32, ticks uint64, data []byte, origLen uint32) []byte {
	body := o.AppendUint32(nil, iface)
	body = o.AppendUint32(body, uint32(ticks>>32))
	body = o.AppendUint32(body, uint32(ticks))
	body = o.AppendUint32(body, uint32(len(data)))
	body = o.AppendUint32(body, origLen)
	body = append(body, data...)
	body = append(body, make([]byte, (4-len(data)%4)%4)...)
	return ngBlock(o, blockEPB, body)
}

// ngFile: a little-endian section (Ethernet with nanosecond timestamps, a
// raw-IP interface with the default microseconds, a name-resolution block
// to skip, a simple packet block), then a big-endian section (SLL2 with
// timestamps in 2^-10 s).
func ngFile() []byte {
	le, be := binary.LittleEndian, binary.BigEndian
	var f []byte
	f = append(f, ngSHB(le)...)
	f = append(f, ngIDB(le, LinkEthernet, 0, 9)...)
	f = append(f, ngIDB(le, LinkRaw, 4, -1)...)
	f = append(f, ngEPB(le, 0, 1_700_000_000_123456789, []byte("eth frame"), 9)...)
	f = append(f, ngBlock(le, 4, []byte{0, 0, 0, 0})...) // name resolution: skipped
	f = append(f, ngEPB(le, 1, 1_700_000_001_000002, []byte("ip"), 100)...)
	f = append(f, ngBlock(le, blockSPB, append(le.AppendUint32(nil, 5), "simple..."...))...)
	f = append(f, ngSHB(be)...)
	f = append(f, ngIDB(be, LinkLinuxSLL2, 0, 0x8a)...)
	f = append(f, ngEPB(be, 0, 3<<10|512, []byte("sll2"), 4)...)
	return f
}

func TestPcapng(t *testing.T) {
	r, got, err := readAll(t, ngFile())
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{
		{N: 1, Time: time.Unix(1_700_000_000, 123456789).UTC(), LinkType: LinkEthernet, Data: []byte("eth frame"), OrigLen: 9},
		{N: 2, Time: time.Unix(1_700_000_001, 2000).UTC(), LinkType: LinkRaw, Data: []byte("ip"), OrigLen: 100},
		// the SPB is on interface 0 of the first section, its data padded
		{N: 3, LinkType: LinkEthernet, Data: []byte("simpl"), OrigLen: 5},
		{N: 4, Time: time.Unix(3, 5e8).UTC(), LinkType: LinkLinuxSLL2, Data: []byte("sll2"), OrigLen: 4},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("records\n got %+v\nwant %+v", got, want)
	}
	if r.Format() != "pcapng (big-endian)" {
		t.Errorf("Format = %q", r.Format())
	}
}

func TestPcapngErrors(t *testing.T) {
	le := binary.LittleEndian
	shb, idb := ngSHB(le), ngIDB(le, LinkEthernet, 0, -1)
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }
	badTrailer := cat(shb, idb)
	badTrailer[len(badTrailer)-1] = 9
	badOrder := bytes.Clone(shb)
	badOrder[8] = 0
	longOpt := bytes.Clone(idb)
	le.PutUint16(longOpt[18:20], 200) // if_name's length
	for _, c := range []struct {
		name string
		file []byte
		want string
	}{
		{"section cut", shb[:20], "truncated: pcapng block of type 168627466 has 20 of 28 bytes"},
		{"byte-order magic", badOrder, "byte-order magic"},
		{"version 2", func() []byte { b := bytes.Clone(shb); b[12] = 2; return b }(), "pcapng version 2.0, want 1.x"},
		{"short section header", ngBlock(le, blockSHB, le.AppendUint32(nil, byteOrderMagic)), "pcapng section header: 4 bytes"},
		{"packet before interface", cat(shb, ngEPB(le, 0, 0, []byte("x"), 1)), "interface 0 was not described"},
		{"block cut", cat(shb, idb[:10]), "truncated: pcapng block of type 1 has 10 of"},
		{"block header cut", cat(shb, idb[:6]), "truncated: block header has 6 of 8 bytes"},
		{"trailer", badTrailer, "trailing length"},
		{"option overrun", cat(shb, longOpt), "option 2 overruns the block"},
		{"tsresol 10^-10", cat(shb, ngIDB(le, LinkEthernet, 0, 10)), "finer than nanoseconds"},
		{"caplen overrun", cat(shb, idb, func() []byte {
			b := ngEPB(le, 0, 0, []byte("abcd"), 4)
			le.PutUint32(b[20:24], 99)
			return b
		}()), "captured length 99 overruns its block"},
		{"huge block", cat(shb, []byte{1, 0, 0, 0, 0xf0, 0xff, 0xff, 0xff}), "length 4294967280 is corrupt"},
		{"SPB without interface", cat(shb, ngBlock(le, blockSPB, []byte{1, 0, 0, 0, 1})), "simple packet block without an interface"},
	} {
		_, _, err := readAll(t, c.file)
		if !errors.Is(err, ErrFormat) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want ErrFormat with %q", c.name, err, c.want)
		}
	}
}

func TestCooked(t *testing.T) {
	ip := []byte{0x45, 0xc0}
	sll := append([]byte{0, 2, 0, 1, 0, 6, 2, 0x99, 0, 0, 0, 0x11, 0, 0, 0x08, 0x00}, ip...)
	sll2 := append([]byte{0x86, 0xdd, 0, 0, 0, 0, 0, 7, 0, 1, 4, 6, 2, 0x99, 0, 0, 0, 0x12, 0, 0}, 0x60)
	c, rest, ok := DecodeCooked(LinkLinuxSLL, sll)
	if want := (Cooked{Protocol: 0x0800, PacketType: 2, HardwareType: 1, Addr: []byte{2, 0x99, 0, 0, 0, 0x11}}); !ok ||
		!reflect.DeepEqual(c, want) || !bytes.Equal(rest, ip) {
		t.Errorf("SLL: %+v %x %v, want %+v", c, rest, ok, want)
	}
	c, rest, ok = DecodeCooked(LinkLinuxSLL2, sll2)
	if want := (Cooked{Protocol: 0x86dd, PacketType: 4, HardwareType: 1, Addr: []byte{2, 0x99, 0, 0, 0, 0x12}, IfIndex: 7}); !ok ||
		!reflect.DeepEqual(c, want) || !bytes.Equal(rest, []byte{0x60}) {
		t.Errorf("SLL2: %+v %x %v, want %+v", c, rest, ok, want)
	}
	for _, n := range []struct {
		lt    LinkType
		data  []byte
		proto uint16
		ok    bool
	}{
		{LinkLinuxSLL, sll, 0x0800, true},
		{LinkLinuxSLL2, sll2, 0x86dd, true},
		{LinkLinuxSLL, sll[:15], 0, false},
		{LinkLinuxSLL2, sll2[:19], 0, false},
		{LinkRaw, ip, 0x0800, true},
		{LinkIPv6, []byte{0x60}, 0x86dd, true},
		{LinkRaw, []byte{0x10}, 0, true},
		{LinkRaw, nil, 0, false},
		{LinkEthernet, sll, 0, false},
	} {
		if proto, _, ok := Network(n.lt, n.data); proto != n.proto || ok != n.ok {
			t.Errorf("Network(%s, %x) = %#x, %v; want %#x, %v", n.lt, n.data, proto, ok, n.proto, n.ok)
		}
	}
	if _, _, ok := DecodeCooked(LinkEthernet, sll); ok {
		t.Error("DecodeCooked of Ethernet")
	}
	if s := LinkType(999).String(); s != "link type 999" {
		t.Errorf("String = %q", s)
	}
}
