package policy

import (
	"sync"
	"sync/atomic"
	"time"
)

// orphans keeps the messages of connections the server closed between
// two of their requests to make room for others (evictIdle: at
// max_connections, or out of descriptors). Postfix sends the rest of such
// a message on a new connection, with the same instance: a message's
// requests share one connection "unless the policy daemon terminates the
// connection" (SMTPD_POLICY_README, "Policy client/server
// configuration"). The new connection takes the message back, so what
// its checks noted at RCPT (greylisting's deferral held for DATA, the
// headers already sent, the rate limits' counts) still holds at DATA: one
// verdict per message.
type orphans struct {
	n  atomic.Int32 // len(m): a request need not lock while it is 0
	mu sync.Mutex
	m  map[string]orphan
}

type orphan struct {
	msg *Message
	at  time.Time // when its connection was closed
}

// maxOrphans bounds the messages kept; beyond it the oldest goes.
const maxOrphans = 1024

// put keeps msg, which belonged to a connection closed at now.
func (o *orphans) put(msg *Message, now time.Time) {
	if msg == nil || msg.Instance == "" {
		return
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = map[string]orphan{}
	}
	if _, ok := o.m[msg.Instance]; !ok && len(o.m) >= maxOrphans {
		oldest := ""
		for k, v := range o.m {
			if oldest == "" || v.at.Before(o.m[oldest].at) {
				oldest = k
			}
		}
		delete(o.m, oldest)
	}
	o.m[msg.Instance] = orphan{msg, now}
	o.n.Store(int32(len(o.m)))
}

// take returns the message of instance if one is kept, closed no longer
// than maxAge before now, and forgets it.
func (o *orphans) take(instance string, now time.Time, maxAge time.Duration) *Message {
	if o.n.Load() == 0 || instance == "" {
		return nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	v, ok := o.m[instance]
	for k, v := range o.m {
		if now.Sub(v.at) > maxAge {
			delete(o.m, k)
		}
	}
	delete(o.m, instance)
	o.n.Store(int32(len(o.m)))
	if !ok || now.Sub(v.at) > maxAge {
		return nil
	}
	return v.msg
}
