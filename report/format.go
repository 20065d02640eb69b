package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
)

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// writeText prints each table under its title, columns aligned.
func writeText(w io.Writer, tables []*table) error {
	for i, t := range tables {
		if i > 0 {
			fmt.Fprintln(w)
		}
		fmt.Fprintf(w, "%s\n", t.title)
		if len(t.rows) == 0 {
			fmt.Fprintln(w, "(no rows)")
			continue
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		writeTabbed(tw, t.cols)
		for _, r := range t.rows {
			cells := make([]string, len(r))
			for j, v := range r {
				cells[j] = cell(v, true)
			}
			writeTabbed(tw, cells)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// writeTabbed writes one line. Control characters in client-supplied
// text (HELO names, senders) become '?', so a tab or newline cannot break
// the layout or forge a line.
func writeTabbed(w io.Writer, cells []string) {
	for i, c := range cells {
		if i > 0 {
			io.WriteString(w, "\t")
		}
		io.WriteString(w, strings.Map(printable, c))
	}
	io.WriteString(w, "\n")
}

func printable(r rune) rune {
	if unicode.IsControl(r) {
		return '?'
	}
	return r
}

// writeJSON prints one table as an array of objects, several as an
// object with a member per table. Keys keep the column order.
func writeJSON(w io.Writer, tables []*table) error {
	var buf bytes.Buffer
	if len(tables) == 1 {
		jsonRows(&buf, tables[0])
	} else {
		buf.WriteString("{")
		for i, t := range tables {
			if i > 0 {
				buf.WriteString(",")
			}
			fmt.Fprintf(&buf, "\n%s: ", jsonString(t.key))
			jsonRows(&buf, t)
		}
		buf.WriteString("\n}")
	}
	buf.WriteString("\n")
	_, err := w.Write(buf.Bytes())
	return err
}

func jsonRows(buf *bytes.Buffer, t *table) {
	buf.WriteString("[")
	for i, r := range t.rows {
		if i > 0 {
			buf.WriteString(",")
		}
		buf.WriteString("\n  {")
		for j, v := range r {
			if j > 0 {
				buf.WriteString(", ")
			}
			fmt.Fprintf(buf, "%s: %s", jsonString(t.cols[j]), jsonValue(v))
		}
		buf.WriteString("}")
	}
	if len(t.rows) > 0 {
		buf.WriteString("\n")
	}
	buf.WriteString("]")
}

func jsonValue(v any) string {
	switch v := v.(type) {
	case int64:
		return itoa(v)
	case seconds:
		return itoa(int64(v))
	case time.Time:
		return jsonString(v.Format(time.RFC3339))
	case string:
		return jsonString(v)
	}
	return "null"
}

func jsonString(s string) string {
	b, _ := json.Marshal(s) // a string always marshals
	return string(b)
}

// writeCSV prints each table as a header line and rows (RFC 4180); several
// tables are separated by an empty line.
func writeCSV(w io.Writer, tables []*table) error {
	cw := csv.NewWriter(w)
	for i, t := range tables {
		if i > 0 {
			cw.Flush()
			if _, err := io.WriteString(w, "\n"); err != nil {
				return err
			}
		}
		if err := cw.Write(t.cols); err != nil {
			return err
		}
		for _, r := range t.rows {
			cells := make([]string, len(r))
			for j, v := range r {
				cells[j] = cell(v, false)
			}
			if err := cw.Write(cells); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}
