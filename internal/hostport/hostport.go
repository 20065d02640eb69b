// Package hostport checks the host:port values of the config (listen,
// metrics.listen, dns.server) when it loads, so config check and a reload
// refuse what serve would fail to bind or dial only later.
package hostport

import (
	"errors"
	"net"
	"strconv"
)

// Check reports why s is not host:port with a numeric port from 1 to
// 65535 (RFC 793's 16-bit port; 0 asks the system for any port, which no
// client could be told). The host may be empty ("any address") only when
// anyHost is true: a listener may bind it, a client cannot dial it.
func Check(s string, anyHost bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return errors.New("must be host:port")
	}
	if host == "" && !anyHost {
		return errors.New("must name a host")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return errors.New("port must be a number from 1 to 65535")
	}
	return nil
}
