package pcap

import (
	"encoding/binary"
	"io"
	"math"
	"time"
)

// pcapng (draft-ietf-opsawg-pcapng): a file is sections, each a Section
// Header Block (which sets the byte order) followed by Interface
// Description Blocks (link type, timestamp resolution) and packet blocks.
// Read here: SHB, IDB, Enhanced Packet Blocks, Simple Packet Blocks; every
// other block (name resolution, statistics, decryption secrets, custom) is
// skipped.

const (
	blockSHB = 0x0a0d0d0a
	blockIDB = 1
	blockSPB = 3
	blockEPB = 6

	byteOrderMagic uint32 = 0x1a2b3c4d
	optTSResol            = 9 // if_tsresol
	maxBlock              = MaxSnapLen + 1<<16
)

type ngInterface struct {
	link    LinkType
	snapLen uint32
	// ticks per second of the timestamps (if_tsresol; default 10^6)
	perSec uint64
}

// readBlock reads the next block: its type and body (without the type and
// the two lengths). At the end of the file it returns io.EOF.
func (r *Reader) readBlock() (uint32, []byte, error) {
	var hdr [8]byte
	n, err := io.ReadFull(r.r, hdr[:])
	if err == io.EOF {
		return 0, nil, io.EOF
	}
	if err != nil {
		return 0, nil, formatErr("truncated: block header has %d of 8 bytes", n)
	}
	typ := r.order.Uint32(hdr[0:4])
	total := r.order.Uint32(hdr[4:8])
	if typ == blockSHB {
		// A new section may change the byte order: read it from its magic.
		magic, err := r.r.Peek(4)
		if err != nil {
			return 0, nil, formatErr("truncated: section header")
		}
		switch byteOrderMagic {
		case binary.LittleEndian.Uint32(magic):
			r.order = binary.LittleEndian
		case binary.BigEndian.Uint32(magic):
			r.order = binary.BigEndian
		default:
			return 0, nil, formatErr("pcapng section header: byte-order magic %x", magic)
		}
		total = r.order.Uint32(hdr[4:8])
	}
	if total < 12 || total%4 != 0 || total > maxBlock {
		return 0, nil, formatErr("pcapng block of type %d: length %d is corrupt", typ, total)
	}
	if cap(r.block) < int(total)-8 {
		r.block = make([]byte, total-8)
	}
	r.block = r.block[:total-8]
	if got, err := io.ReadFull(r.r, r.block); err != nil {
		return 0, nil, formatErr("truncated: pcapng block of type %d has %d of %d bytes", typ, got+8, total)
	}
	body := r.block[:len(r.block)-4]
	if trailer := r.order.Uint32(r.block[len(r.block)-4:]); trailer != total {
		return 0, nil, formatErr("pcapng block of type %d: trailing length %d, want %d", typ, trailer, total)
	}
	return typ, body, nil
}

// readSection reads the file's first block, a section header (NewReader
// saw its type).
func (r *Reader) readSection() error {
	r.order = binary.LittleEndian
	_, body, err := r.readBlock()
	if err != nil {
		return err
	}
	return r.section(body)
}

// section starts a new section from its header's body.
func (r *Reader) section(body []byte) error {
	if len(body) < 16 {
		return formatErr("pcapng section header: %d bytes", len(body))
	}
	if major := r.order.Uint16(body[4:6]); major != 1 {
		return formatErr("pcapng version %d.%d, want 1.x", major, r.order.Uint16(body[6:8]))
	}
	r.ifs = r.ifs[:0]
	r.format = "pcapng (" + orderName(r.order) + ")"
	return nil
}

// nextNG returns the next packet of a pcapng file.
func (r *Reader) nextNG() (Record, error) {
	for {
		typ, body, err := r.readBlock()
		if err != nil {
			return Record{}, err
		}
		switch typ {
		case blockSHB:
			if err := r.section(body); err != nil {
				return Record{}, err
			}
		case blockIDB:
			if err := r.addInterface(body); err != nil {
				return Record{}, err
			}
		case blockEPB:
			return r.enhanced(body)
		case blockSPB:
			return r.simple(body)
		}
	}
}

func (r *Reader) addInterface(body []byte) error {
	if len(body) < 8 {
		return formatErr("pcapng interface %d: description of %d bytes", len(r.ifs), len(body))
	}
	ifc := ngInterface{link: LinkType(r.order.Uint16(body[0:2])), snapLen: r.order.Uint32(body[4:8]), perSec: 1e6}
	opts := body[8:]
	for len(opts) >= 4 {
		code, n := r.order.Uint16(opts[0:2]), int(r.order.Uint16(opts[2:4]))
		if code == 0 { // opt_endofopt
			break
		}
		if 4+n > len(opts) {
			return formatErr("pcapng interface %d: option %d overruns the block", len(r.ifs), code)
		}
		if code == optTSResol && n >= 1 {
			v := opts[4]
			exp, base := uint64(v&0x7f), uint64(10)
			if v&0x80 != 0 {
				base = 2
			}
			// A resolution finer than a nanosecond (or absurd) is refused:
			// the records' times would overflow.
			perSec := uint64(1)
			for range exp {
				perSec *= base
				if perSec > 1e9 {
					return formatErr("pcapng interface %d: timestamp resolution 0x%02x is finer than nanoseconds", len(r.ifs), v)
				}
			}
			ifc.perSec = perSec
		}
		opts = opts[min(4+(n+3)&^3, len(opts)):] // values are padded to 32 bits
	}
	r.ifs = append(r.ifs, ifc)
	return nil
}

// enhanced decodes an Enhanced Packet Block.
func (r *Reader) enhanced(body []byte) (Record, error) {
	r.n++
	if len(body) < 20 {
		return Record{}, formatErr("pcapng record %d: enhanced packet block of %d bytes", r.n, len(body))
	}
	id := r.order.Uint32(body[0:4])
	if id >= uint32(len(r.ifs)) {
		return Record{}, formatErr("pcapng record %d: interface %d was not described", r.n, id)
	}
	ifc := r.ifs[id]
	ticks := uint64(r.order.Uint32(body[4:8]))<<32 | uint64(r.order.Uint32(body[8:12]))
	capLen, origLen := r.order.Uint32(body[12:16]), r.order.Uint32(body[16:20])
	if uint64(capLen) > uint64(len(body)-20) {
		return Record{}, formatErr("pcapng record %d: captured length %d overruns its block", r.n, capLen)
	}
	sec := ticks / ifc.perSec
	if sec > math.MaxInt64/2 {
		return Record{}, formatErr("pcapng record %d: timestamp is corrupt", r.n)
	}
	nsec := (ticks % ifc.perSec) * 1e9 / ifc.perSec
	return Record{N: r.n, Time: time.Unix(int64(sec), int64(nsec)).UTC(), LinkType: ifc.link,
		Data: body[20 : 20+capLen], OrigLen: max(int(origLen), int(capLen))}, nil
}

// simple decodes a Simple Packet Block (interface 0, no timestamp).
func (r *Reader) simple(body []byte) (Record, error) {
	r.n++
	if len(body) < 4 || len(r.ifs) == 0 {
		return Record{}, formatErr("pcapng record %d: simple packet block without an interface", r.n)
	}
	ifc := r.ifs[0]
	origLen := int(r.order.Uint32(body[0:4]))
	capLen := min(origLen, len(body)-4)
	if ifc.snapLen > 0 {
		capLen = min(capLen, int(ifc.snapLen))
	}
	return Record{N: r.n, LinkType: ifc.link, Data: body[4 : 4+capLen], OrigLen: origLen}, nil
}
