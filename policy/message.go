package policy

import (
	"slices"
	"sync"
)

// Message is the state Postfix's "instance" attribute ties together: every
// request of one message on one connection carries the same instance, and
// "once Postfix sends a query with a different instance attribute over that
// same policy connection, the previous message delivery is either completed
// or aborted" (SMTPD_POLICY_README). So per-message work (SPF, headers) is
// done once and kept here, and the server starts a new Message when the
// instance changes.
//
// A check never writes to the message directly: the engine hands it a
// staged view (see stage) whose writes reach the message only if the check
// returned before its deadline. A run the engine abandoned may keep writing
// to its view, and nothing it writes is seen by the reply or by later
// recipients. Safe for concurrent use.
type Message struct {
	Instance string

	mu     sync.Mutex
	values []keyed  // by *MessageKey[T], each holding a T; a few per message
	inline [4]keyed // values' first array: no allocation for the usual few

	// headers are the message's headers for PREPEND, in the order they
	// were added: those before sent have gone out, the rest are queued.
	// A message has a few, so a search beats a set.
	headers []string
	sent    int

	// base is the message a staged view reads through to and commits
	// into; nil for the message itself.
	base *Message
}

// NewMessage starts the state of one message.
func NewMessage(instance string) *Message {
	return &Message{Instance: instance}
}

// MessageKey names one kind of per-message value, of type T: SPF's
// outcome, greylisting's "header queued" mark. A check declares its keys
// once, as package variables; keys are told apart by identity, so two
// packages can never read each other's values by choosing the same name,
// and a value always comes back with the type it was stored with.
type MessageKey[T any] struct {
	name string // for debugging only
}

// NewMessageKey returns a new key; name says what it holds.
func NewMessageKey[T any](name string) *MessageKey[T] {
	return &MessageKey[T]{name: name}
}

// String is the key's name.
func (k *MessageKey[T]) String() string { return k.name }

// Get returns what was stored under k for m; in a staged view, what this
// check stored first, then the message's. A nil message holds nothing.
func (k *MessageKey[T]) Get(m *Message) (T, bool) {
	v, ok := m.value(k)
	if !ok {
		var zero T
		return zero, false
	}
	return v.(T), true // only Set stores under k, always a T
}

// Set stores v under k for m; on a nil message it does nothing.
func (k *MessageKey[T]) Set(m *Message, v T) { m.setValue(k, v) }

func (m *Message) value(key any) (any, bool) {
	if m == nil {
		return nil, false
	}
	m.mu.Lock()
	i := m.find(key)
	var v any
	if i >= 0 {
		v = m.values[i].v
	}
	m.mu.Unlock()
	if i < 0 && m.base != nil {
		return m.base.value(key)
	}
	return v, i >= 0
}

// keyed is one per-message value with its key.
type keyed struct{ key, v any }

// find is the index of key's value in m.values, or -1. Called with mu
// held. A slice, not a map: a message holds a handful of values, and a
// map per message cost an allocation of its buckets for each.
func (m *Message) find(key any) int {
	for i := range m.values {
		if m.values[i].key == key {
			return i
		}
	}
	return -1
}

func (m *Message) setValue(key, v any) {
	if m == nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if i := m.find(key); i >= 0 {
		m.values[i].v = v
		return
	}
	if m.values == nil {
		m.values = m.inline[:0]
	}
	m.values = append(m.values, keyed{key, v})
}

// AddHeader queues a header to prepend to this message, once: a header
// already queued or sent is ignored, so every recipient may ask for it.
// Postfix takes one action per reply, so headers go out one per recipient
// reply that would otherwise be DUNNO, in the order they were added.
func (m *Message) AddHeader(h string) {
	if m.base != nil && m.base.has(h) {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.hasLocked(h) {
		m.headers = append(m.headers, h)
	}
}

func (m *Message) has(h string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hasLocked(h)
}

func (m *Message) hasLocked(h string) bool { return slices.Contains(m.headers, h) }

// stage returns a view of m for one check run: reads see m, writes stay
// in the view until commit. A nil message stages as nil.
func (m *Message) stage() *Message {
	if m == nil {
		return nil
	}
	return &Message{Instance: m.Instance, base: m}
}

// commit applies a staged view's writes to the message it was staged
// from, in the order they were made. The engine calls it only for a run
// that returned in time, so an abandoned run's writes are dropped.
func (m *Message) commit() {
	if m == nil || m.base == nil {
		return
	}
	m.mu.Lock()
	values, headers := m.values, m.headers[m.sent:]
	// Not nil: a write after this takes a new array, never inline's,
	// which values still reads.
	m.values, m.headers, m.sent = m.inline[len(m.inline):], nil, 0
	m.mu.Unlock()
	for _, kv := range values {
		m.base.setValue(kv.key, kv.v)
	}
	for _, h := range headers {
		m.base.AddHeader(h)
	}
}

// nextHeader takes the first queued header, if any, and remembers it as sent.
func (m *Message) nextHeader() (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sent == len(m.headers) {
		return "", false
	}
	m.sent++
	return m.headers[m.sent-1], true
}
