// Package e2e holds the end-to-end tests: the built mxpolicyd binary behind a
// real, throwaway Postfix instance (internal/postfixtest), driven by swaks,
// asserting the SMTP replies a sending server would see.
//
// The tests need root and the Debian packages postfix and swaks (and, for the
// ClamAV sidecar test, clamav-daemon and clamav-milter); scripts/test.sh
// installs them. A missing component fails the tests. For a quick local run
// only, MXPOLICYD_E2E=0 skips them; it is refused when CI is set.
package e2e
