package gossip

import (
	"bytes"
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
	"time"
)

// encodeDelta is a version-1 delta: what directors before wire version 2
// sent for each changed observation (still accepted).
func encodeDelta(origin string, epoch uint64, o Observation) []byte {
	b := []byte{wireVersion, kindDelta}
	b = appendString(b, origin)
	b = binary.AppendUvarint(b, epoch)
	return appendRecord(b, o)
}

// encodeBatch packs obs into one batch without a size limit.
func encodeBatch(origin string, epoch, id uint64, obs ...Observation) []byte {
	w := newBatch(origin, epoch, id, maxPacketMsg)
	for _, o := range obs {
		w.add(o)
	}
	return w.bytes()
}

// encodeMessage re-encodes a decoded message.
func encodeMessage(m message) []byte {
	switch m.kind {
	case kindBye:
		return encodeBye(m.origin, m.epoch)
	case kindBatch:
		return encodeBatch(m.origin, m.epoch, m.id, m.obs...)
	case kindAck:
		return encodeAcks(m.origin, m.epoch, m.to, m.acks, maxPacketMsg)[0]
	}
	return encodeDelta(m.origin, m.epoch, m.obs[0])
}

func TestWireRoundTrip(t *testing.T) {
	o := Observation{Target: "tcp/10.0.1.1:80#abc", Up: true, Latency: 1500 * time.Microsecond, Err: "", Seq: 42}
	b := encodeDelta("d1", 7, o)
	m, err := decodeMsg(b)
	if err != nil || m.kind != kindDelta || m.origin != "d1" || m.epoch != 7 || len(m.obs) != 1 || m.obs[0] != o {
		t.Fatalf("delta round trip: %+v %v", m, err)
	}
	// The exact bytes of version 1: a change to the format must bump the
	// version.
	want := []byte{1, 1, 2, 'd', '1', 7, 19}
	want = append(want, "tcp/10.0.1.1:80#abc"...)
	want = append(want, 42, 1, 0xe0, 0xc6, 0x5b, 0)
	if !bytes.Equal(b, want) {
		t.Errorf("delta bytes\n got %v\nwant %v", b, want)
	}

	if m, err := decodeMsg(encodeBye("d1", 9)); err != nil || m.kind != kindBye || m.origin != "d1" || m.epoch != 9 {
		t.Fatalf("bye round trip: %+v %v", m, err)
	}

	// Version 2: a batch and an ack, exact bytes.
	o2 := Observation{Target: "t2", Err: "refused", Seq: 43}
	b = encodeBatch("d1", 7, 5, o, o2)
	want = []byte{2, 4, 2, 'd', '1', 7, 5, 2, 19}
	want = append(want, "tcp/10.0.1.1:80#abc"...)
	want = append(want, 42, 1, 0xe0, 0xc6, 0x5b, 0, 2, 't', '2', 43, 0, 0, 7)
	want = append(want, "refused"...)
	if !bytes.Equal(b, want) {
		t.Errorf("batch bytes\n got %v\nwant %v", b, want)
	}
	m, err = decodeMsg(b)
	if err != nil || m.kind != kindBatch || m.origin != "d1" || m.epoch != 7 || m.id != 5 || !reflect.DeepEqual(m.obs, []Observation{o, o2}) {
		t.Fatalf("batch round trip: %+v %v", m, err)
	}
	acks := encodeAcks("d2", 8, 7, []uint64{5, 300}, batchBytes)
	if len(acks) != 1 || !bytes.Equal(acks[0], []byte{2, 5, 2, 'd', '2', 8, 7, 2, 5, 0xac, 2}) {
		t.Errorf("ack bytes %v", acks)
	}
	m, err = decodeMsg(acks[0])
	if err != nil || m.kind != kindAck || m.origin != "d2" || m.epoch != 8 || m.to != 7 || !reflect.DeepEqual(m.acks, []uint64{5, 300}) {
		t.Fatalf("ack round trip: %+v %v", m, err)
	}

	states := []originState{
		{origin: "a", epoch: 1, obs: []Observation{o, {Target: "udp/[2001:db8::1]:53#x", Err: "refused", Seq: 1}}},
		{origin: "b", epoch: 1 << 62, obs: []Observation{}},
	}
	gotStates, err := decodeState(encodeState(states))
	if err != nil || !reflect.DeepEqual(gotStates, states) {
		t.Fatalf("state round trip: %+v %v", gotStates, err)
	}
}

// The decoder is strict: each kind in its one version, no empty batch or
// ack, no target twice in a batch, nothing over a limit, no trailing bytes.
func TestWireStrict(t *testing.T) {
	o := Observation{Target: "t", Seq: 1}
	batch := encodeBatch("d1", 1, 1, o)
	ack := encodeAcks("d1", 1, 1, []uint64{1}, batchBytes)[0]
	for name, b := range map[string][]byte{
		"empty":                {},
		"one byte":             {2},
		"version 3":            append([]byte{3}, batch[1:]...),
		"batch in version 1":   append([]byte{1}, batch[1:]...),
		"delta in version 2":   append([]byte{2}, encodeDelta("d1", 1, o)[1:]...),
		"bye in version 2":     append([]byte{2}, encodeBye("d1", 1)[1:]...),
		"ack in version 1":     append([]byte{1}, ack[1:]...),
		"unknown kind":         {2, 9, 0},
		"empty batch":          {2, 4, 2, 'd', '1', 1, 1, 0},
		"empty ack":            {2, 5, 2, 'd', '1', 1, 1, 0},
		"batch count too big":  {2, 4, 2, 'd', '1', 1, 1, 100, 1, 't', 1, 0, 0, 0},
		"ack count too big":    {2, 5, 2, 'd', '1', 1, 1, 3, 1},
		"target twice":         encodeBatch("d1", 1, 1, o, Observation{Target: "t", Seq: 2}),
		"trailing byte":        append(batch[:len(batch):len(batch)], 0),
		"truncated":            batch[:len(batch)-1],
		"empty origin":         encodeBatch("", 1, 1, o),
		"empty target":         encodeBatch("d1", 1, 1, Observation{}),
		"long origin":          encodeBatch(strings.Repeat("o", MaxOriginLen+1), 1, 1, o),
		"oversize":             append(encodeBatch("d1", 1, 1, o), make([]byte, maxPacketMsg)...),
		"overlong varint":      {2, 4, 2, 'd', '1', 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01},
		"latency out of range": encodeBatch("d1", 1, 1, Observation{Target: "t", Latency: -1}),
	} {
		if name == "latency out of range" {
			// appendRecord writes a negative latency as 0; forge 2^63.
			b = []byte{2, 4, 2, 'd', '1', 1, 1, 1, 1, 't', 1, 0}
			b = binary.AppendUvarint(b, 1<<63)
			b = append(b, 0)
		}
		if m, err := decodeMsg(b); err == nil {
			t.Errorf("%s: accepted %+v", name, m)
		}
	}
	if _, err := decodeMsg(batch); err != nil {
		t.Fatalf("the good batch: %v", err)
	}
}

// A batch stays within its byte budget and takes one record at least.
func TestBatchWriterLimit(t *testing.T) {
	w := newBatch("d1", 1<<60, 1<<40, batchBytes)
	n := 0
	for i := 0; ; i++ {
		if !w.add(Observation{Target: strings.Repeat("x", 40) + string(rune('a'+i%26)) + strings.Repeat("y", i/26), Seq: uint64(i + 1), Err: "connection refused"}) {
			break
		}
		n++
	}
	if b := w.bytes(); len(b) > batchBytes || n < 10 || w.n != n {
		t.Fatalf("%d records in %d bytes (limit %d)", n, len(b), batchBytes)
	}
	big := newBatch("d1", 1, 1, 10)
	if !big.add(Observation{Target: strings.Repeat("t", MaxTargetLen), Err: strings.Repeat("e", MaxErrLen)}) || big.add(Observation{Target: "u"}) {
		t.Fatal("the first record must always be taken, and only it when over the limit")
	}
	if m, err := decodeMsg(big.bytes()); err != nil || len(m.obs) != 1 {
		t.Fatalf("%+v %v", m, err)
	}
	// Acks split over as many messages as they need.
	ids := make([]uint64, 1000)
	for i := range ids {
		ids[i] = 1<<63 + uint64(i)
	}
	var got []uint64
	for _, a := range encodeAcks("d1", 1, 2, ids, batchBytes) {
		if len(a) > batchBytes {
			t.Fatalf("ack of %d bytes", len(a))
		}
		m, err := decodeMsg(a)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, m.acks...)
	}
	if !reflect.DeepEqual(got, ids) {
		t.Fatal("acks lost or reordered")
	}
}

// FuzzDecode feeds arbitrary bytes to both decoders: they must never panic,
// and whatever they accept must re-encode to bytes that decode the same.
func FuzzDecode(f *testing.F) {
	o := Observation{Target: "tcp/10.0.1.1:80#abc", Up: true, Latency: time.Millisecond, Err: "x", Seq: 3}
	f.Add(encodeDelta("d1", 1, o))
	f.Add(encodeState([]originState{{origin: "a", epoch: 2, obs: []Observation{o, o}}}))
	f.Add([]byte{1, 2, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{2, 1})
	f.Add(encodeBye("d1", 9))
	f.Add(encodeBatch("d1", 1, 2, o, Observation{Target: "b", Seq: 4}))
	f.Add(encodeAcks("d1", 1, 2, []uint64{3, 4}, batchBytes)[0])
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := decodeMsg(b); err == nil {
			m2, err := decodeMsg(encodeMessage(m))
			if err != nil || !reflect.DeepEqual(m2, m) {
				t.Fatalf("re-decode of accepted message: %+v, %+v, %v", m, m2, err)
			}
		}
		if states, err := decodeState(b); err == nil {
			re := encodeState(states)
			s2, err := decodeState(re)
			if err != nil || !reflect.DeepEqual(s2, states) {
				t.Fatalf("re-decode of accepted state: %v", err)
			}
		}
	})
}
