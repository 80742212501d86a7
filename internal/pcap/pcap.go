// Package pcap reads packet capture files: libpcap's classic format
// (microsecond and nanosecond timestamps, either byte order) and pcapng
// (sections of either byte order, several interfaces, enhanced and simple
// packet blocks). It also strips the Linux cooked-capture headers (SLL and
// SLL2, what `tcpdump -i any` writes) and writes classic files (Writer),
// which tests use.
//
// It is written here rather than taken from gopacket: github.com/google/
// gopacket is unmaintained and has no SLL2, and the maintained fork's
// pcapgo brings gopacket/layers (some 78,000 lines, 2.8 MB of binary) into
// every raftlb binary for a format that is a 24-byte header and 16-byte
// record headers; this reader is small enough to fuzz whole (FuzzReader).
package pcap

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"
)

// LinkType is a pcap link-layer header type (LINKTYPE_* of tcpdump.org).
type LinkType uint16

const (
	LinkEthernet  LinkType = 1
	LinkRaw       LinkType = 101 // raw IPv4 or IPv6
	LinkLinuxSLL  LinkType = 113 // Linux cooked capture v1
	LinkIPv4      LinkType = 228
	LinkIPv6      LinkType = 229
	LinkLinuxSLL2 LinkType = 276 // Linux cooked capture v2 (tcpdump -i any since libpcap 1.10)
)

// String names the link types raftlb reads, and numbers the others.
func (l LinkType) String() string {
	switch l {
	case LinkEthernet:
		return "Ethernet"
	case LinkRaw:
		return "raw IP"
	case LinkLinuxSLL:
		return "Linux cooked (SLL)"
	case LinkIPv4:
		return "raw IPv4"
	case LinkIPv6:
		return "raw IPv6"
	case LinkLinuxSLL2:
		return "Linux cooked v2 (SLL2)"
	}
	return fmt.Sprintf("link type %d", uint16(l))
}

// MaxSnapLen bounds a record's captured length (libpcap's limit), so that
// a corrupt length is an error, not a huge allocation.
const MaxSnapLen = 262144

// ErrFormat is wrapped by every error about the file's content: not a
// capture file, a truncated one, a corrupt record.
var ErrFormat = errors.New("pcap")

func formatErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrFormat, fmt.Sprintf(format, args...))
}

// Record is one captured packet.
type Record struct {
	N        int // 1-based, as tcpdump and Wireshark number frames
	Time     time.Time
	LinkType LinkType
	Data     []byte // valid until the next call of Next
	OrigLen  int    // the packet's length on the wire; > len(Data) when the capture cut it (snap length)
}

// Reader reads the records of a capture file.
type Reader struct {
	r      *bufio.Reader
	format string
	n      int
	buf    []byte

	// classic pcap
	order binary.ByteOrder
	nano  bool
	link  LinkType

	// pcapng
	ng    bool
	ifs   []ngInterface
	block []byte
}

const (
	magicMicro = 0xa1b2c3d4
	magicNano  = 0xa1b23c4d
	magicNG    = 0x0a0d0d0a
)

// NewReader reads the file header from r. A file that is neither classic
// pcap nor pcapng is ErrFormat.
func NewReader(r io.Reader) (*Reader, error) {
	pr := &Reader{r: bufio.NewReaderSize(r, 64<<10)}
	head, err := pr.r.Peek(4)
	if err != nil {
		return nil, formatErr("not a capture file: %d bytes", len(head))
	}
	if binary.LittleEndian.Uint32(head) == magicNG {
		pr.ng = true
		return pr, pr.readSection()
	}
	var hdr [24]byte
	if _, err := io.ReadFull(pr.r, hdr[:]); err != nil {
		return nil, formatErr("file header truncated")
	}
	for _, o := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
		switch o.Uint32(hdr[0:4]) {
		case magicMicro:
			pr.order = o
		case magicNano:
			pr.order, pr.nano = o, true
		}
		if pr.order != nil {
			break
		}
	}
	if pr.order == nil {
		return nil, formatErr("not a capture file (magic %x): neither pcap nor pcapng", hdr[0:4])
	}
	if major := pr.order.Uint16(hdr[4:6]); major != 2 {
		return nil, formatErr("pcap version %d.%d, want 2.x", major, pr.order.Uint16(hdr[6:8]))
	}
	pr.link = LinkType(pr.order.Uint32(hdr[20:24]) & 0xffff)
	unit := "microsecond"
	if pr.nano {
		unit = "nanosecond"
	}
	pr.format = fmt.Sprintf("pcap (%s, %s, %s)", unit, orderName(pr.order), pr.link)
	return pr, nil
}

func orderName(o binary.ByteOrder) string {
	if o == binary.BigEndian {
		return "big-endian"
	}
	return "little-endian"
}

// Format describes the file: "pcap (nanosecond, little-endian, Ethernet)"
// or "pcapng (little-endian)".
func (r *Reader) Format() string { return r.format }

// Next returns the next record, or io.EOF after the last. A file that ends
// inside a record, or a corrupt one, is ErrFormat.
func (r *Reader) Next() (Record, error) {
	if r.ng {
		return r.nextNG()
	}
	var hdr [16]byte
	n, err := io.ReadFull(r.r, hdr[:])
	if err == io.EOF {
		return Record{}, io.EOF
	}
	if err != nil {
		return Record{}, formatErr("truncated: record %d header has %d of 16 bytes", r.n+1, n)
	}
	sec, frac := r.order.Uint32(hdr[0:4]), r.order.Uint32(hdr[4:8])
	capLen, origLen := r.order.Uint32(hdr[8:12]), r.order.Uint32(hdr[12:16])
	if capLen > MaxSnapLen {
		return Record{}, formatErr("record %d: captured length %d is corrupt (more than %d)", r.n+1, capLen, MaxSnapLen)
	}
	if err := r.fill(int(capLen)); err != nil {
		return Record{}, err
	}
	r.n++
	if !r.nano {
		frac *= 1000
	}
	if frac >= 1e9 {
		return Record{}, formatErr("record %d: timestamp fraction %d is corrupt", r.n, frac)
	}
	return Record{N: r.n, Time: time.Unix(int64(sec), int64(frac)).UTC(), LinkType: r.link, Data: r.buf,
		OrigLen: max(int(origLen), int(capLen))}, nil
}

// fill reads the n bytes of record r.n+1 into r.buf.
func (r *Reader) fill(n int) error {
	if cap(r.buf) < n {
		r.buf = make([]byte, n)
	}
	r.buf = r.buf[:n]
	if got, err := io.ReadFull(r.r, r.buf); err != nil {
		return formatErr("truncated: record %d has %d of %d bytes", r.n+1, got, n)
	}
	return nil
}

// Writer writes a classic pcap file.
type Writer struct {
	w     io.Writer
	order binary.ByteOrder
	nano  bool
}

// NewWriter writes the file header of a classic pcap with link type lt,
// timestamps in nanoseconds (else microseconds), in byte order o.
func NewWriter(w io.Writer, lt LinkType, nano bool, o binary.ByteOrder) (*Writer, error) {
	hdr := make([]byte, 24)
	magic := uint32(magicMicro)
	if nano {
		magic = magicNano
	}
	o.PutUint32(hdr[0:4], magic)
	o.PutUint16(hdr[4:6], 2)
	o.PutUint16(hdr[6:8], 4)
	o.PutUint32(hdr[16:20], MaxSnapLen)
	o.PutUint32(hdr[20:24], uint32(lt))
	_, err := w.Write(hdr)
	return &Writer{w: w, order: o, nano: nano}, err
}

// Write writes one record: data captured at t from a packet of origLen
// bytes (0: len(data)).
func (w *Writer) Write(t time.Time, data []byte, origLen int) error {
	hdr := make([]byte, 16, 16+len(data))
	frac := uint32(t.Nanosecond())
	if !w.nano {
		frac /= 1000
	}
	w.order.PutUint32(hdr[0:4], uint32(t.Unix()))
	w.order.PutUint32(hdr[4:8], frac)
	w.order.PutUint32(hdr[8:12], uint32(len(data)))
	w.order.PutUint32(hdr[12:16], uint32(max(origLen, len(data))))
	_, err := w.w.Write(append(hdr, data...))
	return err
}
