package gossip

import (
	"bytes"
	"reflect"
	"testing"
	"time"
)

func TestWireRoundTrip(t *testing.T) {
	o := Observation{Target: "tcp/10.0.1.1:80#abc", Up: true, Latency: 1500 * time.Microsecond, Err: "", Seq: 42}
	b := encodeDelta("d1", 7, o)
	origin, epoch, got, err := decodeDelta(b)
	if err != nil || origin != "d1" || epoch != 7 || got != o {
		t.Fatalf("delta round trip: %q %d %+v %v", origin, epoch, got, err)
	}
	// The exact bytes of version 1: a change to the format must bump the
	// version.
	want := []byte{1, 1, 2, 'd', '1', 7, 19}
	want = append(want, "tcp/10.0.1.1:80#abc"...)
	want = append(want, 42, 1, 0xe0, 0xc6, 0x5b, 0)
	if !bytes.Equal(b, want) {
		t.Errorf("delta bytes\n got %v\nwant %v", b, want)
	}

	if origin, epoch, _, bye, err := decodeMsg(encodeBye("d1", 9)); err != nil || !bye || origin != "d1" || epoch != 9 {
		t.Fatalf("bye round trip: %q %d %v %v", origin, epoch, bye, err)
	}
	if _, _, _, err := decodeDelta(encodeBye("d1", 9)); err == nil {
		t.Fatal("decodeDelta accepted a bye")
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

// FuzzDecode feeds arbitrary bytes to both decoders: they must never panic,
// and whatever they accept must re-encode to the same bytes.
func FuzzDecode(f *testing.F) {
	o := Observation{Target: "tcp/10.0.1.1:80#abc", Up: true, Latency: time.Millisecond, Err: "x", Seq: 3}
	f.Add(encodeDelta("d1", 1, o))
	f.Add(encodeState([]originState{{origin: "a", epoch: 2, obs: []Observation{o, o}}}))
	f.Add([]byte{1, 2, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Add([]byte{2, 1})
	f.Add(encodeBye("d1", 9))
	f.Fuzz(func(t *testing.T, b []byte) {
		if origin, epoch, o, bye, err := decodeMsg(b); err == nil {
			re := encodeDelta(origin, epoch, o)
			if bye {
				re = encodeBye(origin, epoch)
			}
			if o2, e2, o3, bye2, err := decodeMsg(re); err != nil || o2 != origin || e2 != epoch || o3 != o || bye2 != bye {
				t.Fatalf("re-decode of accepted message: %q %d %+v %v %v", o2, e2, o3, bye2, err)
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
