package decisionlog

import (
	"encoding/binary"
	"strings"
	"sync"
	"time"

	"github.com/mxpolicyd/mxpolicyd/internal/db"
)

// The PostgreSQL decision log goes in as COPY's binary format, encoded
// here for the one shape of row it carries instead of value by value
// through pgx's type map, which boxed each of a row's 19 values and
// looked up its encode plan by reflection: about a tenth of the daemon's
// CPU on the cached path. The format is the one documented in
// PostgreSQL's manual, COPY, "Binary Format"
// (https://www.postgresql.org/docs/current/sql-copy.html): a header,
// then per row a 16-bit field count and per field a 32-bit length (-1:
// NULL) and the type's binary representation (its typsend in
// src/backend/utils/adt), then a trailer of -1.

// copySQL is the statement the encoded rows are sent with.
var copySQL = "COPY decisions (" + strings.Join(columns, ", ") + ") FROM STDIN (FORMAT binary)"

// copyHeader is the signature, the flags field (no OIDs) and the length
// of the header extension area (none).
const copyHeader = "PGCOPY\n\377\r\n\000" + "\000\000\000\000" + "\000\000\000\000"

// pgEpoch is where timestamptz's binary form counts from: microseconds
// since 2000-01-01 00:00 UTC (src/include/datatype/timestamp.h,
// POSTGRES_EPOCH_JDATE).
var pgEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).Unix()

// The address families of inet's binary form (src/include/utils/inet.h:
// PGSQL_AF_INET is AF_INET, PGSQL_AF_INET6 the next number).
const (
	pgAFInet  = 2
	pgAFInet6 = 3
)

// copyBufs keeps the writer's encode buffer between batches: a batch of
// 500 rows is about 150 KB, which would otherwise be garbage many times
// a second on a busy MX.
var copyBufs = sync.Pool{New: func() any { return new([]byte) }}

// encodeCopy appends rows in COPY's binary format to buf.
func encodeCopy(buf []byte, rows []Row) []byte {
	buf = append(buf, copyHeader...)
	for i := range rows {
		buf = appendCopyRow(buf, &rows[i])
	}
	return binary.BigEndian.AppendUint16(buf, 0xffff) // the trailer: -1
}

func appendCopyRow(b []byte, r *Row) []byte {
	b = binary.BigEndian.AppendUint16(b, uint16(len(columns)))
	b = appendTimestamptz(b, r.Time)
	b = appendText(b, r.Host)
	b = appendInet(b, r)
	for _, s := range [...]string{r.ClientName, r.Helo, r.Sender, r.Recipient,
		r.Instance, r.QueueID, r.Check, r.Action, r.WouldAction, r.Verb, r.Reason} {
		b = appendText(b, s)
	}
	b = appendInt4(b, seconds(r))
	b = appendInt4(b, micros(r))
	b = appendBool(b, r.Observe)
	b = appendText(b, r.Whitelist)
	return appendText(b, r.Errors)
}

func appendTimestamptz(b []byte, t time.Time) []byte {
	us := (t.Unix()-pgEpoch)*1_000_000 + int64(t.Nanosecond())/1000
	b = binary.BigEndian.AppendUint32(b, 8)
	return binary.BigEndian.AppendUint64(b, uint64(us))
}

// appendInet is the client column: NULL when Postfix sent no address,
// else a host address (is_cidr 0, all bits). A zone, which inet cannot
// hold, is left out.
func appendInet(b []byte, r *Row) []byte {
	a := r.Client
	if !a.IsValid() {
		return binary.BigEndian.AppendUint32(b, 0xffffffff) // NULL
	}
	if a.Is4() {
		ip := a.As4()
		b = binary.BigEndian.AppendUint32(b, 4+4)
		b = append(b, pgAFInet, 32, 0, 4)
		return append(b, ip[:]...)
	}
	ip := a.As16()
	b = binary.BigEndian.AppendUint32(b, 4+16)
	b = append(b, pgAFInet6, 128, 0, 16)
	return append(b, ip[:]...)
}

// appendText is a text value. PostgreSQL refuses text that is not valid
// UTF-8 or holds a NUL (the server's encoding check, pg_verify_mbstr), and
// one such value would fail the whole COPY: every row of the batch would
// be lost for one request's stray byte (Postfix passes a client's 8-bit
// HELO or address as it came). So such a value is stored with each bad
// byte and each NUL as U+FFFD, the replacement character.
func appendText(b []byte, s string) []byte {
	s = db.ToStorable(s)
	b = binary.BigEndian.AppendUint32(b, uint32(len(s)))
	return append(b, s...)
}

func appendInt4(b []byte, v int32) []byte {
	b = binary.BigEndian.AppendUint32(b, 4)
	return binary.BigEndian.AppendUint32(b, uint32(v))
}

func appendBool(b []byte, v bool) []byte {
	b = binary.BigEndian.AppendUint32(b, 1)
	if v {
		return append(b, 1)
	}
	return append(b, 0)
}
