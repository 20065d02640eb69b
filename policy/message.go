package policy

import "sync"

// Message is the state Postfix's "instance" attribute ties together: every
// request of one message on one connection carries the same instance, and
// "once Postfix sends a query with a different instance attribute over that
// same policy connection, the previous message delivery is either completed
// or aborted" (SMTPD_POLICY_README). So per-message work (SPF, headers) is
// done once and kept here, and the server starts a new Message when the
// instance changes. Safe for concurrent use: a check that ran out of time
// may still be writing when the next one starts.
type Message struct {
	Instance string

	mu      sync.Mutex
	values  map[string]any
	headers []string // queued for PREPEND, in order
	sent    map[string]bool
}

// NewMessage starts the state of one message.
func NewMessage(instance string) *Message {
	return &Message{Instance: instance}
}

// Value returns what a check stored for this message under key.
func (m *Message) Value(key string) (any, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.values[key]
	return v, ok
}

// SetValue stores per-message state under key (by convention the check name).
func (m *Message) SetValue(key string, v any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.values == nil {
		m.values = map[string]any{}
	}
	m.values[key] = v
}

// AddHeader queues a header to prepend to this message, once: a header
// already queued or sent is ignored, so every recipient may ask for it.
// Postfix takes one action per reply, so headers go out one per recipient
// reply that would otherwise be DUNNO, in the order they were added.
func (m *Message) AddHeader(h string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sent[h] {
		return
	}
	for _, q := range m.headers {
		if q == h {
			return
		}
	}
	m.headers = append(m.headers, h)
}

// nextHeader takes the first queued header, if any, and remembers it as sent.
func (m *Message) nextHeader() (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.headers) == 0 {
		return "", false
	}
	h := m.headers[0]
	m.headers = m.headers[1:]
	if m.sent == nil {
		m.sent = map[string]bool{}
	}
	m.sent[h] = true
	return h, true
}
