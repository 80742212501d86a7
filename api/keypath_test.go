package api

import (
	"strings"
	"testing"
)

func TestUnknownNestedFieldNamesItsPath(t *testing.T) {
	for body, want := range map[string]string{
		`{"sync":{"bogus":1}}`:              "sync.bogus",
		`{"ipvs_timeouts":{"tcp":1,"x":2}}`: "ipvs_timeouts.x",
		`{"zzz":true}`:                      "zzz",
	} {
		if got := keyPath([]byte(body), want[strings.LastIndex(want, ".")+1:]); got != want {
			t.Errorf("%s: %q, want %q", body, got, want)
		}
	}
	if got := keyPath([]byte(`{"name":"w","reals":[{"address":"10.0.0.1"},{"bogus":1}]}`), "bogus"); got != "reals[1].bogus" {
		t.Errorf("reals: %q", got)
	}
}
