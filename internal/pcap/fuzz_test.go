package pcap

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// FuzzReader: no input makes the reader panic or loop, every error but
// the end is ErrFormat, and no record is longer than MaxSnapLen.
func FuzzReader(f *testing.F) {
	files, _ := filepath.Glob("../../vrrp/testdata/*.pcap")
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add(ngFile())
	f.Add([]byte{0xa1, 0xb2, 0x3c, 0x4d, 0, 2, 0, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := NewReader(bytes.NewReader(b))
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("NewReader: %v is not ErrFormat", err)
			}
			return
		}
		for n := 0; ; n++ {
			rec, err := r.Next()
			if err == io.EOF {
				return
			}
			if err != nil {
				if !errors.Is(err, ErrFormat) {
					t.Fatalf("Next: %v is not ErrFormat", err)
				}
				return
			}
			if len(rec.Data) > MaxSnapLen || rec.OrigLen < len(rec.Data) || n > len(b)/12 {
				t.Fatalf("record %d: %d bytes, orig %d (file %d bytes)", n, len(rec.Data), rec.OrigLen, len(b))
			}
			Network(rec.LinkType, rec.Data)
		}
	})
}
