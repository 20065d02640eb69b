// Package contrib holds no code: it is the deployment files (Postfix,
// systemd, cron, ClamAV, compose, an example config), and its tests check
// every one of them with the real tool that reads it, so none can rot.
package contrib
