package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"

	"github.com/raftlb/raftlb/api/wire"
)

// printJSON writes v as indented JSON.
func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// show prints v as JSON with -o json, else calls table.
func (e *env) show(v any, table func(w io.Writer)) error {
	if e.json {
		return printJSON(e.out, v)
	}
	table(e.out)
	return nil
}

// wrote confirms a write: the response as JSON with -o json, else one line
// ending with the index it committed at.
func (e *env) wrote(resp wire.WriteResponse, format string, args ...any) error {
	if e.json {
		return printJSON(e.out, resp)
	}
	_, err := fmt.Fprintf(e.out, "%s (index %d)\n", fmt.Sprintf(format, args...), resp.Index)
	return err
}

// alignRows pads every cell but the last of each row to its column's width,
// gap spaces between columns, and returns the lines without trailing blanks.
func alignRows(rows [][]string, gap int) []string {
	var widths []int
	for _, r := range rows {
		for i, c := range r {
			if i >= len(widths) {
				widths = append(widths, 0)
			}
			widths[i] = max(widths[i], utf8.RuneCountInString(c))
		}
	}
	out := make([]string, len(rows))
	for n, r := range rows {
		var b strings.Builder
		for i, c := range r {
			b.WriteString(c)
			if i < len(r)-1 {
				b.WriteString(strings.Repeat(" ", widths[i]-utf8.RuneCountInString(c)+gap))
			}
		}
		out[n] = strings.TrimRight(b.String(), " ")
	}
	return out
}

// writeTable writes rows aligned, two spaces between columns.
func writeTable(w io.Writer, rows [][]string) {
	for _, l := range alignRows(rows, 2) {
		fmt.Fprintln(w, l)
	}
}

// writeFields writes "Key:  value" lines with the values aligned.
func writeFields(w io.Writer, fields [][2]string) {
	width := 0
	for _, f := range fields {
		width = max(width, utf8.RuneCountInString(f[0]))
	}
	for _, f := range fields {
		fmt.Fprintf(w, "%s:%s %s\n", f[0], strings.Repeat(" ", width-utf8.RuneCountInString(f[0])), f[1])
	}
}

// orNone returns s, or "-" when it is empty.
func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
