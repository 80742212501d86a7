package gossip

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
)

// Wire format, version 1. Every message starts with a version byte and a
// kind byte; all integers are unsigned varints (encoding/binary.Uvarint) and
// strings are a uvarint length followed by that many bytes.
//
//	delta  (kind 1, one changed observation, sent as a memberlist broadcast):
//	    version=1 kind=1 origin:string epoch:uvarint record
//	state  (kind 2, full state, exchanged by memberlist push/pull over TCP):
//	    version=1 kind=2 n:uvarint n × { origin:string epoch:uvarint m:uvarint m × record }
//	bye    (kind 3, sent by Leave so peers can tell "left" from "dead"):
//	    version=1 kind=3 origin:string epoch:uvarint
//	record:
//	    target:string seq:uvarint flags:byte latency_ns:uvarint err:string
//	    flags bit 0 = up; other bits are reserved, ignored on receipt
//
// epoch identifies one incarnation of an origin (its start time in Unix
// nanoseconds); (epoch, seq) orders an origin's observations. A message with
// another version, an unknown kind, trailing bytes, a string over its limit
// or a total size over its limit is rejected whole.
const (
	wireVersion byte = 1
	kindDelta   byte = 1
	kindState   byte = 2
	kindBye     byte = 3

	flagUp byte = 1 << 0

	// MaxOriginLen, MaxTargetLen and MaxErrLen bound the strings on the
	// wire. Publish truncates Err to MaxErrLen and rejects longer names.
	MaxOriginLen = 128
	MaxTargetLen = 512
	MaxErrLen    = 256

	// maxDeltaSize bounds one delta message (it must fit a UDP packet with
	// memberlist's framing and encryption overhead).
	maxDeltaSize = 1 + 1 + 10 + MaxOriginLen + 10 + (10 + MaxTargetLen + 10 + 1 + 10 + 10 + MaxErrLen) + 4
	// maxStateSize bounds a full-state message; memberlist itself refuses
	// push/pull state over 20 MiB.
	maxStateSize = 16 << 20
	// minRecordSize is the smallest encoded record, used to bound counts
	// before allocating.
	minRecordSize = 5
)

var errBadMessage = errors.New("gossip: bad message")

// originState is one origin's observations as carried in a full-state
// message.
type originState struct {
	origin string
	epoch  uint64
	obs    []Observation
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendRecord(b []byte, o Observation) []byte {
	b = appendString(b, o.Target)
	b = binary.AppendUvarint(b, o.Seq)
	var f byte
	if o.Up {
		f |= flagUp
	}
	b = append(b, f)
	lat := o.Latency
	if lat < 0 {
		lat = 0
	}
	b = binary.AppendUvarint(b, uint64(lat))
	return appendString(b, o.Err)
}

func encodeDelta(origin string, epoch uint64, o Observation) []byte {
	b := make([]byte, 0, 24+len(origin)+len(o.Target)+len(o.Err))
	b = append(b, wireVersion, kindDelta)
	b = appendString(b, origin)
	b = binary.AppendUvarint(b, epoch)
	return appendRecord(b, o)
}

func encodeState(states []originState) []byte {
	n := 16
	for _, s := range states {
		n += 24 + len(s.origin)
		for _, o := range s.obs {
			n += 24 + len(o.Target) + len(o.Err)
		}
	}
	b := make([]byte, 0, n)
	b = append(b, wireVersion, kindState)
	b = binary.AppendUvarint(b, uint64(len(states)))
	for _, s := range states {
		b = appendString(b, s.origin)
		b = binary.AppendUvarint(b, s.epoch)
		b = binary.AppendUvarint(b, uint64(len(s.obs)))
		for _, o := range s.obs {
			b = appendRecord(b, o)
		}
	}
	return b
}

// decoder reads the wire format; the first error sticks.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{errBadMessage}, args...)...)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("truncated or overlong %s", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) byte1(what string) byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) < 1 {
		d.fail("truncated %s", what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *decoder) str(what string, limit int) string {
	n := d.uvarint(what + " length")
	if d.err != nil {
		return ""
	}
	if n > uint64(limit) {
		d.fail("%s length %d over limit %d", what, n, limit)
		return ""
	}
	if n > uint64(len(d.b)) {
		d.fail("truncated %s", what)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

func (d *decoder) record() Observation {
	var o Observation
	o.Target = d.str("target", MaxTargetLen)
	o.Seq = d.uvarint("seq")
	f := d.byte1("flags")
	o.Up = f&flagUp != 0
	lat := d.uvarint("latency")
	if lat > uint64(1<<63-1) {
		d.fail("latency out of range")
	}
	o.Latency = time.Duration(lat)
	o.Err = d.str("err", MaxErrLen)
	if d.err == nil && o.Target == "" {
		d.fail("empty target")
	}
	return o
}

func (d *decoder) header(kind byte, max int) {
	if len(d.b) > max {
		d.fail("message of %d bytes over limit %d", len(d.b), max)
		return
	}
	if v := d.byte1("version"); d.err == nil && v != wireVersion {
		d.fail("unsupported version %d", v)
		return
	}
	if k := d.byte1("kind"); d.err == nil && k != kind {
		d.fail("unexpected kind %d (want %d)", k, kind)
	}
}

func (d *decoder) origin() (string, uint64) {
	origin := d.str("origin", MaxOriginLen)
	epoch := d.uvarint("epoch")
	if d.err == nil && origin == "" {
		d.fail("empty origin")
	}
	return origin, epoch
}

func (d *decoder) end() {
	if d.err == nil && len(d.b) != 0 {
		d.fail("%d trailing bytes", len(d.b))
	}
}

func encodeBye(origin string, epoch uint64) []byte {
	b := append(make([]byte, 0, 16+len(origin)), wireVersion, kindBye)
	b = appendString(b, origin)
	return binary.AppendUvarint(b, epoch)
}

// decodeMsg decodes a broadcast: a delta (bye false) or a bye (bye true,
// o zero). It never panics.
func decodeMsg(b []byte) (origin string, epoch uint64, o Observation, bye bool, err error) {
	d := decoder{b: b}
	if len(b) >= 2 && b[1] == kindBye {
		d.header(kindBye, maxDeltaSize)
		origin, epoch = d.origin()
		bye = true
	} else {
		d.header(kindDelta, maxDeltaSize)
		origin, epoch = d.origin()
		o = d.record()
	}
	d.end()
	if d.err != nil {
		return "", 0, Observation{}, false, d.err
	}
	return origin, epoch, o, bye, nil
}

// decodeDelta decodes a kind-1 message. It never panics.
func decodeDelta(b []byte) (origin string, epoch uint64, o Observation, err error) {
	origin, epoch, o, bye, err := decodeMsg(b)
	if err == nil && bye {
		return "", 0, Observation{}, fmt.Errorf("%w: unexpected kind %d (want %d)", errBadMessage, kindBye, kindDelta)
	}
	return origin, epoch, o, err
}

// decodeState decodes a kind-2 message. It never panics and allocates in
// proportion to the input size.
func decodeState(b []byte) ([]originState, error) {
	d := decoder{b: b}
	d.header(kindState, maxStateSize)
	n := d.uvarint("origin count")
	if d.err == nil && n > uint64(len(d.b)/3) {
		d.fail("origin count %d exceeds message", n)
	}
	if d.err != nil {
		return nil, d.err
	}
	states := make([]originState, 0, n)
	for range n {
		var s originState
		s.origin, s.epoch = d.origin()
		m := d.uvarint("record count")
		if d.err == nil && m > uint64(len(d.b)/minRecordSize) {
			d.fail("record count %d exceeds message", m)
		}
		if d.err != nil {
			return nil, d.err
		}
		s.obs = make([]Observation, 0, m)
		for range m {
			o := d.record()
			if d.err != nil {
				return nil, d.err
			}
			s.obs = append(s.obs, o)
		}
		states = append(states, s)
	}
	d.end()
	if d.err != nil {
		return nil, d.err
	}
	return states, nil
}
