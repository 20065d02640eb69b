package policy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Limits bound what one request may cost. Postfix itself enforces no length
// limit on what it sends (attr_scan_plain.c has the check #if 0'd out), but
// its SMTP line_length_limit (2048) keeps real values small.
type Limits struct {
	MaxLine    int `yaml:"max_line_bytes"`    // bytes in one name=value line, without the newline
	MaxAttrs   int `yaml:"max_attributes"`    // attribute lines in one request
	MaxRequest int `yaml:"max_request_bytes"` // bytes in one request
}

// DefaultLimits are generous for Postfix (a real request is under 2 KiB)
// and small enough that 1000 connections cannot exhaust memory.
var DefaultLimits = Limits{MaxLine: 8192, MaxAttrs: 128, MaxRequest: 64 << 10}

// Errors returned by ReadRequest. Every one of them means "log a warning and
// close without a reply", which is what SMTPD_POLICY_README asks of a policy
// server "in case of trouble".
var (
	ErrLineTooLong    = errors.New("policy: line too long")
	ErrTooManyAttrs   = errors.New("policy: too many attributes")
	ErrRequestTooBig  = errors.New("policy: request too large")
	ErrMalformed      = errors.New("policy: malformed attribute line")
	ErrNotAccessQuery = errors.New("policy: not an smtpd_access_policy request")
	ErrTruncated      = errors.New("policy: connection closed inside a request")
)

// ReadRequest reads one request: name=value lines ended by an empty line.
// io.EOF before the first byte is a clean close between requests. r's
// buffer must be larger than lim.MaxLine so that a line over the cap is seen
// as bufio.ErrBufferFull instead of being buffered without bound.
func ReadRequest(r *bufio.Reader, lim Limits) (*Request, error) {
	var bufArr [1024]byte // a whole Postfix request usually fits: no allocation until the end
	var endsArr [64]int
	buf, ends := bufArr[:0], endsArr[:0]
	size, attrs := 0, 0
	for {
		line, err := readLine(r, lim.MaxLine)
		if err != nil {
			if errors.Is(err, io.EOF) && size > 0 {
				return nil, ErrTruncated
			}
			return nil, err
		}
		size += len(line) + 1
		if size > lim.MaxRequest {
			return nil, ErrRequestTooBig
		}
		if len(line) == 0 {
			if size == 1 {
				// A stray empty line between requests: nothing to answer.
				size = 0
				continue
			}
			return newRequest(string(buf), ends)
		}
		if attrs++; attrs > lim.MaxAttrs {
			return nil, ErrTooManyAttrs
		}
		if buf, ends, err = addAttr(buf, ends, line); err != nil {
			return nil, err
		}
	}
}

// readLine returns one line without its "\n" and one optional "\r" (Postfix
// sends none; hand-written clients do). The slice is valid until the next read.
func readLine(r *bufio.Reader, max int) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) || len(line) > max+2 {
		return nil, ErrLineTooLong
	}
	if err != nil {
		if len(line) > 0 && errors.Is(err, io.EOF) {
			return nil, ErrTruncated
		}
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	if len(line) > max {
		return nil, ErrLineTooLong
	}
	return line, nil
}

// addAttr appends a line's name and value to buf and where each ends to
// ends. The line is valid only until the next read
// (bufio.Reader.ReadSlice), so it is copied; when the request ends, buf
// becomes one string and the Request's fields are substrings of it
// (newRequest): one allocation for all the values of a request instead
// of one per value.
//
// The line is split at the first "=" only: SRS and BATV senders and xtext
// certificate subjects carry "=" in the value. The grammar in
// attr_scan_plain.c allows no NUL in names or values and no empty name.
func addAttr(buf []byte, ends []int, line []byte) ([]byte, []int, error) {
	name, value, ok := bytes.Cut(line, []byte{'='})
	if !ok || len(name) == 0 || bytes.IndexByte(line, 0) >= 0 {
		return buf, ends, ErrMalformed
	}
	buf = append(buf, name...)
	ends = append(ends, len(buf))
	buf = append(buf, value...)
	return buf, append(ends, len(buf)), nil
}

// newRequest sets the attributes addAttr collected in s, in the order
// they came, so a repeated one keeps its last value.
func newRequest(s string, ends []int) (*Request, error) {
	req := &Request{}
	start := 0
	for i := 0; i < len(ends); i += 2 {
		name, value := s[start:ends[i]], s[ends[i]:ends[i+1]]
		start = ends[i+1]
		if err := req.set(name, value); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, name, err)
		}
	}
	if err := checkRequest(req); err != nil {
		return nil, err
	}
	return req, nil
}

func checkRequest(req *Request) error {
	if req.Request != "smtpd_access_policy" {
		return ErrNotAccessQuery
	}
	return nil
}
