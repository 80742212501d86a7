// Package benchrec writes benchmark tables into docs/benchmarks.md between
// named markers, so that every recorded number comes from a run, with the
// machine it ran on.
package benchrec

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Machine describes this machine: CPU model, cores, kernel, Go version.
func Machine() string {
	cpu := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "model name") {
				_, v, _ := strings.Cut(l, ":")
				cpu = strings.TrimSpace(v)
				break
			}
		}
	}
	kernel := "?"
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		kernel = unix.ByteSliceToString(u.Release[:])
	}
	return fmt.Sprintf("%s, %d cores (GOMAXPROCS %d), Linux %s, %s", cpu, runtime.NumCPU(), runtime.GOMAXPROCS(0), kernel, runtime.Version())
}

// Record writes table into the file at path between the markers
// <!-- bench:NAME:begin --> and <!-- bench:NAME:end -->. If the file has no
// such section, one headed title is appended.
func Record(path, name, title, table string) error {
	begin, end := "<!-- bench:"+name+":begin -->", "<!-- bench:"+name+":end -->"
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	s := string(b)
	i, j := strings.Index(s, begin), strings.Index(s, end)
	if i < 0 || j < i {
		s = strings.TrimRight(s, "\n") + "\n\n## " + title + "\n\n" + begin + "\n" + end + "\n"
		i, j = strings.Index(s, begin), strings.Index(s, end)
	}
	s = s[:i+len(begin)] + "\n" + table + s[j:]
	return os.WriteFile(path, []byte(s), 0o644)
}
